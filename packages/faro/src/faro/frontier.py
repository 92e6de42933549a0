"""The accuracy-fairness Pareto frontier: sweep the slack and the constraint type."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from faro.constraints import make_constraint
from faro.data import FeaturePairs
from faro.linear import LinearTrainingConfig, train_linear
from faro.metrics import evaluate
from kernelkit.validation import check_finite, check_ndim

__all__ = ["pareto_mask", "plot_frontier", "sweep_frontier"]


def pareto_mask(accuracy: Sequence[float], unfairness: Sequence[float]) -> list[bool]:
    """True for points not dominated: no other point has accuracy >= and unfairness <=, one strictly.

    A NaN or ±inf value raises ``ValueError``: it would compare false with everything and so be
    kept on the frontier.
    """
    for name, values in (("accuracy", accuracy), ("unfairness", unfairness)):
        try:
            as_tensor = torch.as_tensor(values, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError) as err:
            raise TypeError(f"{name} must be a sequence of numbers, got {values!r}") from err
        check_ndim(name, as_tensor, 1)
        check_finite(name, as_tensor)
    if len(accuracy) != len(unfairness):
        raise ValueError(
            f"accuracy and unfairness must have the same length, got {len(accuracy)} and {len(unfairness)}"
        )
    points = list(zip(accuracy, unfairness, strict=True))
    mask = []
    for i, (acc_i, gap_i) in enumerate(points):
        dominated = any(
            acc_j >= acc_i and gap_j <= gap_i and (acc_j > acc_i or gap_j < gap_i)
            for j, (acc_j, gap_j) in enumerate(points)
            if j != i
        )
        mask.append(not dominated)
    return mask


def sweep_frontier(
    train: FeaturePairs,
    validation: FeaturePairs,
    test: FeaturePairs,
    *,
    constraints: Sequence[str] = ("demographic_parity", "equalized_odds", "counterfactual"),
    epsilons: Sequence[float] = (0.2, 0.1, 0.05, 0.02),
    config: LinearTrainingConfig | None = None,
    num_groups: int = 2,
) -> list[dict[str, float | str | bool]]:
    """Train plain BT and ProxyGDA for every (constraint, epsilon); evaluate each on ``test``.

    Each row has the constraint, epsilon (``inf`` for plain BT), the held-out metrics of
    :func:`faro.evaluate` including every constraint family's largest statistic, whether the run
    ended validation-feasible, and ``pareto`` (not dominated in accuracy vs. the row's own
    constraint statistic; plain BT rows are compared against each family).
    """
    families = [make_constraint(name, 0.0, num_groups=num_groups) for name in constraints]
    # canonical names ("dp" -> "demographic_parity") so rows match the metric keys
    constraints = [family.name for family in families]
    rows: list[dict[str, float | str | bool]] = []
    baseline = train_linear(train, None, config, validation=validation, show_progress=False)
    baseline_row = evaluate(baseline.model, test, families)
    for name in constraints:
        rows.append({"constraint": name, "epsilon": math.inf, "feasible": True, **baseline_row})
        for epsilon in epsilons:
            constraint = make_constraint(name, epsilon, num_groups=num_groups)
            result = train_linear(
                train, constraint, config, validation=validation, show_progress=False
            )
            rows.append(
                {
                    "constraint": name,
                    "epsilon": float(epsilon),
                    "feasible": result.feasible,
                    **evaluate(result.model, test, families),
                }
            )
    for name in constraints:
        family_rows = [r for r in rows if r["constraint"] == name]
        key = f"{name}_max_statistic"
        mask = pareto_mask([r["accuracy"] for r in family_rows], [r[key] for r in family_rows])
        for row, keep in zip(family_rows, mask, strict=True):
            row["pareto"] = keep
    return rows


def plot_frontier(rows: Sequence[dict], axes, *, accuracy_key: str = "accuracy") -> None:
    """Accuracy versus each row's own held-out constraint statistic; dominated points hollow."""
    markers = {"demographic_parity": "o", "equalized_odds": "s", "counterfactual": "^"}
    for name in dict.fromkeys(r["constraint"] for r in rows):
        family = [r for r in rows if r["constraint"] == name]
        key = f"{name}_max_statistic"
        xs = torch.tensor([r[key] for r in family])
        ys = torch.tensor([r[accuracy_key] for r in family])
        order = torch.argsort(xs)
        line = axes.plot(xs[order], ys[order], "-", alpha=0.4)[0]
        for row, x, y in zip(family, xs.tolist(), ys.tolist(), strict=True):
            axes.plot(
                x,
                y,
                markers.get(name, "o"),
                color=line.get_color(),
                markerfacecolor=line.get_color() if row["pareto"] else "none",
            )
            label = "BT" if math.isinf(row["epsilon"]) else f"{row['epsilon']:g}"
            axes.annotate(label, (x, y), fontsize=6, xytext=(2, 2), textcoords="offset points")
        line.set_label(name)
    axes.set_xlabel("held-out constraint statistic (largest one-sided gap / flip rate)")
    axes.set_ylabel(accuracy_key.replace("_", " "))
    axes.legend(fontsize=7)
