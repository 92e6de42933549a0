"""One verifier for rewards and evaluation.

``verify(instance, completion)`` takes the last balanced ``\\boxed{...}`` of the completion,
parses it strictly (:mod:`g1.parsing`), converts it to the task's answer type and runs the
task's check. It returns 1.0 or 0.0 and never raises on malformed text; ``verify_detailed``
says which stage failed and why.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any

from g1.instance import Instance
from g1.parsing import ParseError, extract_boxed, is_mapping, parse_literal
from g1.tasks import TASKS

__all__ = ["Verification", "coerce_answer", "verify", "verify_detailed"]

MAX_COMPLETION_CHARS = 1_000_000
"""Longer completions are rejected unread (a 4,096-token completion is ~20k characters)."""


@dataclass(frozen=True)
class Verification:
    """The outcome of one check: ``score`` is 1.0 or 0.0; ``stage`` is where it stopped.

    ``stage`` is one of ``"extract"`` (no balanced box), ``"parse"`` (not a well-formed
    literal), ``"type"`` (wrong answer type), ``"check"`` (well-formed but wrong) or ``"ok"``.
    """

    score: float
    stage: str
    reason: str
    boxed: str | None = None
    parsed: Any = None

    @property
    def correct(self) -> bool:
        return self.score == 1.0


class _TypeMismatch(ValueError):
    pass


def _is_integer_like(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | Fraction)


def _as_int(value: Any) -> int:
    if _is_integer_like(value) and Fraction(value).denominator == 1:
        return int(value)
    raise _TypeMismatch(f"expected an integer, got {value!r}")


def _as_node_list(value: Any) -> list[int]:
    if _is_integer_like(value):
        value = [value]
    if not isinstance(value, list | tuple) or is_mapping(value):
        raise _TypeMismatch(f"expected a list of nodes, got {value!r}")
    return [_as_int(node) for node in value]


def _as_edge(value: Any) -> tuple[int, int]:
    if not isinstance(value, list | tuple) or is_mapping(value) or len(value) != 2:
        raise _TypeMismatch(f"expected an edge (u, v), got {value!r}")
    return _as_int(value[0]), _as_int(value[1])


def _as_edge_list(value: Any) -> list[tuple[int, int]]:
    if isinstance(value, tuple) and len(value) == 2 and all(_is_integer_like(v) for v in value):
        return [_as_edge(value)]
    if not isinstance(value, list) or is_mapping(value):
        raise _TypeMismatch(f"expected a list of edges, got {value!r}")
    return [_as_edge(edge) for edge in value]


def coerce_answer(answer_type: str, value: Any) -> Any:
    """Convert a parsed literal to ``answer_type``; raises ``ValueError`` when it does not fit."""
    if answer_type == "bool":
        if isinstance(value, bool):
            return value
        raise _TypeMismatch(f"expected Yes or No, got {value!r}")
    if answer_type == "int":
        return _as_int(value)
    if answer_type == "float":
        if _is_integer_like(value):
            return float(value)
        raise _TypeMismatch(f"expected a number, got {value!r}")
    if answer_type in ("node_set", "node_list"):
        return _as_node_list(value)
    if answer_type == "edge_list":
        return _as_edge_list(value)
    if answer_type == "mapping":
        if is_mapping(value):
            return [(_as_int(key), _as_int(item)) for key, item in value]
        if isinstance(value, list) and not value:
            return []
        raise _TypeMismatch(f"expected a mapping {{u: v, ...}}, got {value!r}")
    raise ValueError(f"answer_type must be one of the task answer types, got {answer_type!r}")


def _as_instance(instance: Instance | Mapping[str, Any]) -> Instance:
    if isinstance(instance, Instance):
        return instance
    if isinstance(instance, Mapping):
        return Instance.from_record(instance)
    raise TypeError(
        f"instance must be a g1.Instance or a record mapping, got {type(instance).__name__}"
    )


def _recomputed(instance: Instance) -> Instance:
    answer, optimum = TASKS[instance.task].oracle(
        instance.graph, instance.query, instance.second_graph
    )
    return replace(instance, answer=answer, optimum=optimum)


def verify_detailed(
    instance: Instance | Mapping[str, Any], completion: str, *, recompute: bool = False
) -> Verification:
    """Score ``completion`` for ``instance`` (an :class:`Instance` or its record) and say why.

    ``recompute=True`` re-runs the exact oracle instead of using the cached answer and optimum
    (G1's way; only useful to measure what caching saves). A malformed ``instance`` raises
    ``ValueError``/``TypeError``; a malformed ``completion`` never raises.
    """
    problem = _as_instance(instance)
    if recompute:
        problem = _recomputed(problem)
    if not isinstance(completion, str):
        return Verification(
            0.0, "extract", f"completion must be text, got {type(completion).__name__}"
        )
    if len(completion) > MAX_COMPLETION_CHARS:
        return Verification(
            0.0, "extract", f"completion longer than {MAX_COMPLETION_CHARS} characters"
        )
    boxed = extract_boxed(completion)
    if boxed is None:
        return Verification(0.0, "extract", "no balanced \\boxed{...} in the completion")
    try:
        parsed = parse_literal(boxed)
    except (ParseError, ValueError, ZeroDivisionError, RecursionError) as error:
        return Verification(0.0, "parse", str(error), boxed=boxed)
    try:
        value = coerce_answer(problem.answer_type, parsed)
    except ValueError as error:
        return Verification(0.0, "type", str(error), boxed=boxed, parsed=parsed)
    try:
        reason = TASKS[problem.task].check(problem, value)
    except (KeyError, ValueError, TypeError, OverflowError) as error:
        # A check may meet values the type conversion allows but the graph cannot hold
        # (e.g. a huge integer as a node); that is a wrong answer, not a crash.
        reason = f"answer could not be checked: {error}"
    if reason is not None:
        return Verification(0.0, "check", reason, boxed=boxed, parsed=value)
    return Verification(1.0, "ok", "correct", boxed=boxed, parsed=value)


def verify(
    instance: Instance | Mapping[str, Any], completion: str, *, recompute: bool = False
) -> float:
    """1.0 if ``completion``'s last boxed answer is correct for ``instance``, else 0.0."""
    return verify_detailed(instance, completion, recompute=recompute).score
