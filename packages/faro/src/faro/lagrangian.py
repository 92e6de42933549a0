"""The proxy-Lagrangian game (Cotter, Jiang and Sridharan, 2019) with bounded multipliers.

The primal player minimises ``L(theta) + sum_j lambda_j * g_proxy_j(theta)`` where the proxy
violations are smooth (sigmoid rates); the dual player ascends on the *hard* violations
(indicator rates) and is projected back onto the box ``[0, B]``.  Unbounded multipliers diverge
when a constraint cannot be met exactly (two-sided ``epsilon = 0`` drove them to ~1e28 in the
research pilot), hence the bound.
"""

from __future__ import annotations

import math

import torch

from kernelkit.validation import check_finite, check_floating, check_ndim

__all__ = ["ProxyLagrangian"]


class ProxyLagrangian:
    """Multipliers ``lambda in [0, bound]^m`` updated by projected gradient ascent.

    Args:
        num_constraints: number ``m`` of one-sided constraints.
        bound: the box bound ``B`` on every multiplier (finite, > 0).
        dual_lr: step size of the ascent on hard violations (>= 0).
    """

    def __init__(self, num_constraints: int, *, bound: float = 10.0, dual_lr: float = 0.05) -> None:
        if (
            isinstance(num_constraints, bool)
            or not isinstance(num_constraints, int)
            or num_constraints < 1
        ):
            raise ValueError(f"num_constraints must be an int >= 1, got {num_constraints!r}")
        if not isinstance(bound, int | float) or not math.isfinite(bound) or bound <= 0:
            raise ValueError(
                f"bound must be a finite number > 0 (multipliers live in [0, bound]), got {bound!r}"
            )
        if not isinstance(dual_lr, int | float) or not math.isfinite(dual_lr) or dual_lr < 0:
            raise ValueError(f"dual_lr must be a finite number >= 0, got {dual_lr!r}")
        self.bound = float(bound)
        self.dual_lr = float(dual_lr)
        self.multipliers = torch.zeros(num_constraints, dtype=torch.float64)

    def _check(self, name: str, values: torch.Tensor, active: torch.Tensor | None) -> torch.Tensor:
        check_floating(name, values)
        check_ndim(name, values, 1)
        # A NaN violation would turn the multipliers (penalty) or the whole loss NaN.
        check_finite(name, values)
        if values.shape[0] != self.multipliers.shape[0]:
            raise ValueError(
                f"{name} must have {self.multipliers.shape[0]} entries (one per constraint), got {values.shape[0]}"
            )
        if active is None:
            return torch.ones_like(values, dtype=torch.bool)
        if active.shape != values.shape or active.dtype != torch.bool:
            raise ValueError(
                f"active must be a bool tensor of shape {tuple(values.shape)}, got {active.dtype} {tuple(active.shape)}"
            )
        return active

    def penalty(
        self, proxy_violations: torch.Tensor, active: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``sum_j lambda_j * proxy_violation_j`` over active constraints (differentiable in the violations)."""
        active = self._check("proxy_violations", proxy_violations, active)
        weights = self.multipliers.to(proxy_violations.device, proxy_violations.dtype) * active
        return (weights * proxy_violations).sum()

    @torch.no_grad()
    def ascend(
        self, hard_violations: torch.Tensor, active: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``lambda <- clip(lambda + dual_lr * g_hard, 0, B)``; inactive constraints keep their value."""
        active = self._check("hard_violations", hard_violations, active)
        step = self.dual_lr * hard_violations.detach().to("cpu", torch.float64) * active.cpu()
        self.multipliers = (self.multipliers + step).clamp(0.0, self.bound)
        return self.multipliers

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"multipliers": self.multipliers.clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        multipliers = state["multipliers"]
        if multipliers.shape != self.multipliers.shape:
            raise ValueError(
                f"multipliers in the state have shape {tuple(multipliers.shape)}, expected {tuple(self.multipliers.shape)}"
            )
        if bool((multipliers < 0).any()) or bool((multipliers > self.bound).any()):
            raise ValueError(
                f"multipliers in the state must lie in [0, {self.bound}], got {multipliers.tolist()}"
            )
        self.multipliers = multipliers.to(torch.float64).clone()
