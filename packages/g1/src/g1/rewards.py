"""Reward functions with trl's ``GRPOTrainer`` signature.

trl calls each reward as ``f(prompts=..., completions=..., completion_ids=..., **columns)``
where every dataset column other than ``prompt`` arrives as a keyword argument holding one
value per completion (trl 1.x, ``GRPOTrainer._calculate_rewards``). Our rows come from
:meth:`g1.Instance.to_record`, so the columns ``task``, ``graph``, ``query``, ``answer`` and
``optimum`` are enough to rebuild the instance and run :func:`g1.verify`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from g1.parsing import ParseError, extract_boxed, parse_literal
from g1.tasks import resolve_task
from g1.verify import coerce_answer, verify
from kernelkit.validation import check_real_in_range

__all__ = ["completion_text", "correctness_reward", "format_reward", "reward_functions"]

_RECORD_COLUMNS = ("task", "graph", "query", "answer", "optimum")


def completion_text(completion: Any) -> str:
    """The text of a completion: a string, or the last message of a conversational one."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Sequence) and completion and isinstance(completion[-1], dict):
        content = completion[-1].get("content", "")
        return content if isinstance(content, str) else ""
    return ""


def _rows(count: int, columns: dict[str, Any]) -> list[dict[str, Any]]:
    missing = [name for name in _RECORD_COLUMNS[:4] if name not in columns]
    if missing:
        raise ValueError(
            f"the dataset lacks the columns {missing} the g1 reward needs; build rows with "
            f"g1.Instance.to_record() (got columns {sorted(columns)})"
        )
    return [
        {name: columns[name][i] for name in _RECORD_COLUMNS if name in columns}
        for i in range(count)
    ]


def correctness_reward(prompts: list, completions: list, **columns: Any) -> list[float]:
    """1.0 for a correct boxed answer, else 0.0 (trl reward signature)."""
    rows = _rows(len(completions), columns)
    return [
        verify(row, completion_text(completion))
        for row, completion in zip(rows, completions, strict=True)
    ]


def format_reward(
    prompts: list, completions: list, *, weight: float = 0.1, **columns: Any
) -> list[float]:
    """``weight`` when the completion has a boxed answer of the task's answer type, else 0."""
    weight = check_real_in_range("weight", weight, 0.0)
    scores = []
    for task, completion in zip(columns["task"], completions, strict=True):
        boxed = extract_boxed(completion_text(completion))
        try:
            if boxed is None:
                raise ParseError("no box")
            coerce_answer(resolve_task(task).answer_type, parse_literal(boxed))
        except ValueError:
            scores.append(0.0)
        else:
            scores.append(float(weight))
    return scores


def reward_functions(*, format_weight: float = 0.0) -> list[Callable[..., list[float]]]:
    """Rewards for ``GRPOTrainer(reward_funcs=...)``: correctness, plus format if ``format_weight > 0``.

    G1 trains on correctness alone; a small format reward (e.g. 0.1) gives a learning signal to
    a model that never boxes an answer yet.
    """
    format_weight = check_real_in_range("format_weight", format_weight, 0.0)
    functions: list[Callable[..., list[float]]] = [correctness_reward]
    if format_weight > 0:

        def weighted_format_reward(prompts: list, completions: list, **columns: Any) -> list[float]:
            return format_reward(prompts, completions, weight=format_weight, **columns)

        weighted_format_reward.__name__ = "format_reward"
        functions.append(weighted_format_reward)
    return functions
