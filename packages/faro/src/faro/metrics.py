"""Ordinal, cardinal and fairness metrics of a reward model on preference pairs, as one table."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from faro.constraints import Constraint
from faro.scoring import PairScores, score_pairs
from kernelkit.validation import (
    check_finite,
    check_floating,
    check_int_in_range,
    check_ndim,
    check_same_shape,
    check_tensor,
)

__all__ = ["brier_score", "evaluate", "expected_calibration_error"]


def _check_probabilities_and_outcomes(probabilities: torch.Tensor, outcomes: torch.Tensor) -> None:
    """Non-empty 1-D finite probabilities in [0, 1] and outcomes in {0, 1}: a NaN probability or
    label is an error, never a value to average."""
    check_floating("probabilities", probabilities)
    check_ndim("probabilities", probabilities, 1)
    check_tensor("outcomes", outcomes)
    check_same_shape("probabilities", probabilities, "outcomes", outcomes)
    if probabilities.numel() == 0:
        raise ValueError("probabilities must not be empty, got shape (0,)")
    check_finite("probabilities", probabilities)
    if bool(((probabilities < 0) | (probabilities > 1)).any()):
        raise ValueError(
            f"probabilities must lie in [0, 1], got values from {float(probabilities.min())} to "
            f"{float(probabilities.max())}"
        )
    if outcomes.is_floating_point():
        check_finite("outcomes", outcomes)
    if not bool(((outcomes == 0) | (outcomes == 1)).all()):
        bad = outcomes[(outcomes != 0) & (outcomes != 1)][0].item()
        raise ValueError(f"outcomes must be 0 or 1, got {bad!r}")


def expected_calibration_error(
    probabilities: torch.Tensor, outcomes: torch.Tensor, *, num_bins: int = 10
) -> float:
    """ECE with ``num_bins`` equal-width bins: ``sum_b (n_b / n) |mean(y_b) - mean(p_b)|``."""
    _check_probabilities_and_outcomes(probabilities, outcomes)
    check_int_in_range("num_bins", num_bins, 1)
    bins = (probabilities * num_bins).long().clamp_max(num_bins - 1)
    confidence = torch.zeros(num_bins, dtype=torch.float64).index_add(
        0, bins, probabilities.double()
    )
    frequency = torch.zeros(num_bins, dtype=torch.float64).index_add(0, bins, outcomes.double())
    return float(((frequency - confidence).abs()).sum() / probabilities.numel())


def brier_score(probabilities: torch.Tensor, outcomes: torch.Tensor) -> float:
    """Mean squared error of the probabilities against 0/1 outcomes."""
    _check_probabilities_and_outcomes(probabilities, outcomes)
    return float(((probabilities.double() - outcomes.double()) ** 2).mean())


def evaluate(
    model,
    data,
    constraints: Sequence[Constraint] = (),
    *,
    tokenizer=None,
    num_bins: int = 10,
    batch_size: int = 64,
) -> dict[str, float]:
    """One row of metrics for ``model`` on ``data``.

    * ``accuracy``: pairwise accuracy against the data's labels (ordinal);
      ``clean_accuracy`` (and ``clean_ece``, calibration against the clean labels) when the data
      carries clean preferences;
    * ``ece``, ``brier``: calibration of ``sigmoid(m)`` for the event "the canonical first
      response was chosen" (cardinal; the canonical orientation keeps both outcomes present,
      whereas "chosen wins" would be 1 for every pair);
    * ``rate[g]``, ``accuracy[g]``, ``pairs[g]``: per-group event rates (``P(m > 0 | A=g)``),
      accuracies and counts;
    * ``reward_gap_cf``: mean ``|m - m_cf|`` over twins (reward units), ``flip_rate_cf``;
    * for each constraint: ``<name>_max_statistic`` (largest one-sided statistic, e.g. the
      largest rate gap) and ``<name>_max_violation`` (that minus epsilon).
    """
    scores: PairScores = score_pairs(model, data, tokenizer=tokenizer, batch_size=batch_size)
    margin, canonical = scores.margin, scores.canonical_margin
    correct = (margin > 0).double()
    row: dict[str, float] = {"pairs": float(len(scores)), "accuracy": float(correct.mean())}
    if scores.clean_preference is not None:
        row["clean_accuracy"] = float(
            ((margin > 0) == scores.clean_preference.bool()).double().mean()
        )
    probabilities = torch.sigmoid(canonical.double())
    outcomes = (scores.orientation == 1).double()
    row["ece"] = expected_calibration_error(probabilities, outcomes, num_bins=num_bins)
    if scores.clean_preference is not None:
        # The clean outcome of the canonical event: the biased one where the labellings agree.
        agree = scores.clean_preference.bool()
        clean_outcomes = torch.where(agree, outcomes, 1.0 - outcomes)
        row["clean_ece"] = expected_calibration_error(
            probabilities, clean_outcomes, num_bins=num_bins
        )
    row["brier"] = brier_score(probabilities, outcomes)
    for group in torch.unique(scores.group).tolist():
        members = scores.group == group
        row[f"pairs[{group}]"] = float(members.sum())
        row[f"rate[{group}]"] = float((canonical[members] > 0).double().mean())
        row[f"accuracy[{group}]"] = float(correct[members].mean())
    twin = scores.canonical_twin_margin
    if twin is not None:
        row["reward_gap_cf"] = float((canonical - twin).abs().mean())
        row["flip_rate_cf"] = float(((canonical > 0) != (twin > 0)).double().mean())
    for constraint in constraints:
        if constraint.needs_twins and twin is None:
            continue
        evaluation = constraint.evaluate(canonical, scores.group, scores.label, twin)
        if bool(evaluation.active.any()):
            row[f"{constraint.name}_max_statistic"] = float(
                evaluation.statistics[evaluation.active].max()
            )
            row[f"{constraint.name}_max_violation"] = evaluation.max_violation
    return row
