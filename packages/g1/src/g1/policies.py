"""Rule-based reference policies: the oracle, constant answers, "all nodes", a noisy oracle.

They give each task's floor (what a model earns without reading the graph), expose answer
imbalance, and let us check the GRPO zero-variance arithmetic with a known accuracy.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from g1.instance import Instance
from g1.prompts import format_answer

__all__ = ["POLICIES", "noisy_oracle", "oracle_completion", "wrong_completion"]


def oracle_completion(instance: Instance) -> str:
    """The reference answer, boxed."""
    answer = instance.answer
    if instance.answer_type == "mapping":
        answer = {int(key): value for key, value in answer.items()}
    return f"The final answer is \\boxed{{{format_answer(instance.answer_type, answer)}}}."


def wrong_completion(instance: Instance) -> str:
    """A boxed answer that is certainly wrong (the answer with one element repeated, ±1...)."""
    kind, answer = instance.answer_type, instance.answer
    if kind == "bool":
        return f"\\boxed{{{'No' if answer else 'Yes'}}}"
    if kind in ("int", "float"):
        return f"\\boxed{{{answer + 1}}}"
    if kind == "mapping" or not answer:
        return "\\boxed{Yes}"  # the wrong type for these answers
    return f"\\boxed{{{format_answer(kind, [*answer, answer[0]])}}}"


def _all_nodes(instance: Instance) -> str:
    return f"\\boxed{{{format_answer('node_list', sorted(instance.graph.nodes))}}}"


POLICIES: dict[str, Callable[[Instance], str]] = {
    "oracle": oracle_completion,
    "always_yes": lambda instance: "\\boxed{Yes}",
    "always_no": lambda instance: "\\boxed{No}",
    "always_zero": lambda instance: "\\boxed{0}",
    "always_one": lambda instance: "\\boxed{1}",
    "empty_list": lambda instance: "\\boxed{[]}",
    "all_nodes": _all_nodes,
}
"""Policy name -> ``instance -> completion``."""


def noisy_oracle(accuracy: float, rng: random.Random) -> Callable[[Instance], str]:
    """Answers correctly with probability ``accuracy``, else with :func:`wrong_completion`."""
    if not 0.0 <= accuracy <= 1.0:
        raise ValueError(f"accuracy must be in [0, 1], got {accuracy!r}")

    def policy(instance: Instance) -> str:
        return (
            oracle_completion(instance) if rng.random() < accuracy else wrong_completion(instance)
        )

    return policy
