"""Fairness constraints on rates of canonical preference events.

Every pair carries a *canonical orientation*: the first response of the event (the favourable
decision, the stereotyped answer, the response written by the protected author) is ``chosen``
when ``orientation = +1`` and ``rejected`` when ``orientation = -1``.  The canonical margin is
``m = orientation * (r(chosen) - r(rejected))`` and the event statistic is

* hard (dual step, certificates): ``h = 1[m > 0]``;
* proxy (primal step): ``q = sigmoid(m)``.

Constraints compare *rates* of these events between groups, so any positive rescaling or shift of
the reward leaves the hard values unchanged: shrinking the reward scale cannot satisfy them.  A
constant reward gives ``m = 0`` everywhere, ``h = 0`` and therefore satisfies every constraint;
only accuracy tells such a model apart.

Statistics are computed as per-cell sums and counts, so that processes can all-reduce them before
forming rates (the rate of a union of shards is the ratio of summed sums to summed counts).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from kernelkit.validation import (
    check_finite,
    check_floating,
    check_ndim,
    check_same_shape,
    check_tensor,
)

__all__ = [
    "CONSTRAINT_NAMES",
    "Constraint",
    "ConstraintEvaluation",
    "Counterfactual",
    "DemographicParity",
    "EqualizedOdds",
    "make_constraint",
]


@dataclass(frozen=True)
class ConstraintEvaluation:
    """One evaluation of a constraint family.

    ``statistics`` holds the constrained quantity of each one-sided constraint (a rate gap or a
    flip rate), ``violations = statistics - epsilon`` (feasible when ``<= 0``), and ``active``
    marks constraints whose cells all had at least one example (inactive ones are reported as 0).
    ``cell_sums`` and ``cell_counts`` are the sufficient statistics they were formed from.
    """

    statistics: torch.Tensor
    violations: torch.Tensor
    active: torch.Tensor
    cell_sums: torch.Tensor
    cell_counts: torch.Tensor
    names: tuple[str, ...]

    @property
    def max_violation(self) -> float:
        """The largest violation among active constraints (``-inf`` when none is active)."""
        if not bool(self.active.any()):
            return -math.inf
        return float(self.violations[self.active].max())

    @property
    def feasible(self) -> bool:
        """Whether every active constraint holds; a family with no active constraint is not."""
        return bool(self.active.any()) and self.max_violation <= 0.0


class Constraint:
    """Base class: a family of one-sided constraints ``statistic_j <= epsilon``.

    Subclasses define how examples map to cells (:meth:`cell_index`), what the per-example event
    value is (:meth:`event_values`) and the linear map from cell rates to constraint statistics
    (:meth:`coefficients`), which the certificate also uses for its variance terms.
    """

    name: str = ""
    needs_label: bool = False
    needs_twins: bool = False

    def __init__(self, epsilon: float, *, num_groups: int = 2, anchor: int = 0) -> None:
        if (
            isinstance(epsilon, bool)
            or not isinstance(epsilon, int | float)
            or not math.isfinite(epsilon)
        ):
            raise TypeError(f"epsilon must be a finite number, got {epsilon!r}")
        if epsilon < 0:
            raise ValueError(f"epsilon must be >= 0 (a slack in rate units), got {epsilon}")
        if isinstance(num_groups, bool) or not isinstance(num_groups, int) or num_groups < 2:
            raise ValueError(f"num_groups must be an int >= 2, got {num_groups!r}")
        if isinstance(anchor, bool) or not isinstance(anchor, int) or not 0 <= anchor < num_groups:
            raise ValueError(f"anchor must be an int in [0, {num_groups - 1}], got {anchor!r}")
        self.epsilon = float(epsilon)
        self.num_groups = num_groups
        self.anchor = anchor

    def __repr__(self) -> str:
        return f"{type(self).__name__}(epsilon={self.epsilon}, num_groups={self.num_groups}, anchor={self.anchor})"

    # -- layout -------------------------------------------------------------------------------
    @property
    def num_cells(self) -> int:
        raise NotImplementedError

    @property
    def names(self) -> tuple[str, ...]:
        raise NotImplementedError

    @property
    def num_constraints(self) -> int:
        return len(self.names)

    def cell_index(self, group: torch.Tensor, label: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def coefficients(self) -> torch.Tensor:
        """The (m, cells) matrix ``C`` with ``statistics = C @ cell_rates``."""
        raise NotImplementedError

    # -- events -------------------------------------------------------------------------------
    def event_values(
        self, margin: torch.Tensor, twin_margin: torch.Tensor | None, *, proxy: bool
    ) -> torch.Tensor:
        """Per-example event value in [0, 1]: ``1[m > 0]`` (hard) or ``sigmoid(m)`` (proxy)."""
        if proxy:
            return torch.sigmoid(margin)
        return (margin > 0).to(margin.dtype)

    # -- public evaluation --------------------------------------------------------------------
    def check_inputs(
        self,
        margin: torch.Tensor,
        group: torch.Tensor,
        label: torch.Tensor | None = None,
        twin_margin: torch.Tensor | None = None,
    ) -> None:
        """Raise ``TypeError``/``ValueError`` naming the first malformed argument."""
        check_floating("margin", margin)
        check_ndim("margin", margin, 1)
        check_finite("margin", margin)
        check_tensor("group", group)
        check_same_shape("margin", margin, "group", group)
        if group.is_floating_point() or group.dtype == torch.bool:
            raise TypeError(f"group must be an integer tensor, got {group.dtype}")
        if group.numel() and (int(group.min()) < 0 or int(group.max()) >= self.num_groups):
            raise ValueError(
                f"group values must lie in [0, {self.num_groups - 1}] for num_groups={self.num_groups}, "
                f"got values in [{int(group.min())}, {int(group.max())}]"
            )
        if self.needs_label:
            if label is None:
                raise ValueError(
                    f"{type(self).__name__} needs a label column (the declared outcome Y), got None"
                )
            check_same_shape("margin", margin, "label", label)
            if label.is_floating_point() or label.dtype == torch.bool:
                raise TypeError(f"label must be an integer tensor, got {label.dtype}")
        if self.needs_twins:
            if twin_margin is None:
                raise ValueError(
                    f"{type(self).__name__} needs counterfactual twins (twin_margin, i.e. twin columns "
                    "prompt_cf/chosen_cf/rejected_cf in the data), got None"
                )
            check_floating("twin_margin", twin_margin)
            check_same_shape("margin", margin, "twin_margin", twin_margin)
            check_finite("twin_margin", twin_margin)

    def cell_statistics(
        self,
        margin: torch.Tensor,
        group: torch.Tensor,
        label: torch.Tensor | None = None,
        twin_margin: torch.Tensor | None = None,
        *,
        proxy: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-cell sums of the event values and per-cell example counts (differentiable sums)."""
        values = self.event_values(margin, twin_margin, proxy=proxy)
        cells = self.cell_index(group, label)
        sums = torch.zeros(self.num_cells, dtype=values.dtype, device=values.device).index_add(
            0, cells, values
        )
        counts = torch.bincount(cells, minlength=self.num_cells).to(values.dtype)
        return sums, counts

    def from_statistics(
        self, sums: torch.Tensor, counts: torch.Tensor, *, count_scale: float = 1.0
    ) -> ConstraintEvaluation:
        """Constraint values from (possibly all-reduced) cell sums and counts.

        ``count_scale`` divides the counts; a data-parallel primal step passes local sums with
        global counts and ``count_scale = 1 / world_size`` so that averaging gradients over
        processes reproduces the gradient of the global rate.
        """
        present = counts > 0
        rates = sums / (counts * count_scale).clamp_min(torch.finfo(sums.dtype).tiny)
        coefficients = self.coefficients().to(rates.device, rates.dtype)
        statistics = coefficients @ rates
        # a constraint is active only when every cell it reads has examples
        active = ((coefficients != 0) <= present[None, :]).all(dim=1)
        violations = torch.where(active, statistics - self.epsilon, torch.zeros_like(statistics))
        return ConstraintEvaluation(
            statistics=statistics,
            violations=violations,
            active=active,
            cell_sums=sums,
            cell_counts=counts,
            names=self.names,
        )

    def evaluate(
        self,
        margin: torch.Tensor,
        group: torch.Tensor,
        label: torch.Tensor | None = None,
        twin_margin: torch.Tensor | None = None,
        *,
        proxy: bool = False,
    ) -> ConstraintEvaluation:
        """Evaluate on canonical margins ``m = orientation * (r_chosen - r_rejected)``."""
        self.check_inputs(margin, group, label, twin_margin)
        sums, counts = self.cell_statistics(margin, group, label, twin_margin, proxy=proxy)
        return self.from_statistics(sums, counts)


class _GroupParity(Constraint):
    """Shared layout of DP and EO: within each stratum, every group against the anchor, both ways."""

    num_strata: int = 1

    @property
    def num_cells(self) -> int:
        return self.num_strata * self.num_groups

    def _stratum_names(self) -> list[str]:
        return [""]

    @property
    def names(self) -> tuple[str, ...]:
        out = []
        for stratum in self._stratum_names():
            for group in range(self.num_groups):
                if group == self.anchor:
                    continue
                out.append(f"rate[{group}{stratum}] - rate[{self.anchor}{stratum}]")
                out.append(f"rate[{self.anchor}{stratum}] - rate[{group}{stratum}]")
        return tuple(out)

    def coefficients(self) -> torch.Tensor:
        rows = []
        for stratum in range(self.num_strata):
            base = stratum * self.num_groups
            for group in range(self.num_groups):
                if group == self.anchor:
                    continue
                row = torch.zeros(self.num_cells)
                row[base + group], row[base + self.anchor] = 1.0, -1.0
                rows.extend([row, -row])
        return torch.stack(rows)


class DemographicParity(_GroupParity):
    """``|P(h=1 | A=a) - P(h=1 | A=anchor)| <= epsilon`` for every ``a != anchor``: 2(K-1) constraints."""

    name = "demographic_parity"

    def cell_index(self, group: torch.Tensor, label: torch.Tensor | None) -> torch.Tensor:
        return group.long()


class EqualizedOdds(_GroupParity):
    """DP within each value ``y`` of the declared outcome Y: 2(K-1)|Y| constraints.

    ``label`` is the outcome the rates are conditioned on (for example whether the canonical first
    response is truly better); conditioning on biased human labels would equalize errors relative
    to the bias, so declare a clean outcome where one exists.
    """

    name = "equalized_odds"
    needs_label = True

    def __init__(
        self, epsilon: float, *, num_groups: int = 2, anchor: int = 0, num_outcomes: int = 2
    ) -> None:
        super().__init__(epsilon, num_groups=num_groups, anchor=anchor)
        if isinstance(num_outcomes, bool) or not isinstance(num_outcomes, int) or num_outcomes < 1:
            raise ValueError(f"num_outcomes must be an int >= 1, got {num_outcomes!r}")
        self.num_outcomes = num_outcomes

    @property
    def num_strata(self) -> int:  # type: ignore[override]
        return self.num_outcomes

    def _stratum_names(self) -> list[str]:
        return [f"|Y={y}" for y in range(self.num_outcomes)]

    def check_inputs(self, margin, group, label=None, twin_margin=None) -> None:
        super().check_inputs(margin, group, label, twin_margin)
        if (
            label is not None
            and label.numel()
            and (int(label.min()) < 0 or int(label.max()) >= self.num_outcomes)
        ):
            raise ValueError(
                f"label values must lie in [0, {self.num_outcomes - 1}] for num_outcomes={self.num_outcomes}, "
                f"got values in [{int(label.min())}, {int(label.max())}]"
            )

    def cell_index(self, group: torch.Tensor, label: torch.Tensor | None) -> torch.Tensor:
        return label.long() * self.num_groups + group.long()

    def __repr__(self) -> str:
        return f"{super().__repr__()[:-1]}, num_outcomes={self.num_outcomes})"


class Counterfactual(Constraint):
    """Per group ``a``: ``P(h(x) != h(x^{a->a'}) | A=a) <= epsilon``: K constraints.

    The twin is the same pair with the attribute swapped consistently in prompt and responses.
    The hard event is a flip of the canonical preference; its proxy is ``|sigmoid(m) - sigmoid(m_cf)|``.
    The anchor is unused (every group is constrained on its own flip rate).
    """

    name = "counterfactual"
    needs_twins = True

    @property
    def num_cells(self) -> int:
        return self.num_groups

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f"flip_rate[{group}]" for group in range(self.num_groups))

    def event_values(
        self, margin: torch.Tensor, twin_margin: torch.Tensor | None, *, proxy: bool
    ) -> torch.Tensor:
        if proxy:
            return (torch.sigmoid(margin) - torch.sigmoid(twin_margin)).abs()
        return ((margin > 0) != (twin_margin > 0)).to(margin.dtype)

    def cell_index(self, group: torch.Tensor, label: torch.Tensor | None) -> torch.Tensor:
        return group.long()

    def coefficients(self) -> torch.Tensor:
        return torch.eye(self.num_cells)


CONSTRAINT_NAMES = {
    "demographic_parity": DemographicParity,
    "dp": DemographicParity,
    "equalized_odds": EqualizedOdds,
    "eo": EqualizedOdds,
    "counterfactual": Counterfactual,
    "cf": Counterfactual,
}


def make_constraint(
    name: str, epsilon: float, *, num_groups: int = 2, anchor: int = 0, num_outcomes: int = 2
) -> Constraint:
    """Build a constraint by name: ``demographic_parity``/``dp``, ``equalized_odds``/``eo``, ``counterfactual``/``cf``."""
    if not isinstance(name, str) or name.lower() not in CONSTRAINT_NAMES:
        raise ValueError(
            f"name must be one of {sorted(CONSTRAINT_NAMES)} (a constraint), got {name!r}"
        )
    cls = CONSTRAINT_NAMES[name.lower()]
    if cls is EqualizedOdds:
        return cls(epsilon, num_groups=num_groups, anchor=anchor, num_outcomes=num_outcomes)
    return cls(epsilon, num_groups=num_groups, anchor=anchor)
