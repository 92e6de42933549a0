"""Training: a model on a dataset by a projection algorithm, and the same model by Adam.

:func:`train` runs the projection optimiser (and, if asked, Adam on the same model, batches and
number of updates) with progress bars, evaluates every ``eval_every`` updates, checkpoints the
parameters atomically (safetensors + JSON) and resumes from the last checkpoint.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from kernelkit.io import ArtifactError, load_artifact, save_artifact
from kernelkit.utils import progress
from pjax_torch import api, data, nn
from pjax_torch.optim import make_optimizer

__all__ = [
    "Curve",
    "TrainConfig",
    "build_model",
    "evaluate",
    "load_dataset",
    "train",
    "train_adam",
    "train_projection",
]


@dataclass
class TrainConfig:
    """One training run. Defaults follow the paper's comparison script where it has one."""

    model: Literal["mlp", "cnn", "rnn"] = field(default="mlp", metadata={"help": "architecture"})
    dataset: Literal["digits", "teacher-student", "sequence"] = field(
        default="digits",
        metadata={"help": "bundled or synthetic dataset (ignored with --data-path)"},
    )
    data_path: str = field(
        default="", metadata={"help": "an .npz with arrays x and y to train on instead"}
    )
    hidden: tuple[int, ...] = field(
        default=(32, 32),
        metadata={"help": "hidden widths (MLP); first entry for CNN channels / RNN state"},
    )
    activation: Literal["relu", "sign"] = field(
        default="relu", metadata={"help": "MLP hidden activation"}
    )
    skip: bool = field(
        default=False,
        metadata={"help": "concatenate every hidden output into the read-out (paper's --skip)"},
    )
    algorithm: Literal["dr", "ap", "ar", "dm", "cyclic-ap", "cyclic-dr"] = field(
        default="dr", metadata={"help": "projection algorithm (Douglas-Rachford by default)"}
    )
    steps_per_update: int = field(default=50, metadata={"help": "iterations per mini-batch"})
    consensus_weight: Literal["one", "count"] = field(
        default="one",
        metadata={"help": "output weight in node projections: 1 (reference) or copy count (exact)"},
    )
    output: Literal["cross_entropy", "margin"] = field(
        default="cross_entropy", metadata={"help": "classification output constraint"}
    )
    cross_entropy_lambda: float = field(
        default=5.0, metadata={"help": "step of the cross-entropy prox"}
    )
    batch_size: int = field(default=256, metadata={"help": "mini-batch size"})
    updates: int = field(default=200, metadata={"help": "number of mini-batch updates"})
    eval_every: int = field(
        default=20, metadata={"help": "evaluate on the test split every this many updates"}
    )
    adam: bool = field(
        default=True, metadata={"help": "also train the same model with Adam through autograd"}
    )
    adam_lr: float = field(default=1e-3, metadata={"help": "Adam learning rate"})
    seed: int = field(default=0, metadata={"help": "seed for initialisation and batch order"})
    out_dir: str = field(
        default="runs/pjax-torch", metadata={"help": "checkpoints and results go here"}
    )
    checkpoint_every: int = field(
        default=20, metadata={"help": "checkpoint every this many updates"}
    )
    resume: bool = field(
        default=True, metadata={"help": "continue from the checkpoint in out_dir if present"}
    )

    def __post_init__(self) -> None:
        for name in ("steps_per_update", "batch_size", "updates", "eval_every", "checkpoint_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        self.hidden = tuple(self.hidden)
        if not self.hidden or any(h < 1 for h in self.hidden):
            raise ValueError(f"hidden must be positive widths, got {self.hidden!r}")


@dataclass
class Curve:
    """Evaluation points of one run: update index, wall-clock seconds, test metric, residual."""

    label: str
    updates: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    metric: list[float] = field(default_factory=list)
    residual: list[float] = field(default_factory=list)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def load_dataset(config: TrainConfig) -> data.Dataset:
    if config.data_path:
        return data.load_arrays(config.data_path, seed=config.seed)
    if config.dataset == "digits":
        return data.load_digits(seed=config.seed, images=config.model == "cnn")
    if config.dataset == "teacher-student":
        return data.teacher_student(seed=config.seed)
    return data.sequence_task(seed=config.seed)


def build_model(
    config: TrainConfig, dataset: data.Dataset, *, straight_through: bool = False
) -> nn.Module:
    outputs = dataset.classes if dataset.task == "classification" else dataset.y_train.shape[-1]
    if config.model == "mlp":
        if dataset.x_train.ndim != 2:
            raise ValueError(
                f"the MLP needs (N, features) inputs, got {tuple(dataset.x_train.shape)}"
            )
        sizes = [dataset.x_train.shape[1], *config.hidden, outputs]
        return nn.MLP(sizes, config.activation, config.skip, straight_through)
    if config.model == "cnn":
        if dataset.x_train.ndim != 4:
            raise ValueError(
                f"the CNN needs (N, C, H, W) images, got {tuple(dataset.x_train.shape)}"
            )
        return nn.CNN(
            dataset.x_train.shape[1], config.hidden[0], dataset.x_train.shape[-1], outputs
        )
    if dataset.x_train.ndim != 3:
        raise ValueError(
            f"the RNN needs (N, steps, features) sequences, got {tuple(dataset.x_train.shape)}"
        )
    return nn.RNNClassifier(dataset.x_train.shape[2], config.hidden[0], outputs)


def _objective(config: TrainConfig, dataset: data.Dataset, logits, y):
    if dataset.task == "regression":
        return api.regression_target(logits, y)
    if config.output == "margin":
        return api.margin_loss(logits, y)
    return api.cross_entropy(logits, y, config.cross_entropy_lambda)


@torch.no_grad()
def evaluate(model: nn.Module, params: dict, dataset: data.Dataset) -> float:
    """Test accuracy (classification) or mean squared error (regression)."""
    prediction = model(params, dataset.x_test)
    if dataset.task == "regression":
        return float(((prediction - dataset.y_test) ** 2).mean())
    return float((prediction.argmax(-1) == dataset.y_test).float().mean())


def train_projection(
    config: TrainConfig,
    dataset: data.Dataset,
    model: nn.Module,
    params: dict,
    *,
    start: int = 0,
    curve: Curve | None = None,
    on_checkpoint=None,
    time_budget_s: float | None = None,
) -> tuple[dict, Curve]:
    optimizer = make_optimizer(
        config.algorithm,
        steps_per_update=config.steps_per_update,
        consensus_weight=config.consensus_weight,
    )
    curve = curve or Curve(config.algorithm)
    batches = _batches(config, dataset, skip=start)
    elapsed = curve.seconds[-1] if curve.seconds else 0.0
    began = time.perf_counter() - elapsed
    residual = float("nan")
    for update in progress(
        range(start, config.updates),
        desc=f"{config.algorithm} updates",
        initial=start,
        total=config.updates,
    ):
        x, y = next(batches)
        params, residual = optimizer.update(
            lambda p, x=x, y=y: _objective(config, dataset, model(p, x), y), params
        )
        done = update + 1
        if done % config.eval_every == 0 or done == config.updates:
            curve.updates.append(done)
            curve.seconds.append(time.perf_counter() - began)
            curve.metric.append(evaluate(model, params, dataset))
            curve.residual.append(residual)
        if on_checkpoint is not None and (
            done % config.checkpoint_every == 0 or done == config.updates
        ):
            on_checkpoint(done, params, curve)
        if time_budget_s is not None and time.perf_counter() - began > time_budget_s:
            break
    return params, curve


def train_adam(
    config: TrainConfig,
    dataset: data.Dataset,
    model: nn.Module,
    params: dict,
    *,
    updates: int | None = None,
    label: str = "adam",
) -> tuple[dict, Curve]:
    """The same model, batches and number of updates, by Adam through autograd."""
    params = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    optimiser = torch.optim.Adam(params.values(), lr=config.adam_lr)
    batches = _batches(config, dataset, skip=0)
    curve = Curve(label)
    began = time.perf_counter()
    total = config.updates if updates is None else updates
    for update in range(total):
        x, y = next(batches)
        optimiser.zero_grad()
        # on plain tensors the output constraints evaluate to their losses
        loss = _objective(config, dataset, model(params, x), y)
        loss.backward()
        optimiser.step()
        done = update + 1
        if done % config.eval_every == 0 or done == total:
            curve.updates.append(done)
            curve.seconds.append(time.perf_counter() - began)
            curve.metric.append(evaluate(model, params, dataset))
            curve.residual.append(float(loss.detach()))
    return {k: v.detach() for k, v in params.items()}, curve


def _batches(config: TrainConfig, dataset: data.Dataset, skip: int):
    generator = torch.Generator().manual_seed(config.seed + 1)
    stream = dataset.batches(min(config.batch_size, dataset.x_train.shape[0]), generator)
    for _ in range(skip):
        next(stream)
    return stream


def train(config: TrainConfig) -> dict:
    """Run ``config``; returns the curves and final metrics (also written to ``out_dir``)."""
    import json

    from kernelkit.io import atomic_write_text

    dataset = load_dataset(config)
    model = build_model(config, dataset)
    generator = torch.Generator().manual_seed(config.seed)
    params = model.init(generator)
    initial = {k: v.clone() for k, v in params.items()}
    out = Path(config.out_dir)
    checkpoint_dir = out / "checkpoint"
    start, curve = 0, None
    if config.resume and (checkpoint_dir / "manifest.json").exists():
        try:
            tensors, saved = load_artifact(
                checkpoint_dir,
                kind="pjax-torch-checkpoint",
                expected_shapes={k: tuple(v.shape) for k, v in params.items()},
            )
        except ArtifactError as err:
            raise ArtifactError(f"cannot resume from {checkpoint_dir}: {err}") from err
        if saved["config"] != _config_key(config):
            raise ValueError(
                f"the checkpoint in {checkpoint_dir} was written by a different configuration; "
                "use another --out-dir or --resume false"
            )
        params, start, curve = tensors, saved["update"], Curve(**saved["curve"])

    def on_checkpoint(done, current, current_curve):
        save_artifact(
            checkpoint_dir,
            current,
            {"config": _config_key(config), "update": done, "curve": current_curve.to_dict()},
            kind="pjax-torch-checkpoint",
        )

    params, curve = train_projection(
        config, dataset, model, params, start=start, curve=curve, on_checkpoint=on_checkpoint
    )
    result = {
        "projection": curve.to_dict(),
        "final_metric": curve.metric[-1] if curve.metric else None,
    }
    if config.adam:
        _, adam_curve = train_adam(
            config, dataset, build_model(config, dataset, straight_through=True), initial
        )
        result["adam"] = adam_curve.to_dict()
    atomic_write_text(out / "results.json", json.dumps(result, indent=2))
    return result


def _config_key(config: TrainConfig) -> dict:
    key = dataclasses.asdict(config)
    for name in (
        "updates",
        "eval_every",
        "checkpoint_every",
        "resume",
        "out_dir",
        "adam",
        "adam_lr",
    ):
        key.pop(name)
    key["hidden"] = list(key["hidden"])
    return key
