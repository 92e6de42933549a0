"""End-to-end training of backbone + sparse head on the sentence-transformers trainer.

The model is a sentence-transformers ``SparseEncoder``: the backbone's modules followed by
sentence-transformers' own ``SparseAutoEncoder`` module holding the CSR / CSRv2 head (same
architecture: ``ReLU(TopK(W_enc (x - b_pre) + b_lat))``, tied decoder), so a trained model saves,
loads and encodes with plain ``SparseEncoder(path)``. Training runs through
``SparseEncoderTrainer`` (a ``transformers.Trainer``), so it works under ``accelerate launch`` /
``torchrun``, writes ``checkpoint-N`` folders and resumes from them.

Two stages (:class:`FinetuneConfig`, ``two_stage=True``):

1. *Head on frozen embeddings* ("CSRv2-linear"): the texts are embedded once with the frozen
   backbone and the head is trained on them with :func:`csrv2.train` (k-annealing, AuxK,
   contrastive term), which has its own atomic checkpoints under ``out_dir/stage1``.
2. *Backbone + head end to end*: the trainer optimises the backbone (all weights, or LoRA adapters
   via peft) and the head together with :class:`CSRv2Loss` at the target k; checkpoints go to
   ``out_dir/stage2/checkpoint-N``.

With ``two_stage=False`` stage 1 is skipped and stage 2 starts from a fresh head and anneals k
itself, per optimizer step: the loss reads the step from the trainer's state.

The paper's released code orders the work differently: it fine-tunes the backbone with LoRA and
MultipleNegativesRankingLoss first, re-extracts embeddings and then trains the head on them; the
joint stage here optimises the CSRv2 loss itself, through both parts.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from csrv2.backbone import embedding_dimension, st_head_module
from csrv2.data import load_backbone
from csrv2.losses import (
    auxk_from_decoder,
    balance_loss,
    self_contrastive_loss,
    supervised_contrastive_loss,
)
from csrv2.model import SparseAutoencoder, advance_silence_counter
from csrv2.schedule import annealed_k
from csrv2.training import TrainConfig, check_labels, train
from kernelkit.io import load_artifact, save_artifact
from kernelkit.topk import topk_codes
from kernelkit.utils import pick_device, seed_everything
from kernelkit.validation import check_int_in_range

__all__ = ["CSRv2Loss", "FinetuneConfig", "FinetuneResult", "finetune"]

CHECKPOINT_KIND = "csrv2.FinetuneCheckpoint"


@dataclass
class FinetuneConfig:
    """How the backbone is trained together with the head (stage 2); the head's own settings
    (k, hidden, annealing, loss weights, stage-1 epochs/batch/lr) come from :class:`TrainConfig`."""

    mode: Literal["lora", "full"] = field(
        default="lora", metadata={"help": "'lora' (peft adapters) or 'full' fine-tuning"}
    )
    two_stage: bool = field(
        default=True,
        metadata={
            "help": "train the head on frozen embeddings first (stage 1), then end to end; "
            "false = end to end only, annealing k there"
        },
    )
    epochs: int = field(default=10, metadata={"help": "end-to-end (stage 2) epochs"})
    batch_size: int = field(default=128, metadata={"help": "texts per device per step (stage 2)"})
    gradient_accumulation_steps: int = field(
        default=1, metadata={"help": "micro-batches per optimizer step (stage 2)"}
    )
    backbone_lr: float = field(default=1e-5, metadata={"help": "learning rate of the backbone"})
    head_lr: float | None = field(
        default=None, metadata={"help": "stage-2 learning rate of the head (default: config.lr)"}
    )
    lora_r: int = field(default=8, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA alpha"})
    lora_dropout: float = field(default=0.1, metadata={"help": "LoRA dropout"})
    max_seq_length: int = field(default=128, metadata={"help": "token limit per text"})
    save_steps: int = field(
        default=500, metadata={"help": "optimizer steps between trainer checkpoints"}
    )
    max_steps: int = field(
        default=-1, metadata={"help": "stop stage 2 after this many steps (-1: run all epochs)"}
    )

    def __post_init__(self) -> None:
        if self.mode not in ("lora", "full"):
            raise ValueError(f"mode must be 'lora' or 'full', got {self.mode!r}")
        for name in ("epochs", "batch_size", "gradient_accumulation_steps", "lora_r"):
            check_int_in_range(name, getattr(self, name), 1)
        check_int_in_range("max_seq_length", self.max_seq_length, 1)
        check_int_in_range("save_steps", self.save_steps, 1)
        if self.max_steps != -1:
            check_int_in_range("max_steps", self.max_steps, 1)
        if not self.backbone_lr > 0:
            raise ValueError(f"backbone_lr must be > 0, got {self.backbone_lr}")
        if self.head_lr is not None and not self.head_lr > 0:
            raise ValueError(f"head_lr must be > 0 or None, got {self.head_lr}")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")


class CSRv2Loss(nn.Module):
    """The CSR / CSRv2 loss over a ``SparseEncoder`` whose last module is the sparse head.

    ``L = MSE(x, x_hat_k) + w_4k MSE(x, x_hat_4k) + auxk_coef L_aux + cl_coef L_cl`` (plus
    ``balance_coef L_balance`` when that is set) at the current ``k``, where ``x`` is the backbone's embedding. Once :meth:`follow` has attached a
    trainer, ``k`` is read from the trainer's state at every call: :func:`csrv2.annealed_k` of its
    ``global_step`` (optimizer steps, restored on resume) and ``max_steps``, or the target k when
    annealing is off; ``k_history`` records ``(step, k)`` once per optimizer step.

    It calls the model as a whole (so a DDP-wrapped model syncs its gradients) with
    ``max_active_dims=k``; the head module then returns the pre-activations and the
    reconstructions at k and 4k and advances its dead-latent counters for those two top-k calls,
    and this loss makes the third (contrastive) call, as :func:`csrv2.csr_loss` does. The dataset
    has one text column and, for the supervised loss, a ``label`` column. The parts are returned
    as a dict, which the trainer sums and logs separately.
    """

    def __init__(self, model, config: TrainConfig) -> None:
        super().__init__()
        self.model = model
        self.config = config
        self.loss_config = config.loss_config()
        self.anneal = False
        self.k_history: list[tuple[int, int]] = []
        self._trainer = None

    def follow(self, trainer, anneal: bool) -> None:
        """Take k from ``trainer.state`` from now on (annealed when ``anneal``)."""
        self._trainer = trainer
        self.anneal = anneal

    def current_k(self) -> int:
        """The k of the current optimizer step (the target k outside training)."""
        config, head = self.config, self._head()
        if self._trainer is None or not head.training:
            return config.k
        state = self._trainer.state
        step = state.global_step
        k = (
            annealed_k(
                step,
                state.max_steps,
                config.k,
                head.hidden_dim,
                config.k_init,
                config.decay_fraction,
            )
            if self.anneal
            else config.k
        )
        if not self.k_history or self.k_history[-1][0] != step:
            self.k_history.append((step, k))
        return k

    def _head(self):
        model = getattr(self.model, "module", self.model)  # DDP keeps the SparseEncoder inside
        return model[-1]

    def forward(self, sentence_features, labels: torch.Tensor | None = None):
        if len(sentence_features) != 1:
            raise ValueError(
                f"CSRv2Loss takes datasets with one text column (plus 'label'), got "
                f"{len(sentence_features)} text columns"
            )
        config = self.loss_config
        if config.contrastive == "supervised" and labels is None:
            raise ValueError("contrastive='supervised' needs a 'label' column, got no labels")
        k = self.current_k()
        outputs = self.model(sentence_features[0], max_active_dims=k)
        head = self._head()
        x = outputs["sentence_embedding_backbone"]
        pre = outputs["sentence_embedding_encoded"]
        recon_k = outputs["decoded_embedding_k"]
        parts = {
            "reconstruction_k": F.mse_loss(recon_k, x),
            "reconstruction_4k": config.multi_topk_weight
            * F.mse_loss(outputs["decoded_embedding_4k"], x),
        }
        dead = head.stats_last_nonzero > config.dead_threshold
        parts["auxk"] = config.auxk_coef * auxk_from_decoder(
            head.encoder.weight, pre, (x - recon_k).detach(), dead, config.auxk
        )
        codes = topk_codes(pre, k)
        codes = codes.with_values(F.relu(codes.values))
        if config.balance_coef > 0:
            parts["balance"] = config.balance_coef * balance_loss(codes)
        if config.contrastive != "none":
            if head.training and torch.is_grad_enabled():
                # The public code draws the contrastive view with a third top-k call.
                advance_silence_counter(head.stats_last_nonzero, codes)
            if config.contrastive == "supervised":
                contrastive = supervised_contrastive_loss(codes, labels, config.temperature)
            else:
                contrastive = self_contrastive_loss(codes, config.temperature)
            parts["contrastive"] = config.cl_coef * contrastive
        return parts


@dataclass
class FinetuneResult:
    """The trained ``SparseEncoder`` (backbone + head), the head alone, and the training logs."""

    model: object
    head: SparseAutoencoder
    stage1_history: list[dict[str, float]]
    log_history: list[dict[str, float]]
    k_history: list[tuple[int, int]]


def _head_from_module(module, k: int) -> SparseAutoencoder:
    head = SparseAutoencoder(module.input_dim, module.hidden_dim, k)
    with torch.no_grad():
        head.pre_bias.copy_(module.pre_bias)
        head.encoder.weight.copy_(module.encoder.weight)
        head.latent_bias.copy_(module.latent_bias)
        head.calls_since_fired.copy_(module.stats_last_nonzero)
    return head.eval()


def _has_checkpoint(directory: Path) -> bool:
    return directory.is_dir() and any(
        path.is_dir() and re.fullmatch(r"checkpoint-\d+", path.name) for path in directory.iterdir()
    )


def finetune(
    texts: list[str],
    labels: torch.Tensor | None = None,
    config: TrainConfig | None = None,
    finetune_config: FinetuneConfig | None = None,
    backbone=None,
    out_dir: str | os.PathLike | None = None,
    *,
    show_progress: bool = True,
) -> FinetuneResult:
    """Train backbone and head on ``texts`` (with integer ``labels`` for CSRv2's supervised loss).

    ``backbone`` is a ``SentenceTransformer``, a model path, or ``None`` for the bundled MiniLM.
    With ``out_dir``: stage 1 checkpoints in ``out_dir/stage1``, trainer checkpoints in
    ``out_dir/stage2/checkpoint-N`` (a rerun with the same ``out_dir`` resumes from the last one),
    and the final model in ``out_dir/model`` (load it with ``SparseEncoder(path)``; LoRA adapters
    are merged into the backbone first). Raises ``ValueError`` for empty or
    non-string texts, bad labels, or a tied-decoder requirement (``config.tied`` must be True:
    sentence-transformers' head is tied).
    """
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from sentence_transformers import SparseEncoder
    from sentence_transformers.sparse_encoder import (
        SparseEncoderTrainer,
        SparseEncoderTrainingArguments,
    )

    config = config or TrainConfig()
    finetune_config = finetune_config or FinetuneConfig()
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise ValueError("texts must be a non-empty list of str")
    if labels is not None:
        labels = check_labels(labels, len(texts))
    elif config.contrastive == "supervised":
        raise ValueError(
            "the supervised contrastive loss needs labels; pass labels or use "
            "contrastive='self' or 'none'"
        )
    if not config.tied:
        raise ValueError(
            "config.tied must be True: sentence-transformers' SparseAutoEncoder is tied"
        )
    directory = Path(out_dir) if out_dir is not None else None
    seed_everything(config.seed)
    backbone_model = load_backbone(backbone, device=str(pick_device(config.device)))
    backbone_model.max_seq_length = finetune_config.max_seq_length
    d_in = embedding_dimension(backbone_model)
    hidden = config.hidden_for(d_in)

    trainer_dir = directory / "stage2" if directory is not None else None
    scratch = None
    if trainer_dir is None:
        scratch = tempfile.TemporaryDirectory(prefix="csrv2-finetune-")
        trainer_dir = Path(scratch.name)
    args = SparseEncoderTrainingArguments(
        output_dir=str(trainer_dir),
        num_train_epochs=finetune_config.epochs,
        max_steps=finetune_config.max_steps,
        per_device_train_batch_size=finetune_config.batch_size,
        gradient_accumulation_steps=finetune_config.gradient_accumulation_steps,
        learning_rate=finetune_config.backbone_lr,
        # The head is the last module: "model.<index>." in the loss's parameter names.
        learning_rate_mapping={
            rf"^model\.{len(backbone_model)}\.": finetune_config.head_lr or config.lr
        },
        optim="adamw_torch",
        adam_epsilon=config.adam_eps,
        weight_decay=config.weight_decay,
        lr_scheduler_type="constant",
        seed=config.seed,
        data_seed=config.seed,
        save_strategy="steps" if directory is not None else "no",
        save_steps=finetune_config.save_steps,
        logging_steps=1,
        report_to="none",
        disable_tqdm=not show_progress,
        # A CPU run that does not say so never joins the process group torchrun prepared.
        use_cpu=pick_device(config.device).type == "cpu",
    )

    stage1_history: list[dict[str, float]] = []
    if finetune_config.two_stage:
        # Every process would train the same head; the main one trains (and saves) it, the
        # others then read its result without writing anything.
        stage1_dir = directory / "stage1" if directory is not None else None
        with args.main_process_first(local=False, desc="csrv2 stage 1 (head on frozen embeddings)"):
            if stage1_dir is not None and args.process_index != 0:
                head = SparseAutoencoder.from_pretrained(stage1_dir / "model")
                stage1_history = json.loads(
                    (stage1_dir / "history.json").read_text(encoding="utf-8")
                )
            else:
                with torch.no_grad():
                    frozen = backbone_model.encode(
                        texts,
                        batch_size=finetune_config.batch_size,
                        convert_to_tensor=True,
                        show_progress_bar=show_progress,
                    )
                stage1 = train(
                    frozen.float().cpu(),
                    labels,
                    config,
                    out_dir=stage1_dir,
                    show_progress=show_progress,
                )
                head, stage1_history = stage1.model, stage1.history
        head = head.cpu()
    else:
        head = SparseAutoencoder(d_in, hidden, config.k)
        if config.pre_bias_init == "mean":
            with torch.no_grad():
                head.init_pre_bias_(
                    backbone_model.encode(texts, convert_to_tensor=True).float().cpu()
                )

    modules = [*backbone_model, st_head_module(head, dead_threshold=config.dead_threshold)]
    model = SparseEncoder(modules=modules, device=str(backbone_model.device))
    if finetune_config.mode == "lora":
        # peft wraps the transformer inside the first module; its base weights are frozen.
        transformer = model[0]
        transformer.model = get_peft_model(
            transformer.model,
            LoraConfig(
                r=finetune_config.lora_r,
                lora_alpha=finetune_config.lora_alpha,
                lora_dropout=finetune_config.lora_dropout,
                target_modules="all-linear",
            ),
        )

    class Trainer(SparseEncoderTrainer):
        """Checkpoints in safetensors, through kernelkit's artifact format."""

        def _save(self, output_dir: str | None = None, state_dict=None) -> None:
            # Checkpoint weights as one safetensors artifact of the whole pipeline's state, so
            # a LoRA-wrapped transformer (which sentence-transformers would save as an adapter
            # needing a newer peft to reload) and the head's dead-latent counters round-trip.
            # Optimizer, scheduler, RNG and step counters are the trainer's own files.
            # transformers 5 calls _save on every rank and leaves the main-process check to it.
            if not self.args.should_save:
                return
            state = {
                name: value.detach().cpu().clone().contiguous()
                for name, value in self.model.state_dict().items()
            }
            save_artifact(output_dir or self.args.output_dir, state, {}, kind=CHECKPOINT_KIND)

        def _load_from_checkpoint(self, checkpoint_path: str, model=None) -> None:
            tensors, _ = load_artifact(checkpoint_path, kind=CHECKPOINT_KIND)
            self.model.load_state_dict(tensors)

    loss = CSRv2Loss(model, config)
    columns = {"text": texts} if labels is None else {"text": texts, "label": labels.tolist()}
    trainer = Trainer(model=model, args=args, train_dataset=Dataset.from_dict(columns), loss=loss)
    # In two-stage training the head arrives at the target k; stage 2 holds it there.
    loss.follow(trainer, anneal=config.anneal and not finetune_config.two_stage)
    # The trainer's own resume: it reloads model, optimizer, scheduler, RNG and step counters
    # from the newest checkpoint-N and skips the batches already seen.
    trainer.train(resume_from_checkpoint=_has_checkpoint(trainer_dir) if directory else None)
    model.eval()
    if finetune_config.mode == "lora":
        model[0].model = model[0].model.merge_and_unload()
    if directory is not None and trainer.is_world_process_zero():
        model.save_pretrained(str(directory / "model"))
    if scratch is not None:
        scratch.cleanup()
    return FinetuneResult(
        model=model,
        head=_head_from_module(model[-1], config.k),
        stage1_history=stage1_history,
        log_history=list(trainer.state.log_history),
        k_history=loss.k_history,
    )
