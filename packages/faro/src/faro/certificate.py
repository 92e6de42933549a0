"""Held-out fairness certificates: violations with Hoeffding confidence bounds.

Every constraint statistic is a signed sum of cell rates, ``s_j = sum_k c_jk rate_k``, and each
rate is a mean of 0/1 events over the ``n_k`` held-out pairs of its cell.  Conditional on the cell
counts, Hoeffding's inequality gives ``P(s_j - E s_j >= t) <= exp(-2 t^2 / sum_k c_jk^2 / n_k)``;
a union bound over the ``m`` one-sided constraints makes the radius
``t_j = sqrt(log(m / delta) * sum_k c_jk^2 / n_k / 2)``, so with probability at least ``1 - delta``
every population statistic lies below ``s_j + t_j`` simultaneously.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from faro.constraints import Constraint
from faro.scoring import score_pairs

__all__ = ["Certificate", "ConstraintBound", "certify"]


@dataclass(frozen=True)
class ConstraintBound:
    """One one-sided constraint: held-out statistic, radius, and the two-sided confidence interval."""

    name: str
    statistic: float
    radius: float
    smallest_cell: int

    @property
    def upper(self) -> float:
        return self.statistic + self.radius

    @property
    def lower(self) -> float:
        return self.statistic - self.radius


@dataclass(frozen=True)
class Certificate:
    """The outcome of :func:`certify`: per-constraint bounds, the union-bound level and a verdict.

    ``status`` is ``"certified"`` (every upper bound <= epsilon), ``"violated"`` (some lower bound >
    epsilon) or ``"inconclusive"``; ``verdict`` says it in words.
    """

    constraint: str
    epsilon: float
    delta: float
    num_constraints: int
    smallest_group: int
    bounds: tuple[ConstraintBound, ...]
    status: str
    verdict: str

    @property
    def max_upper_bound(self) -> float:
        return max(b.upper for b in self.bounds)

    @property
    def max_statistic(self) -> float:
        return max(b.statistic for b in self.bounds)

    def to_dict(self) -> dict:
        return {
            "constraint": self.constraint,
            "epsilon": self.epsilon,
            "delta": self.delta,
            "num_constraints": self.num_constraints,
            "smallest_group": self.smallest_group,
            "status": self.status,
            "verdict": self.verdict,
            "bounds": [
                {
                    "name": b.name,
                    "statistic": b.statistic,
                    "radius": b.radius,
                    "upper": b.upper,
                    "lower": b.lower,
                    "smallest_cell": b.smallest_cell,
                }
                for b in self.bounds
            ],
        }


def certify(
    model,
    data,
    constraint: Constraint,
    delta: float = 0.05,
    *,
    tokenizer=None,
    batch_size: int = 64,
) -> Certificate:
    """Certify ``constraint`` for ``model`` on held-out ``data`` at confidence ``1 - delta``.

    Raises ``ValueError`` when a cell the constraint reads (a group, or a group-outcome pair for
    EO) has no held-out examples: no bound can be stated for it.
    """
    if not isinstance(constraint, Constraint):
        raise TypeError(f"constraint must be a faro Constraint, got {type(constraint).__name__}")
    if not isinstance(delta, int | float) or not 0.0 < delta < 1.0:
        raise ValueError(f"delta must lie strictly between 0 and 1, got {delta!r}")
    scores = score_pairs(model, data, tokenizer=tokenizer, batch_size=batch_size)
    evaluation = constraint.evaluate(
        scores.canonical_margin, scores.group, scores.label, scores.canonical_twin_margin
    )
    coefficients = constraint.coefficients().double()
    counts = evaluation.cell_counts.double()
    read = coefficients != 0
    empty_cells = [k for k in range(counts.shape[0]) if read[:, k].any() and counts[k] == 0]
    if empty_cells:
        raise ValueError(
            f"held-out data has no examples in cell(s) {empty_cells} of {type(constraint).__name__} "
            f"(cells are groups{' x outcomes' if constraint.needs_label else ''}); every group needs examples to certify"
        )
    m = constraint.num_constraints
    log_term = math.log(m / delta)
    bounds = []
    for j, name in enumerate(constraint.names):
        variance_proxy = float((coefficients[j] ** 2 / counts.clamp_min(1)).sum())
        bounds.append(
            ConstraintBound(
                name=name,
                statistic=float(evaluation.statistics[j]),
                radius=math.sqrt(log_term * variance_proxy / 2.0),
                smallest_cell=int(counts[read[j]].min()),
            )
        )
    group_counts = torch.bincount(scores.group, minlength=constraint.num_groups)
    smallest_group = int(group_counts.min())
    eps = constraint.epsilon
    worst_index = max(range(m), key=lambda j: bounds[j].upper)
    worst = bounds[worst_index]
    if all(b.upper <= eps for b in bounds):
        status = "certified"
        verdict = (
            f"Certified: with probability at least {1 - delta:.3g}, all {m} {constraint.name} constraints hold "
            f"in the population; the largest upper confidence bound is {worst.upper:.4f} <= epsilon = {eps:.4g} "
            f"(smallest group: {smallest_group} held-out pairs)."
        )
    elif any(b.lower > eps for b in bounds):
        violated = max(bounds, key=lambda b: b.lower)
        status = "violated"
        verdict = (
            f"Violated: with probability at least {1 - delta:.3g}, constraint {violated.name} exceeds epsilon = {eps:.4g} "
            f"(held-out {violated.statistic:.4f}, lower bound {violated.lower:.4f})."
        )
    else:
        status = "inconclusive"
        slack = eps - worst.statistic
        if slack > 0:
            cells_read = float((coefficients[worst_index] ** 2).sum())
            needed = math.ceil(log_term * cells_read / (2.0 * slack**2))
            advice = f"about {needed} held-out pairs per cell would certify it"
        else:
            advice = "the held-out statistic itself exceeds epsilon"
        verdict = (
            f"Inconclusive: the largest held-out statistic is {worst.statistic:.4f} against epsilon = {eps:.4g}, but "
            f"its upper bound is {worst.upper:.4f} at confidence {1 - delta:.3g} with {worst.smallest_cell} pairs "
            f"in its smallest cell; {advice}."
        )
    return Certificate(
        constraint.name, eps, float(delta), m, smallest_group, tuple(bounds), status, verdict
    )
