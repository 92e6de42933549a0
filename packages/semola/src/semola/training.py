"""One harness for SEMoLA and its baselines: build, fit (with resumable checkpoints), evaluate."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from kernelkit.io import (
    load_artifact,
    load_training_state,
    save_artifact,
    training_state_tensors,
)
from kernelkit.utils import progress, seed_everything
from kernelkit.validation import check_int_in_range
from semola.actions import ImageAction
from semola.augmenter import LieAugmenter
from semola.data import TaskData, affine_generators
from semola.loss import SEMoLALossConfig
from semola.model import AugmentedTraining, LieGAN, PlainModel, SEMoLA, pair_discriminator

__all__ = [
    "METHODS",
    "FitResult",
    "TrainConfig",
    "build_trainer",
    "evaluate",
    "fit",
    "point_mlp",
    "small_cnn",
    "task_loss_for",
]

METHODS = ("semola", "none", "ground_truth", "augerino", "liegan")
Method = Literal["semola", "none", "ground_truth", "augerino", "liegan"]
CHECKPOINT_KIND = "semola-checkpoint"


@dataclass
class TrainConfig:
    """What to train, and how."""

    task: str = field(
        default="rotation2d",
        metadata={"help": "rotation2d, no_symmetry2d, so3_points, 2body, 3body or digits"},
    )
    method: Method = field(
        default="semola",
        metadata={"help": "semola, none, ground_truth, augerino or liegan"},
    )
    steps: int = field(default=1500, metadata={"help": "optimiser steps"})
    batch_size: int = field(default=128, metadata={"help": "samples per step"})
    lr: float = field(default=3e-3, metadata={"help": "Adam learning rate of the model"})
    generator_lr: float = field(
        default=3e-2,
        metadata={"help": "Adam learning rate of the learned generators"},
    )
    seed: int = field(default=0, metadata={"help": "seed for data, initialisation and sampling"})
    num_samples: int = field(
        default=2048, metadata={"help": "generated samples (ignored for digits)"}
    )
    num_generators: int = field(default=1, metadata={"help": "k, generators SEMoLA learns"})
    coefficient_scale: float = field(
        default=1.0,
        metadata={
            "help": "s: coefficients ~ U[-s, s] on trace-normalised generators (pi = all angles);"
            " liegan: N(0, s^2)"
        },
    )
    hidden: int = field(default=64, metadata={"help": "width of the base model"})
    model: Literal["mlp", "cnn"] = field(
        default="mlp",
        metadata={"help": "base model on images: mlp (flattened pixels) or cnn (small_cnn)"},
    )
    discovery_steps: int = field(
        default=0,
        metadata={
            "help": "SEMoLA: first steps in which the equivariance term trains only the generators"
        },
    )
    widened_scale: float = field(
        default=0.0,
        metadata={
            "help": "SEMoLA range curriculum: after the discovery phase, widen the coefficient"
            " range to U[-w, w] (0 keeps coefficient_scale)"
        },
    )
    augerino_reward: float = field(
        default=0.01, metadata={"help": "Augerino's reward on the norm of its ranges"}
    )
    checkpoint_every: int = field(
        default=500, metadata={"help": "steps between checkpoints (with --out)"}
    )

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        for name in (
            "steps",
            "batch_size",
            "num_samples",
            "num_generators",
            "hidden",
            "checkpoint_every",
        ):
            check_int_in_range(name, getattr(self, name), 1)
        check_int_in_range("discovery_steps", self.discovery_steps, 0)
        if (
            isinstance(self.widened_scale, bool)
            or not isinstance(self.widened_scale, int | float)
            or not (self.widened_scale >= 0 and math.isfinite(self.widened_scale))
        ):
            raise ValueError(
                f"widened_scale must be a finite number >= 0, got {self.widened_scale!r}"
            )
        if self.model not in ("mlp", "cnn"):
            raise ValueError(f"model must be 'mlp' or 'cnn', got {self.model!r}")
        if not (
            self.lr > 0
            and self.generator_lr > 0
            and self.coefficient_scale > 0
            and self.augerino_reward >= 0
        ):
            raise ValueError(
                "lr, generator_lr and coefficient_scale must be > 0 and augerino_reward >= 0, got"
                f" lr={self.lr}, generator_lr={self.generator_lr},"
                f" coefficient_scale={self.coefficient_scale}, augerino_reward={self.augerino_reward}"
            )


class _PointMLP(nn.Module):
    def __init__(self, in_features: int, out_shape: tuple[int, ...], hidden: int) -> None:
        super().__init__()
        self.out_shape = out_shape
        self.net = nn.Sequential(
            nn.Linear(in_features, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, math.prod(out_shape)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1)).reshape(x.shape[0], *self.out_shape)


def point_mlp(in_features: int, out_shape: tuple[int, ...], hidden: int = 64) -> nn.Module:
    """An unconstrained MLP on the flattened sample, reshaped to ``out_shape`` (``()`` for a scalar)."""
    check_int_in_range("in_features", in_features, 1)
    check_int_in_range("hidden", hidden, 1)
    if not isinstance(out_shape, tuple) or not all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in out_shape
    ):
        raise ValueError(f"out_shape must be a tuple of positive ints, got {out_shape!r}")
    return _PointMLP(in_features, out_shape, hidden)


def small_cnn(num_classes: int = 10, channels: int = 16) -> nn.Module:
    """A three-layer CNN with global pooling, for small single-channel images."""
    check_int_in_range("num_classes", num_classes, 2)
    check_int_in_range("channels", channels, 1)
    return nn.Sequential(
        nn.Conv2d(1, channels, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(channels, 2 * channels, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(2 * channels, 2 * channels, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(2 * channels, num_classes),
    )


def task_loss_for(task: TaskData):
    """Cross-entropy for classification, mean squared error for regression."""
    if task.kind == "classification":
        return F.cross_entropy
    return F.mse_loss


def _base_model(task: TaskData, hidden: int, model: str = "mlp") -> nn.Module:
    if task.kind == "classification":
        num_classes = int(task.y_train.max()) + 1
        if model == "cnn":
            return small_cnn(num_classes, channels=max(hidden // 4, 1))
        return point_mlp(task.x_train[0].numel(), (num_classes,), hidden)
    return point_mlp(task.x_train[0].numel(), tuple(task.y_train.shape[1:]), hidden)


def build_trainer(
    task: TaskData, config: TrainConfig, loss_config: SEMoLALossConfig | None = None
) -> nn.Module:
    """The model for ``config.method`` on ``task`` (seeded by ``config.seed``)."""
    torch.manual_seed(config.seed)
    base = _base_model(task, config.hidden, config.model)
    if config.method == "none":
        return PlainModel(base)
    if config.method == "semola":
        augmenter = LieAugmenter(
            task.dim,
            config.num_generators,
            action=task.action,
            coefficient_scale=config.coefficient_scale,
            seed=config.seed,
        )
        return SEMoLA(base, augmenter, output_action=task.output_action, config=loss_config)
    if config.method == "liegan":
        augmenter = LieAugmenter(
            task.dim,
            config.num_generators,
            action=task.action,
            distribution="gaussian",
            coefficient_scale=config.coefficient_scale,
            seed=config.seed,
        )
        num_classes = int(task.y_train.max()) + 1 if task.kind == "classification" else None
        target_features = num_classes if num_classes is not None else task.y_train[0].numel()
        discriminator = pair_discriminator(task.x_train[0].numel() + target_features, config.hidden)
        return LieGAN(
            base,
            augmenter,
            discriminator,
            output_action=task.output_action,
            num_classes=num_classes,
        )
    if config.method == "ground_truth":
        if task.reference is None:
            raise ValueError(f"task {task.name!r} has no ground-truth symmetry to augment with")
        augmenter = LieAugmenter(
            task.dim,
            task.reference.shape[0],
            action=task.action,
            init=task.reference,
            learn_basis=False,
            coefficient_scale=config.coefficient_scale,
        )
        return AugmentedTraining(base, augmenter, output_action=task.output_action)
    if isinstance(task.action, ImageAction):
        # Augerino on images: the six affine generators acting on homogeneous pixel coordinates.
        basis, action = affine_generators(), ImageAction(3)
    else:
        # On vectors: every elementary matrix E_ij, so the fixed basis spans all of gl(d).
        basis = torch.eye(task.dim * task.dim).reshape(-1, task.dim, task.dim)
        action = task.action
    if task.output_action is not None and action.dim != task.output_action.dim:
        raise ValueError(
            "augerino needs the output action to use the same matrices as the input action"
        )
    augmenter = LieAugmenter(
        action.dim,
        basis.shape[0],
        action=action,
        init=basis,
        learn_basis=False,
        learn_scale=True,
        coefficient_scale=0.1,
    )
    return AugmentedTraining(
        base, augmenter, output_action=task.output_action, range_reward=config.augerino_reward
    )


@dataclass
class FitResult:
    """The trained model and the loss parts logged every ``log_every`` steps."""

    trainer: nn.Module
    history: list[dict[str, float]]
    steps_done: int


def fit(
    trainer: nn.Module,
    task: TaskData,
    config: TrainConfig,
    *,
    checkpoint_dir: str | Path | None = None,
    log_every: int = 50,
) -> FitResult:
    """Train ``trainer`` on ``task.x_train`` with Adam; checkpoint and resume from ``checkpoint_dir``.

    A checkpoint (safetensors: model and Adam state, plus the step and config as JSON) is
    written atomically every ``config.checkpoint_every`` steps and at the end; if one exists
    for the same config, training resumes from its step.
    """
    check_int_in_range("log_every", log_every, 1)
    seed_everything(config.seed)
    augmenter = getattr(trainer, "augmenter", None)
    generators = (
        [augmenter.generators]
        if augmenter is not None and augmenter.generators.requires_grad
        else []
    )
    # The generators are a handful of O(1) entries; a larger step lets them turn in a few hundred
    # steps instead of thousands. Learned ranges (log-scales) keep the model's rate: a large step
    # there lets exp(c L) overflow.
    others = [
        p for p in trainer.parameters() if p.requires_grad and all(p is not g for g in generators)
    ]
    groups = [{"params": others, "lr": config.lr}]
    if generators:
        groups.append({"params": generators, "lr": config.generator_lr})
    optimiser = torch.optim.Adam(groups)
    task_loss = task_loss_for(task)
    start, history = 0, []
    record = {"config": asdict(config), "trainer": type(trainer).__name__}
    if checkpoint_dir is not None and (Path(checkpoint_dir) / "manifest.json").is_file():
        tensors, saved = load_artifact(checkpoint_dir, kind=CHECKPOINT_KIND)
        if saved["config"] != record["config"]:
            raise ValueError(
                f"checkpoint in {checkpoint_dir} was written for another config: {saved['config']}"
            )
        load_training_state(tensors, trainer, optimiser)
        start, history = int(saved["step"]), list(saved["history"])
    trainer.train()
    num_train = task.x_train.shape[0]
    for step in progress(
        range(start, config.steps),
        desc=f"{config.method} on {task.name}",
        initial=start,
        total=config.steps,
    ):
        # Reseeding from (seed, step) makes batches and augmentations a function of the step, so a
        # resumed run continues exactly as the uninterrupted one would have.
        torch.manual_seed(config.seed * 1_000_003 + step)
        if isinstance(trainer, SEMoLA):
            trainer.discovering = step < config.discovery_steps
            if config.widened_scale > 0:
                scale = config.coefficient_scale if trainer.discovering else config.widened_scale
                with torch.no_grad():
                    trainer.augmenter.log_scale.fill_(math.log(scale))
        index = torch.randint(0, num_train, (min(config.batch_size, num_train),))
        terms = trainer.compute_loss(task.x_train[index], task.y_train[index], task_loss)
        optimiser.zero_grad(set_to_none=True)
        terms.total.backward()
        optimiser.step()
        if (step + 1) % log_every == 0 or step + 1 == config.steps:
            history.append({"step": step + 1, **terms.parts})
        done = step + 1
        if checkpoint_dir is not None and (
            done % config.checkpoint_every == 0 or done == config.steps
        ):
            save_artifact(
                checkpoint_dir,
                training_state_tensors(trainer, optimiser),
                {**record, "step": done, "history": history},
                kind=CHECKPOINT_KIND,
            )
    if isinstance(trainer, SEMoLA):
        trainer.discovering = False
    trainer.eval()
    return FitResult(trainer, history, config.steps)


@torch.no_grad()
def evaluate(trainer: nn.Module, task: TaskData) -> dict[str, float]:
    """Test metrics: accuracy (classification) or MSE (regression), in distribution and shifted."""
    trainer.eval()
    splits = {"test": (task.x_test, task.y_test)}
    if task.x_shift is not None:
        splits["shift"] = (task.x_shift, task.y_shift)
    metrics = {}
    for split, (x, y) in splits.items():
        predictions = torch.cat([trainer(chunk) for chunk in x.split(512)])
        if task.kind == "classification":
            metrics[f"{split}_accuracy"] = float((predictions.argmax(-1) == y).float().mean())
        else:
            metrics[f"{split}_mse"] = float(F.mse_loss(predictions, y))
    return metrics
