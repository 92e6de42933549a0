"""The plain-torch path: a linear reward model on feature vectors trained by ProxyGDA.

This is the fast path for synthetic experiments, frontiers and tests.  It runs the same game as
:class:`faro.trainer.ProxyGDATrainer` (proxy violations in the primal loss, projected ascent on
hard violations, best validation-feasible iterate) without the transformers machinery.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from faro.constraints import Constraint, ConstraintEvaluation
from faro.data import FeaturePairs
from faro.lagrangian import ProxyLagrangian
from kernelkit.io import load_artifact, save_artifact
from kernelkit.utils import progress
from kernelkit.validation import check_floating, check_ndim, check_tensor

__all__ = [
    "LinearRewardModel",
    "LinearTrainingConfig",
    "TrainingResult",
    "stratified_order",
    "train_linear",
]

ARTIFACT_KIND = "faro-linear-reward-model"


class LinearRewardModel(nn.Module):
    """``r(x) = w . x + b`` on feature rows (the bias cancels in every pairwise quantity)."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        if isinstance(num_features, bool) or not isinstance(num_features, int) or num_features < 1:
            raise ValueError(f"num_features must be an int >= 1, got {num_features!r}")
        self.linear = nn.Linear(num_features, 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    @property
    def num_features(self) -> int:
        return self.linear.in_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Rewards of ``features[..., num_features]``, computed in the model's dtype.

        NaN and ±inf features propagate to the reward, as in ``nn.Linear``; the data paths
        (:class:`FeaturePairs`) refuse them before they get here.
        """
        check_floating("features", features)
        if features.ndim < 1 or features.shape[-1] != self.num_features:
            raise ValueError(
                f"features must end in a dimension of size {self.num_features}, got shape {tuple(features.shape)}"
            )
        return self.linear(features.to(self.linear.weight.dtype)).squeeze(-1)

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write safetensors plus a JSON manifest (atomically) into ``directory``."""
        return save_artifact(
            directory, self.state_dict(), {"num_features": self.num_features}, kind=ARTIFACT_KIND
        )

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> LinearRewardModel:
        tensors, config = load_artifact(directory, kind=ARTIFACT_KIND)
        model = cls(int(config["num_features"]))
        expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
        actual = {name: tuple(t.shape) for name, t in tensors.items()}
        if expected != actual:
            raise ValueError(
                f"artifact {str(directory)!r} holds tensors {actual}, expected {expected}"
            )
        model.load_state_dict(tensors)
        return model


@dataclass
class LinearTrainingConfig:
    """ProxyGDA on a linear reward model (defaults follow the research pilot: full-batch GD)."""

    steps: int = field(default=2000, metadata={"help": "primal-dual iterations"})
    learning_rate: float = field(
        default=0.5, metadata={"help": "primal step size (plain gradient descent)"}
    )
    dual_lr: float = field(
        default=0.05, metadata={"help": "multiplier ascent step size on hard violations"}
    )
    multiplier_bound: float = field(
        default=10.0, metadata={"help": "box bound B: multipliers live in [0, B]"}
    )
    batch_size: int = field(
        default=0, metadata={"help": "pairs per step, stratified by group; 0 = full batch"}
    )
    eval_every: int = field(
        default=50,
        metadata={"help": "steps between validation checks for the best feasible iterate"},
    )
    seed: int = field(default=0, metadata={"help": "seed for minibatch order"})

    def __post_init__(self) -> None:
        for name in ("steps", "eval_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if (
            isinstance(self.batch_size, bool)
            or not isinstance(self.batch_size, int)
            or self.batch_size < 0
        ):
            raise ValueError(
                f"batch_size must be an int >= 0 (0 = full batch), got {self.batch_size!r}"
            )
        if not math.isfinite(self.learning_rate) or self.learning_rate <= 0:
            raise ValueError(
                f"learning_rate must be a finite number > 0, got {self.learning_rate!r}"
            )


@dataclass
class TrainingResult:
    """The selected iterate and the run's trace.

    ``model`` is the best validation-feasible iterate (lowest validation BT loss among feasible
    checks) or, when no check was feasible, the one with the smallest largest violation;
    ``feasible`` says which. ``history`` has one dict per validation check.
    """

    model: LinearRewardModel
    best_step: int
    feasible: bool
    multipliers: torch.Tensor
    history: list[dict[str, float]]


def stratified_order(group: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A permutation in which every group is spread evenly, so each window holds its share of it.

    Each group's members are shuffled and given keys ``(rank + U(0,1)) / group_size``; sorting by
    key interleaves the groups in proportion to their sizes. ``group`` is a 1-D integer tensor of
    group ids >= 0.
    """
    check_tensor("group", group)
    check_ndim("group", group, 1)
    if group.is_floating_point() or group.dtype == torch.bool:
        raise TypeError(f"group must be an integer tensor, got {group.dtype}")
    if group.numel() and int(group.min()) < 0:
        raise ValueError(f"group must hold ids >= 0, got {int(group.min())}")
    keys = torch.empty(group.shape[0], dtype=torch.float64)
    for value in torch.unique(group):
        members = (group == value).nonzero().squeeze(1)
        shuffled = members[torch.randperm(members.numel(), generator=generator)]
        jitter = torch.rand(members.numel(), generator=generator, dtype=torch.float64)
        keys[shuffled] = (
            torch.arange(members.numel(), dtype=torch.float64) + jitter
        ) / members.numel()
    return torch.argsort(keys)


def _bt_loss(diff: torch.Tensor) -> torch.Tensor:
    return -nn.functional.logsigmoid(diff).mean()


def _evaluate_constraint(
    constraint: Constraint, model: nn.Module, data: FeaturePairs, diff: torch.Tensor, *, proxy: bool
) -> ConstraintEvaluation:
    orientation = data.orientation.to(diff.dtype)
    twin = None
    if constraint.needs_twins:
        if not data.has_twins:
            raise ValueError(
                f"{type(constraint).__name__} needs counterfactual twins, but the data has chosen_twin=None"
            )
        twin = orientation * (model(data.chosen_twin) - model(data.rejected_twin))
    if not proxy:
        twin = None if twin is None else twin.detach()
        diff = diff.detach()
    return constraint.evaluate(orientation * diff, data.group, data.label, twin, proxy=proxy)


def _check_groups(constraint: Constraint, data: FeaturePairs, name: str) -> None:
    counts = torch.bincount(data.group, minlength=constraint.num_groups)
    if counts.shape[0] > constraint.num_groups:
        raise ValueError(
            f"{name} has group ids up to {counts.shape[0] - 1}, but the constraint has num_groups={constraint.num_groups}"
        )
    empty = (counts == 0).nonzero().squeeze(1).tolist()
    if empty:
        raise ValueError(
            f"{name} has no examples for group(s) {empty}; every group needs at least one pair"
        )


def train_linear(
    train: FeaturePairs,
    constraint: Constraint | None,
    config: LinearTrainingConfig | None = None,
    *,
    validation: FeaturePairs | None = None,
    show_progress: bool | None = None,
) -> TrainingResult:
    """Train a :class:`LinearRewardModel` by ProxyGDA (plain BT when ``constraint`` is None).

    Primal: SGD on ``BT(theta) + sum_j lambda_j g_proxy_j(theta)``; dual: ``lambda <- clip(lambda +
    dual_lr g_hard, 0, B)`` on the same batch. Every ``eval_every`` steps the iterate is checked on
    ``validation`` (default: the training pairs) and the best feasible one is returned.
    """
    config = config or LinearTrainingConfig()
    validation = train if validation is None else validation
    if constraint is not None:
        _check_groups(constraint, train, "train")
        _check_groups(constraint, validation, "validation")
    model = LinearRewardModel(train.num_features)
    lagrangian = None
    if constraint is not None:
        lagrangian = ProxyLagrangian(
            constraint.num_constraints, bound=config.multiplier_bound, dual_lr=config.dual_lr
        )
    generator = torch.Generator().manual_seed(config.seed)
    order, cursor = None, 0
    history: list[dict[str, float]] = []
    best: tuple[tuple[int, float], int, dict] | None = None

    for step in progress(
        range(1, config.steps + 1),
        desc="faro linear",
        total=config.steps,
        disable=None if show_progress is None else not show_progress,
    ):
        if config.batch_size and config.batch_size < len(train):
            if order is None or cursor + config.batch_size > len(train):
                order, cursor = stratified_order(train.group, generator), 0
            batch = train.subset(order[cursor : cursor + config.batch_size])
            cursor += config.batch_size
        else:
            batch = train
        diff = model(batch.chosen) - model(batch.rejected)
        loss = _bt_loss(diff)
        if constraint is not None:
            proxy = _evaluate_constraint(constraint, model, batch, diff, proxy=True)
            hard = _evaluate_constraint(constraint, model, batch, diff, proxy=False)
            loss = loss + lagrangian.penalty(proxy.violations, proxy.active)
            lagrangian.ascend(hard.violations, hard.active)
        # plain gradient descent by hand: torch.optim's first use imports torch._dynamo (seconds)
        parameters = list(model.parameters())
        gradients = torch.autograd.grad(loss, parameters)
        with torch.no_grad():
            for parameter, gradient in zip(parameters, gradients, strict=True):
                parameter.sub_(config.learning_rate * gradient)

        if step % config.eval_every == 0 or step == config.steps:
            with torch.no_grad():
                val_diff = model(validation.chosen) - model(validation.rejected)
                val_loss = float(_bt_loss(val_diff))
                record = {
                    "step": float(step),
                    "val_bt_loss": val_loss,
                    "val_accuracy": float((val_diff > 0).float().mean()),
                }
                max_violation = -math.inf
                if constraint is not None:
                    evaluation = _evaluate_constraint(
                        constraint, model, validation, val_diff, proxy=False
                    )
                    max_violation = evaluation.max_violation
                    record["val_max_violation"] = max_violation
                    record["max_multiplier"] = float(lagrangian.multipliers.max())
                history.append(record)
                feasible = max_violation <= 0.0
                # feasible iterates rank by loss; infeasible ones after them, by violation
                key = (0, val_loss) if feasible else (1, max_violation)
                if best is None or key < best[0]:
                    best = (key, step, copy.deepcopy(model.state_dict()))

    key, best_step, state = best
    model.load_state_dict(state)
    multipliers = (
        lagrangian.multipliers.clone()
        if lagrangian is not None
        else torch.zeros(0, dtype=torch.float64)
    )
    return TrainingResult(
        model=model,
        best_step=best_step,
        feasible=key[0] == 0,
        multipliers=multipliers,
        history=history,
    )
