"""The measured generalisation gap next to the bounds."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from kernelkit.validation import check_tensor
from mpnn_gen.bounds import Bound, _check_gamma, _graph_list
from mpnn_gen.models import check_graph_labels

__all__ = ["Gap", "measure_gap", "rank_correlations", "report"]


@dataclass(frozen=True)
class Gap:
    """Train and test risks: 0-1 loss and gamma-margin loss (margin <= gamma counts as an error)."""

    train_error: float
    test_error: float
    train_margin_loss: float
    test_margin_loss: float
    gamma: float

    @property
    def gap(self) -> float:
        """Test 0-1 loss minus train 0-1 loss."""
        return self.test_error - self.train_error

    @property
    def margin_gap(self) -> float:
        """Test 0-1 loss minus train gamma-margin loss: what the PAC-Bayes bounds bound."""
        return self.test_error - self.train_margin_loss


def _losses(model, graphs, gamma: float) -> tuple[float, float]:
    from torch_geometric.data import Batch

    batch = Batch.from_data_list(graphs)
    with torch.no_grad():
        logits = model(batch.x, batch.edge_index, batch.batch)
    y = getattr(batch, "y", None)
    check_tensor("graphs[i].y", y)
    check_graph_labels("graphs[i].y", y, logits.shape[1], len(graphs))
    true = logits.gather(1, y.unsqueeze(1)).squeeze(1)
    others = logits.scatter(1, y.unsqueeze(1), float("-inf")).max(dim=1).values
    margin = true - others
    return float((margin <= 0).double().mean()), float((margin <= gamma).double().mean())


def measure_gap(model, train, test, *, gamma: float = 1.0) -> Gap:
    """0-1 and margin losses of ``model(x, edge_index, batch)`` on ``train`` and ``test``."""
    gamma = _check_gamma(gamma)
    train = _graph_list(train, "train", need_labels=True)
    test = _graph_list(test, "test", need_labels=True)
    train_error, train_margin = _losses(model, train, gamma)
    test_error, test_margin = _losses(model, test, gamma)
    return Gap(train_error, test_error, train_margin, test_margin, gamma)


def report(
    model,
    train,
    test,
    *,
    bounds: Sequence[Callable[..., Bound]],
    delta: float = 0.05,
    gamma: float = 1.0,
) -> list[dict[str, object]]:
    """One row per bound: its value and whether it is vacuous, next to the measured gaps.

    ``bounds`` are functions ``(model, train, *, delta, gamma) -> Bound``; those that take no
    ``gamma`` (e.g. :func:`~mpnn_gen.bounds.vc_wl`) are called without it."""
    import inspect

    gap = measure_gap(model, train, test, gamma=gamma)
    rows = []
    for bound_fn in bounds:
        kwargs = {"delta": delta}
        if "gamma" in inspect.signature(bound_fn).parameters:
            kwargs["gamma"] = gamma
        bound = bound_fn(model, train, **kwargs)
        rows.append(
            {
                "bound": bound.name,
                "value": bound.value,
                "vacuous": bound.vacuous,
                "gap_01": gap.gap,
                "gap_margin": gap.margin_gap,
                "source": bound.source,
                "provenance": bound.provenance,
            }
        )
    return rows


def rank_correlations(
    rows: Sequence[dict[str, object]], *, target: str = "gap_01"
) -> dict[str, float]:
    """Kendall tau between each bound's value and ``target`` across a sweep of :func:`report`
    rows (rows of several runs concatenated). NaN when a column is constant."""
    from scipy.stats import kendalltau

    by_bound: dict[str, tuple[list[float], list[float]]] = {}
    for row in rows:
        values, targets = by_bound.setdefault(str(row["bound"]), ([], []))
        values.append(float(row["value"]))
        targets.append(float(row[target]))
    return {name: float(kendalltau(v, t).statistic) for name, (v, t) in by_bound.items()}
