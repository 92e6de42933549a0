"""The parser: strict, never raising from verify, never hanging."""

from __future__ import annotations

import time
from fractions import Fraction

import g1
import pytest
from g1.parsing import MAX_DEPTH, ParseError, extract_boxed, parse_literal
from hypothesis import given, settings
from hypothesis import strategies as st


@pytest.mark.parametrize(
    ("text", "content"),
    [
        ("\\boxed{3}", "3"),
        ("first \\boxed{1} then \\boxed{2}", "2"),
        ("\\boxed{\\boxed{7}}", "7"),
        ("\\boxed{a{b}c} and an unclosed \\boxed{4", "a{b}c"),
        ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),
        ("no box here", None),
        ("\\boxed{", None),
    ],
)
def test_extract_last_balanced_box(text, content):
    assert extract_boxed(text) == content


@pytest.mark.parametrize(
    ("content", "value"),
    [
        ("42", 42),
        ("-3", -3),
        ("0.25", Fraction(1, 4)),
        ("1/7", Fraction(1, 7)),
        ("\\frac{1}{7}", Fraction(1, 7)),
        ("\\dfrac{6}{3}", 2),
        ("Yes.", True),
        ("yes", True),
        ("NO", False),
        ("\\text{Yes}", True),
        ("[1, 2, 3]", [1, 2, 3]),
        ("\\left[1, 2\\right]", [1, 2]),
        ("$[(1, 2), (2, 3)]$", [(1, 2), (2, 3)]),
        ("1, 2, 3", [1, 2, 3]),
        ("{1: 101, 2: 102}", [(1, 101), (2, 102)]),
        ("\\{1 \\to 101\\}", [(1, 101)]),
        ("[]", []),
    ],
)
def test_parse_literal(content, value):
    assert parse_literal(content) == value


@pytest.mark.parametrize(
    "content",
    [
        "",
        "1 2",
        "[1, 2",
        "[1,, 2]",
        "maybe",
        "1/0",
        "import os",
        "[" * (MAX_DEPTH + 1) + "1" + "]" * (MAX_DEPTH + 1),
        "{1: 2, 3}",
        "__import__('os')",
        "1e5",
    ],
)
def test_parse_rejects(content):
    with pytest.raises(ParseError):
        parse_literal(content)


def test_element_and_length_caps():
    with pytest.raises(ParseError, match="more than"):
        parse_literal("[" + ", ".join(["1"] * 6000) + "]")
    with pytest.raises(ParseError, match="longer than"):
        parse_literal("1" * 30_000)


INSTANCE = g1.generate("neighbor", 0, 8)

ADVERSARIAL = [
    "\\boxed{" + "[" * 10_000 + "}",
    "\\boxed{" * 5_000,
    "x" * 100_000,
    "\\boxed{" + "1, " * 40_000 + "}",
    "\\boxed{ñ ü 日本 🙂}",
    "\\boxed{" + "{" * 3000 + "}" * 3000 + "}",
    "\\boxed{[1, 2]} trailing prose with } and { braces",
    "\\boxed{9999999999999999999999999999}",
    "\\boxed{[-1, 0]}",
]


@pytest.mark.parametrize("completion", ADVERSARIAL)
def test_verify_never_raises_on_adversarial_text(completion):
    start = time.perf_counter()
    assert g1.verify(INSTANCE, completion) == 0.0
    assert time.perf_counter() - start < 2.0


@settings(max_examples=200)
@given(
    st.text(alphabet=st.sampled_from(list("\\boxed{}[](),:0123456789-./ yesNOfrac")), max_size=200)
)
def test_verify_never_raises_on_fuzzed_text(completion):
    assert g1.verify(INSTANCE, completion) in (0.0, 1.0)


@settings(max_examples=25)
@given(st.text(max_size=300))
def test_verify_never_raises_on_unicode(completion):
    assert g1.verify(INSTANCE, "\\boxed{" + completion + "}") in (0.0, 1.0)


def test_verify_detailed_names_the_stage():
    assert g1.verify_detailed(INSTANCE, "I think 3").stage == "extract"
    assert g1.verify_detailed(INSTANCE, "\\boxed{[1,}").stage == "parse"
    assert g1.verify_detailed(INSTANCE, "\\boxed{Yes}").stage == "type"
    result = g1.verify_detailed(INSTANCE, "\\boxed{[100]}")
    assert result.stage == "check" and "not the exact set" not in result.reason


def test_verify_rejects_malformed_instances():
    with pytest.raises(TypeError, match="instance must be"):
        g1.verify(42, "\\boxed{1}")
    with pytest.raises(ValueError, match="lacks the fields"):
        g1.verify({"task": "degree"}, "\\boxed{1}")
