"""The head inside sentence-transformers, and end-to-end training with the backbone.

- :func:`to_sparse_encoder` appends a trained (tied) head to a ``SentenceTransformer`` backbone
  as sentence-transformers' own ``SparseAutoEncoder`` module, giving a ``SparseEncoder`` whose
  ``encode`` returns the same k-sparse codes as :meth:`SparseAutoencoder.encode` on the
  backbone's embeddings, and that saves and loads with sentence-transformers.
- :func:`finetune` trains backbone and head together on texts (full fine-tuning, or LoRA via
  peft on the transformer), with the same loss, k-annealing and dead-latent bookkeeping as
  :func:`csrv2.train`. It is a plain PyTorch loop over mini-batches, not the
  sentence-transformers trainer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch

from csrv2.data import load_backbone
from csrv2.losses import csr_loss
from csrv2.model import SparseAutoencoder
from csrv2.schedule import annealed_k
from csrv2.training import TrainConfig
from kernelkit.utils import pick_device, progress, seed_everything
from kernelkit.validation import check_int_in_range

__all__ = ["FinetuneConfig", "finetune", "to_sparse_encoder"]


def _embedding_dimension(model) -> int:
    # Renamed in sentence-transformers 6; the old name still exists there but warns.
    getter = (
        getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    )
    return int(getter())


def to_sparse_encoder(head: SparseAutoencoder, backbone=None):
    """A sentence-transformers ``SparseEncoder``: the backbone's modules followed by ``head``.

    ``backbone`` is a ``SentenceTransformer``, a model path, or ``None`` for the bundled MiniLM.
    Raises ``ValueError`` for an untied head (sentence-transformers' module is tied) or a
    backbone whose embedding width differs from the head's ``d_in``.
    """
    from sentence_transformers import SparseEncoder

    try:  # sentence-transformers >= 6 moved the modules
        from sentence_transformers.sparse_encoder.modules import (
            SparseAutoEncoder as STSparseAutoEncoder,
        )
    except ImportError:
        from sentence_transformers.sparse_encoder.models import (
            SparseAutoEncoder as STSparseAutoEncoder,
        )

    if not head.tied:
        raise ValueError("head must be tied: sentence-transformers' SparseAutoEncoder ties W_dec")
    model = load_backbone(backbone)
    width = _embedding_dimension(model)
    if width != head.d_in:
        raise ValueError(
            f"backbone embeddings have dimension {width}, but the head expects d_in={head.d_in}"
        )
    module = STSparseAutoEncoder(input_dim=head.d_in, hidden_dim=head.hidden, k=head.k, k_aux=0)
    with torch.no_grad():
        module.pre_bias.copy_(head.pre_bias)
        module.encoder.weight.copy_(head.encoder.weight)
        module.latent_bias.copy_(head.latent_bias)
    return SparseEncoder(modules=[*model, module], device=str(model.device))


@dataclass
class FinetuneConfig:
    """How the backbone is trained together with the head."""

    mode: Literal["lora", "full"] = field(
        default="lora", metadata={"help": "'lora' (peft adapters) or 'full' fine-tuning"}
    )
    lora_r: int = field(default=8, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA alpha"})
    lora_dropout: float = field(default=0.1, metadata={"help": "LoRA dropout"})
    backbone_lr: float = field(default=1e-5, metadata={"help": "learning rate of the backbone"})
    max_seq_length: int = field(default=128, metadata={"help": "token limit per text"})

    def __post_init__(self) -> None:
        if self.mode not in ("lora", "full"):
            raise ValueError(f"mode must be 'lora' or 'full', got {self.mode!r}")
        check_int_in_range("lora_r", self.lora_r, 1)
        check_int_in_range("max_seq_length", self.max_seq_length, 1)


def _wrap_lora(model, config: FinetuneConfig) -> None:
    from peft import LoraConfig, get_peft_model

    transformer = model[0]
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules="all-linear",
    )
    transformer.model = get_peft_model(transformer.model, lora)


def finetune(
    texts: list[str],
    labels: torch.Tensor | None,
    config: TrainConfig | None = None,
    finetune_config: FinetuneConfig | None = None,
    backbone=None,
    *,
    show_progress: bool = True,
):
    """Train backbone and head end to end on ``texts``; returns ``(backbone, head, history)``.

    The head starts from scratch (``b_pre`` at the mean of the initial embeddings when
    ``config.pre_bias_init == 'mean'``). Raises like :func:`csrv2.train` for bad labels.
    """
    config = config or TrainConfig()
    finetune_config = finetune_config or FinetuneConfig()
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise ValueError("texts must be a non-empty list of str")
    if labels is not None and labels.shape != (len(texts),):
        raise ValueError(f"labels must have shape ({len(texts)},), got {tuple(labels.shape)}")
    if config.contrastive == "supervised" and labels is None:
        raise ValueError("the supervised contrastive loss needs labels, got labels=None")
    device = pick_device(config.device)
    seed_everything(config.seed)
    model = load_backbone(backbone, device=str(device))
    model.max_seq_length = finetune_config.max_seq_length
    d_in = _embedding_dimension(model)
    hidden = config.hidden_for(d_in)
    head = SparseAutoencoder(d_in, hidden, config.k, tied=config.tied)
    if config.pre_bias_init == "mean":
        with torch.no_grad():
            head.init_pre_bias_(model.encode(texts, convert_to_tensor=True).float().cpu())
    head.to(device)
    if finetune_config.mode == "lora":
        _wrap_lora(model, finetune_config)
    optimizer = torch.optim.Adam(
        [
            {
                "params": [p for p in model.parameters() if p.requires_grad],
                "lr": finetune_config.backbone_lr,
            },
            {"params": head.parameters(), "lr": config.lr},
        ],
        eps=config.adam_eps,
        weight_decay=config.weight_decay,
    )
    loss_config = config.loss_config()
    n = len(texts)
    steps_per_epoch = math.ceil(n / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    model.train()
    head.train()
    history = []
    for step in progress(range(total_steps), desc="csrv2 finetune", disable=not show_progress):
        epoch, position = divmod(step, steps_per_epoch)
        if position == 0:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(config.seed + epoch))
        batch = order[position * config.batch_size : (position + 1) * config.batch_size].tolist()
        features = model.tokenize([texts[i] for i in batch])
        features = {
            name: value.to(device) if isinstance(value, torch.Tensor) else value
            for name, value in features.items()
        }
        embeddings = model(features)["sentence_embedding"]
        k = (
            annealed_k(step, total_steps, config.k, hidden, config.k_init, config.decay_fraction)
            if config.anneal
            else config.k
        )
        batch_labels = labels[batch].to(device) if labels is not None else None
        terms = csr_loss(head, embeddings, k, loss_config, batch_labels)
        optimizer.zero_grad(set_to_none=True)
        terms.total.backward()
        optimizer.step()
        history.append({"step": step, "k": k, "loss": float(terms.total.detach())})
    model.eval()
    head.eval()
    if finetune_config.mode == "lora":
        model[0].model = model[0].model.merge_and_unload()
    return model, head, history
