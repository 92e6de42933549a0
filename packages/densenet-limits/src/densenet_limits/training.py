"""Training and evaluation of dense, sparse and unconstrained networks (Adam, mini-batches)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from densenet_limits.networks import parameter_groups
from kernelkit.utils import progress
from kernelkit.validation import check_finite, check_floating, check_int_in_range

__all__ = ["TrainConfig", "accuracy", "load_digits_split", "r2_score", "train"]


@dataclass
class TrainConfig:
    """Optimiser settings; defaults are the research pilot's (E1: 1500 Adam steps of batch 256)."""

    steps: int = field(default=1500, metadata={"help": "number of Adam steps"})
    batch_size: int = field(default=256, metadata={"help": "mini-batch size"})
    lr: float = field(
        default=3e-3,
        metadata={
            "help": "Adam learning rate for unconstrained and tanh-parametrised parameters; "
            "clamped parameters get lr * clamp_lr_per_bound * bound / lr = clamp_lr_per_bound * bound"
        },
    )
    clamp_lr_per_bound: float = field(
        default=0.02,
        metadata={
            "help": "learning rate of a clamped parameter per unit of its bound (pilot: 0.02)"
        },
    )
    seed: int = field(default=0, metadata={"help": "seed for batch order"})

    def __post_init__(self) -> None:
        check_int_in_range("steps", self.steps, 1)
        check_int_in_range("batch_size", self.batch_size, 1)
        for name in ("lr", "clamp_lr_per_bound"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and value > 0):
                raise ValueError(f"{name} must be a number > 0, got {value!r}")


def _optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    groups = parameter_groups(model, 1.0)
    for group in groups:
        scale = group["lr"]
        # A scale of exactly 1 marks an unconstrained or reparametrised parameter.
        group["lr"] = config.lr if scale == 1.0 else config.clamp_lr_per_bound * scale
    return torch.optim.Adam(groups)


def train(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    config: TrainConfig | None = None,
    *,
    task: str = "regression",
    show_progress: bool = False,
) -> list[float]:
    """Fit ``model`` with Adam; return the loss of every step.

    ``task="regression"``: mean squared error on ``targets`` of shape ``(N,)`` or ``(N, out)``;
    ``task="classification"``: cross-entropy on integer labels ``(N,)``. Constrained layers are
    projected back into their box after every step (a no-op for the tanh form).
    """
    config = config or TrainConfig()
    check_floating("inputs", inputs)
    check_finite("inputs", inputs)
    if task not in ("regression", "classification"):
        raise ValueError(f"task must be 'regression' or 'classification', got {task!r}")
    if targets.shape[0] != inputs.shape[0]:
        raise ValueError(
            f"targets must have {inputs.shape[0]} rows like inputs, got shape {tuple(targets.shape)}"
        )
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = _optimizer(model, config)
    losses = []
    for _ in progress(range(config.steps), desc="train", disable=not show_progress):
        index = torch.randint(0, inputs.shape[0], (config.batch_size,), generator=generator)
        output = model(inputs[index])
        if task == "regression":
            loss = nn.functional.mse_loss(output.reshape(targets[index].shape), targets[index])
        else:
            loss = nn.functional.cross_entropy(output, targets[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        model.project_()
        losses.append(loss.item())
    return losses


@torch.no_grad()
def r2_score(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> float:
    """``1 − MSE / Var(targets)`` on held-out data (can be negative)."""
    prediction = model(inputs).reshape(targets.shape)
    residual = (prediction - targets).pow(2).mean()
    return float(1 - residual / targets.var(unbiased=False))


@torch.no_grad()
def accuracy(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> float:
    return float((model(inputs).argmax(-1) == labels).float().mean())


def load_digits_split(
    *, test_fraction: float = 0.25, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """scikit-learn's bundled 8×8 digits in ``[0, 1]^64``: ``(x_train, y_train, x_test, y_test)``."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = torch.tensor(data.data / 16.0, dtype=torch.float32)
    y = torch.tensor(data.target, dtype=torch.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_fraction, random_state=seed, stratify=y
    )
    return x_train, y_train, x_test, y_test
