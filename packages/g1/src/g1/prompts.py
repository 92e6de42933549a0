"""Prompt templates (one per stage) and the boxed rendering of answers.

G1 used three different wrappers for RL, SFT and evaluation; we pin one template per stage,
store the stage name with every generated row, and ship :data:`PROMPT_TEMPLATES` beside
generated datasets so a prompt can always be rebuilt.
"""

from __future__ import annotations

from typing import Any

__all__ = ["FORMAT_SENTENCES", "PROMPT_TEMPLATES", "STAGES", "format_answer", "render_prompt"]

STAGES = ("rl", "sft", "eval")

PROMPT_TEMPLATES: dict[str, str] = {
    "rl": (
        "{description} {graph}\nQuestion: {question} {format_sentence}\n\n"
        "Approach the problem methodically. Ensure all conclusions are based on precise "
        "calculations and logical deductions. Present the final answer in \\boxed{{}}."
    ),
    "sft": (
        "{description} {graph}\nQuestion: {question} {format_sentence}\n\n"
        "Solve the problem step by step and end your response with 'Therefore, the final "
        "answer is: $\\boxed{{ANSWER}}$. I hope it is correct', where ANSWER is the answer."
    ),
    "eval": (
        "{description} {graph}\nQuestion: {question} {format_sentence}\n\n"
        "Solve the problem step by step and end your response with 'Therefore, the final "
        "answer is: $\\boxed{{ANSWER}}$', where ANSWER is the answer."
    ),
}
"""Stage -> template with fields description, graph, question, format_sentence."""

FORMAT_SENTENCES: dict[str, str] = {
    "bool": "You need to format your answer as Yes or No.",
    "int": "You need to format your answer as an integer.",
    "float": "You need to format your answer as a float number (within 1e-3).",
    "node_set": "You need to format your answer as a list of nodes in ascending order, e.g., [1, 2, 3].",
    "node_list": "You need to format your answer as a list of nodes, e.g., [1, 2, 3].",
    "edge_list": "You need to format your answer as a list of edges, e.g., [(1, 2), (2, 3)].",
    "mapping": (
        "You need to format your answer as a mapping from each node of the first graph to a "
        "node of the second graph, e.g., {1: 101, 2: 102}."
    ),
}


def render_prompt(
    stage: str, *, description: str, graph: str, question: str, format_sentence: str
) -> str:
    """Fill the template of ``stage`` (one of ``rl``, ``sft``, ``eval``)."""
    if stage not in PROMPT_TEMPLATES:
        raise ValueError(f"stage must be one of {list(STAGES)}, got {stage!r}")
    return PROMPT_TEMPLATES[stage].format(
        description=description, graph=graph, question=question, format_sentence=format_sentence
    )


def format_answer(answer_type: str, answer: Any) -> str:
    """The text that goes inside ``\\boxed{}`` for ``answer`` (the inverse of the parser)."""
    if answer_type == "bool":
        return "Yes" if answer else "No"
    if answer_type == "int":
        return str(int(answer))
    if answer_type == "float":
        return f"{float(answer):.6g}"
    if answer_type in ("node_set", "node_list"):
        return "[" + ", ".join(str(int(node)) for node in answer) + "]"
    if answer_type == "edge_list":
        return "[" + ", ".join(f"({int(u)}, {int(v)})" for u, v in answer) + "]"
    if answer_type == "mapping":
        return "{" + ", ".join(f"{int(k)}: {int(v)}" for k, v in dict(answer).items()) + "}"
    raise ValueError(f"answer_type must be one of {sorted(FORMAT_SENTENCES)}, got {answer_type!r}")
