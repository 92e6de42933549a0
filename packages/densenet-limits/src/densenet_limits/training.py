"""Training and evaluation of dense, sparse and unconstrained networks (Adam, mini-batches).

Long runs can checkpoint and resume: :func:`train` with ``checkpoint_dir`` writes the model, the
Adam moments, the step, the losses so far and the batch sampler's RNG state every
``checkpoint_every`` steps (safetensors through :func:`kernelkit.io.training_state_tensors`),
and continues from a checkpoint of the same run found there, bit for bit as if never stopped.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from densenet_limits.networks import check_batch, parameter_groups
from kernelkit.io import (
    MANIFEST_NAME,
    ArtifactError,
    load_artifact,
    load_training_state,
    save_artifact,
    training_state_tensors,
)
from kernelkit.utils import progress
from kernelkit.validation import (
    check_finite,
    check_floating,
    check_index_range,
    check_int_in_range,
    check_real_in_range,
    check_tensor,
)


def _check_targets(targets: object, rows: int) -> None:
    """Finite float regression targets, one row (``(N,)`` or ``(N, out)``) per input."""
    check_floating("targets", targets)
    if targets.ndim not in (1, 2) or targets.shape[0] != rows:
        raise ValueError(
            f"targets must have shape ({rows},) or ({rows}, out), one row per input, got "
            f"{tuple(targets.shape)}"
        )
    check_finite("targets", targets)


def _check_class_labels(labels: object, rows: int, classes: int) -> None:
    check_index_range("labels", labels, classes)
    if labels.shape != (rows,):
        raise ValueError(
            f"labels must have shape ({rows},), one per input, got {tuple(labels.shape)}"
        )


__all__ = ["CHECKPOINT_KIND", "TrainConfig", "accuracy", "load_digits_split", "r2_score", "train"]

CHECKPOINT_KIND = "densenet-limits-training-state"
_SAMPLER_STATE = "train.batch_sampler_rng"
_LOSSES = "train.losses"


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


def _run_identity(
    model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, config: TrainConfig, task: str
) -> dict:
    """What a checkpoint must share with the run resuming it (everything but ``steps``)."""
    digest = hashlib.sha256()
    for tensor in (inputs, targets):
        digest.update(str((tuple(tensor.shape), str(tensor.dtype))).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    model_config = model.config() if hasattr(model, "config") else {}
    return {
        "train_config": {k: v for k, v in asdict(config).items() if k != "steps"},
        "task": task,
        "model": {"class": type(model).__name__, **model_config},
        "data_sha256": digest.hexdigest(),
    }


def train(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    config: TrainConfig | None = None,
    *,
    task: str = "regression",
    show_progress: bool = False,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int = 500,
) -> list[float]:
    """Fit ``model`` with Adam; return the loss of every step.

    ``task="regression"``: mean squared error on ``targets`` of shape ``(N,)`` or ``(N, out)``;
    ``task="classification"``: cross-entropy on integer labels ``(N,)``. Constrained layers are
    projected back into their box after every step (a no-op for the tanh form).

    With ``checkpoint_dir``, the training state is written there (a ``kernelkit.io`` artifact: an
    interrupted save leaves the previous checkpoint loadable) every ``checkpoint_every`` steps and at the end. If the directory already holds a
    checkpoint of the same run (same model class and config, data, task and ``config`` apart
    from ``steps``, at a step ``≤ config.steps``) training resumes from it and ends exactly as an
    uninterrupted run would; ``model`` must then be built as for the original run (its weights
    are overwritten). A checkpoint of a different run raises ``ValueError``.
    """
    config = config or TrainConfig()
    check_batch(model, inputs)
    if task not in ("regression", "classification"):
        raise ValueError(f"task must be 'regression' or 'classification', got {task!r}")
    check_tensor("targets", targets)
    if task == "regression":
        _check_targets(targets, inputs.shape[0])
    else:
        check_index_range("targets", targets, 2**62)
        if targets.shape != (inputs.shape[0],):
            raise ValueError(
                f"targets must be class ids of shape ({inputs.shape[0]},), got {tuple(targets.shape)}"
            )
    check_int_in_range("checkpoint_every", checkpoint_every, 1)
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = _optimizer(model, config)
    losses: list[float] = []
    start = 0
    directory = Path(checkpoint_dir) if checkpoint_dir is not None else None
    identity = _run_identity(model, inputs, targets, config, task) if directory else None
    found = directory if directory and (directory / MANIFEST_NAME).is_file() else None
    if found is not None:
        tensors, meta = load_artifact(found, kind=CHECKPOINT_KIND)
        saved = {key: meta.get(key) for key in identity}
        if saved != identity or not 0 <= meta.get("step", -1) <= config.steps:
            raise ValueError(
                f"checkpoint_dir {str(found)!r} holds a checkpoint of a different run "
                f"(saved {saved}, step {meta.get('step')}; this run {identity}, "
                f"{config.steps} steps); use another directory or delete it"
            )
        for name in (_SAMPLER_STATE, _LOSSES):
            if name not in tensors:
                raise ArtifactError(f"checkpoint {str(found)!r} lacks the tensor {name!r}")
        load_training_state(
            {k: v for k, v in tensors.items() if not k.startswith("train.")}, model, optimizer
        )
        generator.set_state(tensors[_SAMPLER_STATE])
        losses = tensors[_LOSSES].tolist()
        start = meta["step"]

    def save(step: int) -> None:
        state = training_state_tensors(model, optimizer)
        state[_SAMPLER_STATE] = generator.get_state()
        state[_LOSSES] = torch.tensor(losses, dtype=torch.float64)
        save_artifact(directory, state, {**identity, "step": step}, kind=CHECKPOINT_KIND)

    steps = progress(
        range(start, config.steps),
        desc="train",
        total=config.steps - start,
        disable=not show_progress,
    )
    for step in steps:
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
        if directory is not None and (step + 1) % checkpoint_every == 0:
            save(step + 1)
    if directory is not None and start < config.steps and config.steps % checkpoint_every:
        save(config.steps)
    return losses


@torch.no_grad()
def r2_score(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> float:
    """``1 − MSE / Var(targets)`` on held-out data (can be negative). NaN inputs or targets and
    targets without variance raise ``ValueError``."""
    check_batch(model, inputs)
    _check_targets(targets, inputs.shape[0])
    if not bool(targets.var(unbiased=False) > 0):
        raise ValueError("targets have no variance, so R² is undefined")
    prediction = model(inputs).reshape(targets.shape)
    residual = (prediction - targets).pow(2).mean()
    return float(1 - residual / targets.var(unbiased=False))


@torch.no_grad()
def accuracy(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of ``inputs`` whose arg-max logit is the label (class ids below the logit count)."""
    check_batch(model, inputs)
    logits = model(inputs)
    _check_class_labels(labels, inputs.shape[0], logits.shape[-1])
    return float((logits.argmax(-1) == labels).float().mean())


def load_digits_split(
    *, test_fraction: float = 0.25, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """scikit-learn's bundled 8×8 digits in ``[0, 1]^64``: ``(x_train, y_train, x_test, y_test)``."""
    check_real_in_range("test_fraction", test_fraction, 0.0, 1.0)
    if test_fraction in (0.0, 1.0):
        raise ValueError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction}")
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = torch.tensor(data.data / 16.0, dtype=torch.float32)
    y = torch.tensor(data.target, dtype=torch.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_fraction, random_state=seed, stratify=y
    )
    return x_train, y_train, x_test, y_test
