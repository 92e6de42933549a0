"""Training and length-generalisation evaluation on the synthetic tasks.

One loop trains any of the three models (Transformer-PSM, causal transformer, diagonal linear
RNN) on a task with next-token cross-entropy. Batches are drawn from a generator seeded by
``(seed, step)``, so a run resumed from a checkpoint sees exactly the batches it would have seen.
Checkpoints are safetensors artifacts (model and AdamW state) written atomically.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from kernelkit.io import load_artifact, load_training_state, save_artifact, training_state_tensors
from kernelkit.utils import progress, seed_everything
from kernelkit.validation import check_int_in_range
from psm.baselines import CausalTransformerLM, DiagonalLinearRNNLM
from psm.tasks import GROUPS, IGNORE_INDEX, mqar_batch, permutation_group, state_tracking_batch
from psm.transformer_psm import AGGREGATORS, INFERENCES, TransformerPSM, TransformerPSMConfig

__all__ = ["CHECKPOINT_KIND", "TrainConfig", "build_model", "evaluate", "load_checkpoint", "train"]

CHECKPOINT_KIND = "psm-train-checkpoint"
TASKS = (*GROUPS, "MQAR")
MODELS = ("psm", "transformer", "rnn")


@dataclass
class TrainConfig:
    """A training run: task, model, lengths and optimiser (paper values where it states them)."""

    task: str = field(default="S3", metadata={"help": f"one of {TASKS}"})
    model: str = field(default="psm", metadata={"help": f"one of {MODELS}"})
    d_model: int = field(default=64, metadata={"help": "model width"})
    n_heads: int = field(default=4, metadata={"help": "attention heads (psm, transformer)"})
    n_layers: int = field(
        default=2, metadata={"help": "layers of the transformer / linear RNN baselines"}
    )
    aggregator: str = field(
        default="transformer", metadata={"help": f"PSM aggregator: one of {AGGREGATORS}"}
    )
    inference: str = field(
        default="transformer",
        metadata={"help": f"PSM inference module: one of {INFERENCES} (aggregator: c=1 only)"},
    )
    aggregator_layers: int = field(default=1, metadata={"help": "PSM aggregator blocks"})
    inference_layers: int = field(default=1, metadata={"help": "PSM inference blocks"})
    chunk_size: int = field(
        default=1, metadata={"help": "PSM chunk size c (the paper uses 1 for state tracking)"}
    )
    min_train_length: int = field(
        default=4, metadata={"help": "shortest training sequence (paper: 4)"}
    )
    train_length: int = field(
        default=18, metadata={"help": "longest training sequence (paper: 18)"}
    )
    steps: int = field(default=1000, metadata={"help": "optimiser steps"})
    batch_size: int = field(default=64, metadata={"help": "sequences per step"})
    lr: float = field(default=1e-3, metadata={"help": "AdamW learning rate"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay (paper: 0.01)"})
    seed: int = field(default=0, metadata={"help": "seed for initialisation and data"})
    checkpoint_every: int = field(
        default=200, metadata={"help": "steps between checkpoints (0: only at the end)"}
    )
    num_kv_pairs: int = field(default=8, metadata={"help": "MQAR key-value pairs"})
    vocab_size: int = field(
        default=64, metadata={"help": "MQAR vocabulary (groups use their order)"}
    )
    batch_invariant: bool = field(
        default=False,
        metadata={"help": "PSM linears row by row (exact duality; slower); rounding only"},
    )

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {self.model!r}")
        if self.aggregator not in AGGREGATORS:
            raise ValueError(f"aggregator must be one of {AGGREGATORS}, got {self.aggregator!r}")
        if self.inference not in INFERENCES:
            raise ValueError(f"inference must be one of {INFERENCES}, got {self.inference!r}")
        check_int_in_range("min_train_length", self.min_train_length, 1)
        check_int_in_range("train_length", self.train_length, self.min_train_length)
        check_int_in_range("steps", self.steps, 0)
        check_int_in_range("batch_size", self.batch_size, 1)
        check_int_in_range("checkpoint_every", self.checkpoint_every, 0)
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")

    @property
    def vocabulary(self) -> int:
        return self.vocab_size if self.task == "MQAR" else permutation_group(self.task).order


def build_model(config: TrainConfig) -> nn.Module:
    """The model named by ``config.model``, sized by ``config``."""
    vocab = config.vocabulary
    if config.model == "psm":
        return TransformerPSM(
            TransformerPSMConfig(
                vocab_size=vocab,
                d_model=config.d_model,
                n_heads=config.n_heads,
                aggregator=config.aggregator,
                inference=config.inference,
                aggregator_layers=config.aggregator_layers,
                inference_layers=config.inference_layers,
                chunk_size=config.chunk_size,
                batch_invariant=config.batch_invariant,
            )
        )
    if config.model == "transformer":
        return CausalTransformerLM(vocab, config.d_model, config.n_heads, config.n_layers)
    return DiagonalLinearRNNLM(vocab, config.d_model, config.n_layers)


def task_batch(
    config: TrainConfig, batch_size: int, length: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    if config.task == "MQAR":
        return mqar_batch(batch_size, length, config.num_kv_pairs, config.vocab_size, generator)
    return state_tracking_batch(config.task, batch_size, length, generator)


def _step_generator(seed: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def _loss(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    logits = model(inputs)
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX)


def _save(
    directory: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    config: TrainConfig,
    step: int,
    history: list,
) -> None:
    save_artifact(
        directory,
        training_state_tensors(model, optimizer),
        {"train_config": asdict(config), "step": step, "history": history},
        kind=CHECKPOINT_KIND,
    )


def _read_checkpoint(
    directory: str | os.PathLike,
) -> tuple[dict[str, torch.Tensor], TrainConfig, dict[str, Any]]:
    tensors, meta = load_artifact(directory, kind=CHECKPOINT_KIND)
    return tensors, TrainConfig(**meta["train_config"]), meta


def load_checkpoint(directory: str | os.PathLike) -> tuple[nn.Module, TrainConfig, dict[str, Any]]:
    """``(model, config, meta)`` from a checkpoint written by :func:`train`.

    ``meta`` holds ``step`` and ``history``; :func:`train` resumes the optimiser state itself.
    """
    tensors, config, meta = _read_checkpoint(directory)
    model = build_model(config)
    load_training_state(tensors, model)
    return model, config, meta


@dataclass
class TrainResult:
    model: nn.Module
    config: TrainConfig
    history: list[dict[str, float]] = dataclasses.field(default_factory=list)
    resumed_from: int = 0


def train(
    config: TrainConfig,
    out_dir: str | os.PathLike | None = None,
    *,
    resume: bool = True,
    show_progress: bool | None = None,
) -> TrainResult:
    """Train ``config.model`` on ``config.task``; checkpoint to ``out_dir`` (if given).

    With ``resume`` and a checkpoint in ``out_dir`` whose config equals ``config`` (``steps``
    aside, so a finished run can be extended), training continues from its step. A checkpoint
    of a different run raises ``ValueError``.
    """
    seed_everything(config.seed)
    model = build_model(config)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    start, history = 0, []
    directory = Path(out_dir) if out_dir is not None else None
    if directory is not None and resume and (directory / "manifest.json").is_file():
        tensors, saved_config, meta = _read_checkpoint(directory)
        if dataclasses.replace(saved_config, steps=config.steps) != config:
            raise ValueError(
                f"out_dir {str(directory)!r} holds a checkpoint of a different run "
                f"({asdict(saved_config)}); use another directory or resume=False"
            )
        load_training_state(tensors, model, optimizer)
        start, history = meta["step"], meta["history"]
    model.train()
    bar = progress(
        range(start, config.steps),
        desc=f"train {config.model} on {config.task}",
        total=config.steps - start,
        disable=None if show_progress is None else not show_progress,
    )
    for step in bar:
        generator = _step_generator(config.seed, step)
        length = int(
            torch.randint(
                config.min_train_length, config.train_length + 1, (1,), generator=generator
            )
        )
        inputs, targets = task_batch(config, config.batch_size, length, generator)
        loss = _loss(model, inputs, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        history.append({"step": step + 1, "loss": loss.item()})
        done = step + 1
        if directory is not None and (
            done == config.steps
            or (config.checkpoint_every and done % config.checkpoint_every == 0)
        ):
            _save(directory, model, optimizer, config, done, history)
    model.eval()
    return TrainResult(model, config, history, start)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    config: TrainConfig,
    lengths: list[int],
    *,
    samples: int = 256,
    seed: int = 12345,
    batch_size: int = 64,
) -> list[dict[str, float]]:
    """Accuracy by sequence length: over every scored position and at the last position."""
    model.eval()
    rows = []
    for length in lengths:
        check_int_in_range("length", length, 1)
        generator = torch.Generator().manual_seed(seed + length)
        correct = total = last_correct = last_total = 0
        for begin in range(0, samples, batch_size):
            inputs, targets = task_batch(
                config, min(batch_size, samples - begin), length, generator
            )
            predictions = model(inputs).argmax(-1)
            scored = targets != IGNORE_INDEX
            correct += int(((predictions == targets) & scored).sum())
            total += int(scored.sum())
            last_correct += int(((predictions[:, -1] == targets[:, -1]) & scored[:, -1]).sum())
            last_total += int(scored[:, -1].sum())
        rows.append(
            {
                "length": length,
                "accuracy": correct / max(total, 1),
                "last_position_accuracy": last_correct / last_total if last_total else float("nan"),
            }
        )
    return rows
