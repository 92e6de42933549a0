"""Strict extraction and parsing of ``\\boxed{...}`` answers.

The parser reads a tiny literal language (integers, decimals, fractions, yes/no, nested
``[]``/``()``/``{}`` sequences and ``{key: value}`` mappings) with a hand-written tokenizer and
recursive descent. It never calls ``eval`` or ``ast.literal_eval``, caps the input length, the
nesting depth and the number of elements, and reports every failure as a :class:`ParseError`
that :mod:`g1.verify` turns into a score of 0.
"""

from __future__ import annotations

import re
from fractions import Fraction

__all__ = [
    "MAX_BOXED_CHARS",
    "MAX_DEPTH",
    "MAX_ELEMENTS",
    "ParseError",
    "extract_boxed",
    "parse_literal",
]

MAX_BOXED_CHARS = 20_000
"""Longest ``\\boxed{}`` content we parse; a 35-node graph's longest answer is far shorter."""
MAX_DEPTH = 4
"""Deepest bracket nesting we accept (an edge list is depth 2, a weighted edge depth 2)."""
MAX_ELEMENTS = 5_000
"""Most numbers in one answer (about 4x the edges of a dense 35-node graph)."""

_BOX_OPEN = re.compile(r"\\(?:boxed|fbox)\s*\{")
# LaTeX decorations that carry no meaning inside an answer; removed before tokenizing.
_DECORATIONS = re.compile(
    r"\\left|\\right|\\big|\\Big|\\bigl|\\bigr|\\displaystyle|\\,|\\;|\\!|\\quad|\$"
)
_TEXT_WRAPPER = re.compile(r"\\(?:text|textbf|mathrm|mathbf)\s*\{([^{}]*)\}")
_FRACTION = re.compile(r"\\[dt]?frac\s*\{\s*(-?\d+)\s*\}\s*\{\s*(-?\d+)\s*\}")
_TOKEN = re.compile(
    r"\s*(?:(?P<number>-?\d+(?:\.\d+)?(?:\s*/\s*-?\d+)?)|(?P<word>[A-Za-z]+)|(?P<punct>[\[\](){},:]))"
)


class ParseError(ValueError):
    """The text is not a well-formed answer; the message says why."""


def extract_boxed(text: str) -> str | None:
    """The content of the last balanced ``\\boxed{...}`` in ``text``, or ``None``.

    "Last balanced": of the boxes whose braces close, the one that opens last, so an unclosed
    trailing box does not hide an earlier complete one and ``\\boxed{\\boxed{7}}`` gives
    ``7``. Escaped braces ``\\{`` and ``\\}`` count as content. One linear pass over the
    text, so adversarial input (thousands of unclosed boxes) cannot make it quadratic.
    """
    if not isinstance(text, str):
        return None
    box_braces = {match.end() - 1 for match in _BOX_OPEN.finditer(text)}
    if not box_braces:
        return None
    open_braces: list[int] = []
    best: tuple[int, int] | None = None
    index, length = 0, len(text)
    while index < length:
        char = text[index]
        if char == "\\" and index + 1 < length and text[index + 1] in "{}":
            index += 2
            continue
        if char == "{":
            open_braces.append(index)
        elif char == "}" and open_braces:
            opened = open_braces.pop()
            if opened in box_braces and (best is None or opened > best[0]):
                best = (opened, index)
        index += 1
    return None if best is None else text[best[0] + 1 : best[1]]


def _normalise(content: str) -> str:
    content = _DECORATIONS.sub(" ", content)
    content = content.replace("\\{", "{").replace("\\}", "}")
    for _ in range(MAX_DEPTH):
        replaced = _TEXT_WRAPPER.sub(r"\1", content)
        if replaced == content:
            break
        content = replaced
    content = _FRACTION.sub(r"\1/\2", content)
    content = content.replace("\\to", ":").replace("\\mapsto", ":").replace("\\rightarrow", ":")
    content = content.replace("->", ":").replace("→", ":")
    return content.strip().rstrip(".").strip()


def _number(token: str) -> int | Fraction:
    if "/" in token:
        numerator, denominator = (part.strip() for part in token.split("/"))
        if int(denominator) == 0:
            raise ParseError(f"division by zero in {token!r}")
        value = Fraction(int(numerator), int(denominator))
        return int(value) if value.denominator == 1 else value
    if "." in token:
        return Fraction(token)
    return int(token)


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens: list[tuple[str, str]] = []
        position = 0
        while position < len(text):
            match = _TOKEN.match(text, position)
            if match is None:
                if text[position:].strip() == "":
                    break
                raise ParseError(f"unexpected character {text[position]!r} at position {position}")
            kind = match.lastgroup
            assert kind is not None
            self.tokens.append((kind, match.group(kind)))
            position = match.end()
        self.index = 0
        self.numbers = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise ParseError("unexpected end of answer")
        self.index += 1
        return token

    def value(self, depth: int):
        kind, token = self.take()
        if kind == "number":
            self.numbers += 1
            if self.numbers > MAX_ELEMENTS:
                raise ParseError(f"more than {MAX_ELEMENTS} numbers in one answer")
            return _number(token)
        if kind == "word":
            lowered = token.lower()
            if lowered in ("yes", "true"):
                return True
            if lowered in ("no", "false"):
                return False
            raise ParseError(f"unexpected word {token!r}")
        if token in "[({":
            if depth >= MAX_DEPTH:
                raise ParseError(f"brackets nested deeper than {MAX_DEPTH}")
            return self.sequence(token, depth + 1)
        raise ParseError(f"unexpected {token!r}")

    def sequence(self, opener: str, depth: int):
        closer = {"[": "]", "(": ")", "{": "}"}[opener]
        items: list = []
        pairs: list[tuple] = []
        while True:
            token = self.peek()
            if token is None:
                raise ParseError(f"unclosed {opener!r}")
            if token[1] == closer:
                self.take()
                break
            if token[1] in ",":
                raise ParseError("empty element between commas")
            item = self.value(depth)
            following = self.peek()
            if opener == "{" and following is not None and following[1] == ":":
                self.take()
                pairs.append((item, self.value(depth)))
            else:
                items.append(item)
            following = self.peek()
            if following is not None and following[1] == ",":
                self.take()
            elif following is not None and following[1] != closer:
                raise ParseError(f"expected ',' or {closer!r}, got {following[1]!r}")
        if pairs and items:
            raise ParseError("a mapping mixes key: value pairs and bare elements")
        if pairs:
            return _Mapping(pairs)
        return tuple(items) if opener == "(" else list(items)


class _Mapping(list):
    """``{k: v, ...}`` as an ordered list of pairs, so repeated keys stay visible."""


def parse_literal(content: str):
    """Parse boxed content into Python values.

    Numbers become ``int`` or :class:`fractions.Fraction`; yes/true/no/false (any case) become
    ``bool``; ``[..]``/``{..}`` become lists, ``(..)`` tuples; ``{k: v}`` becomes a list of
    ``(k, v)`` pairs (subclass ``_Mapping``); a bare comma-separated sequence becomes a list.
    ``\\frac{a}{b}``, ``a/b``, ``\\left``/``\\right``, ``\\text{..}``, ``$`` and a trailing
    period are accepted. Raises :class:`ParseError`.
    """
    if not isinstance(content, str):
        raise ParseError(f"expected text, got {type(content).__name__}")
    if len(content) > MAX_BOXED_CHARS:
        raise ParseError(f"answer longer than {MAX_BOXED_CHARS} characters")
    parser = _Parser(_normalise(content))
    if not parser.tokens:
        raise ParseError("empty answer")
    values = []
    while parser.peek() is not None:
        values.append(parser.value(0))
        token = parser.peek()
        if token is not None:
            if token[1] != ",":
                raise ParseError(f"unexpected {token[1]!r} after a complete value")
            parser.take()
    return values[0] if len(values) == 1 else values


def is_mapping(value) -> bool:
    return isinstance(value, _Mapping)
