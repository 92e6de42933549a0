"""Training a sparse head on precomputed embeddings (frozen backbone: "CSRv2-linear").

One optimizer step per mini-batch; ``k`` follows :func:`csrv2.schedule.annealed_k` when annealing
is on, and is the target ``k`` throughout otherwise (CSR). With ``out_dir`` set, a checkpoint
(head, optimizer moments, step, history) is written atomically every ``checkpoint_every`` steps
and at the end, and a later call with the same ``out_dir`` resumes from it: batch order is a pure
function of (seed, epoch), so a resumed run takes exactly the steps an uninterrupted one would.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from csrv2.losses import LossConfig, csr_loss
from csrv2.metrics import (
    dead_latent_fraction,
    effective_latents,
    expected_postings_per_query,
    posting_imbalance,
)
from csrv2.model import SparseAutoencoder, check_embeddings, check_labels
from csrv2.schedule import annealed_k
from kernelkit.io import (
    ArtifactError,
    atomic_write_text,
    load_artifact,
    load_training_state,
    save_artifact,
    training_state_tensors,
)
from kernelkit.topk import SparseCodes
from kernelkit.utils import pick_device, progress, seed_everything
from kernelkit.validation import check_int_in_range, check_ndim, check_tensor

__all__ = ["RECIPES", "TrainConfig", "TrainResult", "recipe", "train", "usage_report"]

CHECKPOINT_KIND = "csrv2.TrainCheckpoint"


@dataclass
class TrainConfig:
    """Everything that defines a head-training run; defaults are CSRv2's text setting."""

    k: int = field(default=2, metadata={"help": "target number of active latents per code"})
    hidden: int | None = field(
        default=None, metadata={"help": "number of latents (default: 4 x the embedding width)"}
    )
    tied: bool = field(default=True, metadata={"help": "tie the decoder to the encoder"})
    anneal: bool = field(
        default=True, metadata={"help": "anneal k from k_init down to k (CSRv2); off = CSR"}
    )
    k_init: int = field(
        default=64, metadata={"help": "start k of the annealing (capped at hidden / 4)"}
    )
    decay_fraction: float = field(
        default=0.7, metadata={"help": "fraction of the steps over which k decays, then held"}
    )
    pre_bias_init: Literal["zeros", "mean"] = field(
        default="zeros",
        metadata={"help": "initial b_pre: 'zeros' (public code) or the data 'mean'"},
    )
    epochs: int = field(default=10, metadata={"help": "passes over the embeddings"})
    batch_size: int = field(default=128, metadata={"help": "embeddings per optimizer step"})
    lr: float = field(default=1e-4, metadata={"help": "Adam learning rate"})
    adam_eps: float = field(default=6.25e-10, metadata={"help": "Adam epsilon"})
    weight_decay: float = field(default=0.0, metadata={"help": "Adam weight decay"})
    seed: int = field(default=1227, metadata={"help": "seed for init and batch order"})
    device: str | None = field(
        default=None, metadata={"help": "torch device (default: cuda if present, else cpu)"}
    )
    checkpoint_every: int = field(
        default=500, metadata={"help": "steps between checkpoints when an output dir is given"}
    )
    batch_by_label: bool = field(
        default=False,
        metadata={
            "help": "keep label groups together in the batch order, so that every anchor of the"
            " supervised contrastive term has its positives in its batch (needs labels)"
        },
    )
    multi_topk_weight: float = field(
        default=0.125, metadata={"help": "weight of the reconstruction at 4k (Multi-TopK)"}
    )
    auxk: int = field(default=1024, metadata={"help": "dead latents used by the AuxK loss"})
    auxk_coef: float = field(default=0.1, metadata={"help": "weight of the AuxK loss"})
    dead_threshold: int = field(
        default=30,
        metadata={"help": "top-k calls without firing after which AuxK treats a latent as dead"},
    )
    contrastive: Literal["supervised", "self", "none"] = field(
        default="supervised",
        metadata={"help": "'supervised' (CSRv2), 'self' (CSR in-batch InfoNCE) or 'none'"},
    )
    cl_coef: float = field(default=0.1, metadata={"help": "weight of the contrastive term"})
    temperature: float = field(default=0.2, metadata={"help": "contrastive temperature"})
    balance_coef: float = field(
        default=0.0,
        metadata={
            "help": "weight of the latent-usage balance term (csrv2.losses.balance_loss; shorter "
            "popular posting lists, faster inverted search); 0 = off, as in the paper"
        },
    )

    def __post_init__(self) -> None:
        check_int_in_range("k", self.k, 1)
        if self.hidden is not None:
            check_int_in_range("hidden", self.hidden, 1)
            if self.k > self.hidden:
                raise ValueError(f"k must be <= hidden ({self.hidden}), got {self.k}")
        check_int_in_range("k_init", self.k_init, 1)
        check_int_in_range("epochs", self.epochs, 1)
        check_int_in_range("batch_size", self.batch_size, 1)
        check_int_in_range("checkpoint_every", self.checkpoint_every, 1)
        if not 0.0 <= self.decay_fraction <= 1.0:
            raise ValueError(f"decay_fraction must be in [0, 1], got {self.decay_fraction}")
        if self.pre_bias_init not in ("zeros", "mean"):
            raise ValueError(f"pre_bias_init must be 'zeros' or 'mean', got {self.pre_bias_init!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        self.loss_config()  # validates the loss fields

    def loss_config(self) -> LossConfig:
        return LossConfig(
            multi_topk_weight=self.multi_topk_weight,
            auxk=self.auxk,
            auxk_coef=self.auxk_coef,
            dead_threshold=self.dead_threshold,
            contrastive=self.contrastive,
            cl_coef=self.cl_coef,
            temperature=self.temperature,
            balance_coef=self.balance_coef,
        )

    def hidden_for(self, d_in: int) -> int:
        hidden = self.hidden if self.hidden is not None else 4 * d_in
        if self.k > hidden:
            raise ValueError(f"k must be <= hidden ({hidden}), got {self.k}")
        return hidden

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


RECIPES = {
    "csr": {"anneal": False, "contrastive": "self"},
    "csr+anneal": {"anneal": True, "contrastive": "self"},
    "csrv2": {"anneal": True, "contrastive": "supervised"},
}


def recipe(name: str, **overrides) -> TrainConfig:
    """The config of a named recipe: ``"csr"`` (fixed k, self-supervised CL), ``"csr+anneal"``,
    or ``"csrv2"`` (annealing + supervised CL); ``overrides`` set any TrainConfig field."""
    if name not in RECIPES:
        raise ValueError(f"name must be one of the recipes {sorted(RECIPES)}, got {name!r}")
    return TrainConfig(**{**RECIPES[name], **overrides})


def epoch_order(n: int, labels: torch.Tensor | None, generator: torch.Generator) -> torch.Tensor:
    """The order in which one epoch visits the ``n`` examples.

    Without ``labels``, a random permutation. With them, the label groups in random order, each
    group's members contiguous and in random order, so that consecutive batches hold whole groups
    (a group is split only where a batch boundary falls inside it). With random batches, most
    anchors of a retrieval task (groups of two or three texts) have no positive in their batch.
    """
    shuffle = torch.randperm(n, generator=generator)
    if labels is None:
        return shuffle
    _, group = torch.unique(labels, return_inverse=True)
    group_rank = torch.randperm(int(group.max()) + 1, generator=generator)[group]
    # Sort by (rank of the example's group, a random tie-break within the group).
    tie_break = torch.empty(n, dtype=torch.long)
    tie_break[shuffle] = torch.arange(n)
    return torch.argsort(group_rank * n + tie_break)


@dataclass
class TrainResult:
    """The trained head, one dict of loss parts per step, the config, and ``usage``: latent usage
    of the head's codes at the target k over the training embeddings (:func:`usage_report`)."""

    model: SparseAutoencoder
    history: list[dict[str, float]]
    config: TrainConfig
    usage: dict[str, float] = field(default_factory=dict)


def usage_report(
    model: SparseAutoencoder, embeddings: torch.Tensor, k: int, batch_size: int = 4096
) -> dict[str, float]:
    """How the head's ``k``-sparse codes of ``embeddings`` use its latents: the dead fraction,
    the effective number of latents, the posting imbalance (``h sum p^2``, 1 = even) and the
    expected postings an inverted-index query touches in a database of these codes."""
    check_embeddings("embeddings", embeddings, model.d_in)
    if len(embeddings) == 0:
        raise ValueError("embeddings must hold at least one row, got shape (0, ...)")
    k = check_int_in_range("k", k, 1, model.hidden)
    batch_size = check_int_in_range("batch_size", batch_size, 1)
    device = next(model.parameters()).device
    with torch.no_grad():
        parts = [
            model.encode(embeddings[start : start + batch_size].to(device), k).to("cpu")
            for start in range(0, len(embeddings), batch_size)
        ]
    codes = SparseCodes.cat(parts)
    if not bool((codes.values != 0).any()):
        return {"dead_fraction": 1.0}
    return {
        "dead_fraction": dead_latent_fraction(codes),
        "effective_latents": effective_latents(codes),
        "posting_imbalance": posting_imbalance(codes),
        "expected_postings_per_query": expected_postings_per_query(codes),
    }


def _save_checkpoint(
    directory: Path,
    model: SparseAutoencoder,
    optimizer: torch.optim.Optimizer,
    step: int,
    history: list[dict[str, float]],
    config: TrainConfig,
) -> None:
    tensors = training_state_tensors(model, optimizer)
    meta = {"step": step, "model": model.config(), "train_config": config.to_dict()}
    save_artifact(directory / "checkpoint", tensors, meta, kind=CHECKPOINT_KIND)
    atomic_write_text(directory / "history.json", json.dumps(history))


def train(
    embeddings: torch.Tensor,
    labels: torch.Tensor | None = None,
    config: TrainConfig | None = None,
    out_dir: str | os.PathLike | None = None,
    *,
    show_progress: bool = True,
) -> TrainResult:
    """Train a sparse head on ``embeddings[N, d]`` (with integer ``labels[N]`` for CSRv2's
    supervised loss). With ``out_dir``, checkpoints go there, an existing checkpoint is resumed,
    and the final head is saved to ``out_dir/model``.

    Raises ``ValueError`` for NaN/inf embeddings, a label count that does not match, a missing
    ``labels`` with ``contrastive='supervised'``, or ``k > hidden``.
    """
    config = config or TrainConfig()
    check_tensor("embeddings", embeddings)
    check_ndim("embeddings", embeddings, 2)
    n, d_in = embeddings.shape
    check_embeddings("embeddings", embeddings, d_in)
    if n == 0 or d_in == 0:
        raise ValueError(
            f"embeddings must have at least one row and one feature, got shape {(n, d_in)}"
        )
    if labels is not None:
        labels = check_labels(labels, n)
    elif config.contrastive == "supervised":
        raise ValueError(
            "the supervised contrastive loss needs labels; pass labels or use a config with "
            "loss.contrastive='self' or 'none' (recipe 'csr' / 'csr+anneal')"
        )
    if config.batch_by_label and labels is None:
        raise ValueError("batch_by_label=True needs labels to group the batches by, got none")
    hidden = config.hidden_for(d_in)
    device = pick_device(config.device)
    seed_everything(config.seed)
    model = SparseAutoencoder(d_in, hidden, config.k, tied=config.tied)
    if config.pre_bias_init == "mean":
        model.init_pre_bias_(embeddings)
    model.to(device)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=config.lr, eps=config.adam_eps, weight_decay=config.weight_decay
    )
    steps_per_epoch = math.ceil(n / config.batch_size)
    total_steps = steps_per_epoch * config.epochs

    start_step, history = 0, []
    directory = Path(out_dir) if out_dir is not None else None
    if directory is not None and (directory / "checkpoint").is_dir():
        tensors, meta = load_artifact(directory / "checkpoint", kind=CHECKPOINT_KIND)
        if meta["model"] != model.config() or meta["train_config"] != config.to_dict():
            raise ArtifactError(
                f"{directory / 'checkpoint'} was written by a different configuration "
                f"({meta['train_config']}); use another out_dir or the same config"
            )
        load_training_state({k: v.to(device) for k, v in tensors.items()}, model, optimizer)
        start_step = int(meta["step"])
        history = json.loads((directory / "history.json").read_text(encoding="utf-8"))

    data = embeddings.to(device)
    targets = labels.to(device) if labels is not None else None
    loss_config = config.loss_config()
    model.train()
    bar = progress(
        range(start_step, total_steps),
        desc="csrv2 train",
        total=total_steps - start_step,
        disable=not show_progress,
    )
    order = None
    for step in bar:
        epoch, position = divmod(step, steps_per_epoch)
        if order is None or position == 0:
            order = epoch_order(
                n,
                labels if config.batch_by_label else None,
                torch.Generator().manual_seed(config.seed * 1_000_003 + epoch),
            ).to(device)
        batch = order[position * config.batch_size : (position + 1) * config.batch_size]
        k = (
            annealed_k(step, total_steps, config.k, hidden, config.k_init, config.decay_fraction)
            if config.anneal
            else config.k
        )
        terms = csr_loss(
            model, data[batch], k, loss_config, targets[batch] if targets is not None else None
        )
        optimizer.zero_grad(set_to_none=True)
        terms.total.backward()
        optimizer.step()
        history.append(
            {
                "step": step,
                "k": k,
                "loss": float(terms.total.detach()),
                "reconstruction_k": terms.reconstruction_k,
                "auxk": terms.auxk,
                "contrastive": terms.contrastive,
                "balance": terms.balance,
                "dead_fraction": terms.dead_fraction,
            }
        )
        if directory is not None and (step + 1) % config.checkpoint_every == 0:
            _save_checkpoint(directory, model, optimizer, step + 1, history, config)
    model.eval()
    if directory is not None:
        _save_checkpoint(directory, model, optimizer, total_steps, history, config)
        model.save_pretrained(directory / "model")
    usage = usage_report(model, embeddings, config.k)
    return TrainResult(model=model, history=history, config=config, usage=usage)
