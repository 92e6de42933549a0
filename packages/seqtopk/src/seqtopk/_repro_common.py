"""Helpers shared by the two settings of ``seqtopk repro`` (the table task and the byte LM)."""

from __future__ import annotations

import statistics

from seqtopk.selection import resolve_bounds


def equal_budget_bounds(k: int, num_experts: int) -> tuple[int, int]:
    """(L, U) of the equal-budget comparisons: L=0 so that budget can move even at K=1 (with
    L=1 and K=1 SeqTopK is TopK), and the paper's cap K+2."""
    return resolve_bounds(k, num_experts, 0)[1:]


def paired(first: list[float], second: list[float]) -> list[float]:
    """Per-seed differences ``first - second``."""
    return [a - b for a, b in zip(first, second, strict=True)]


def spread(values: list[float], digits: int) -> str:
    """``mean±std`` over the seeds."""
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.{digits}f}±{std:.{digits}f}"


def per_seed(values: list[float], digits: int) -> str:
    return ", ".join(f"{v:+.{digits}f}" for v in values)


def premise_meaning(k: int, held: bool) -> str:
    """What the premise control at ``k`` says about a SeqTopK-vs-TopK comparison at ``k``."""
    if held:
        return f"premise at K={k} held, so this comparison is meaningful"
    return f"premise at K={k} NOT held, so this comparison carries no evidence about SeqTopK"
