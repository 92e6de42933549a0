"""Training a ReasonCache with the backbone frozen, on the transformers ``Trainer``.

The loss is next-token cross-entropy on demonstrations (or reasoning traces), optionally mixed
with distillation from an in-context teacher: the same frozen model with the demonstrations in
its context. Because a cache built from the real KV of a text is exactly that text in context
(see the tests), the teacher is run as ``forward_with_cache(model, teacher_cache, ...)``, which
handles padding and positions the same way as the student.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import Trainer, TrainerCallback, TrainingArguments

from kernelkit.io import load_artifact, save_artifact
from kernelkit.utils import progress_enabled, seed_everything
from reasoncache.cache import ReasonCache, ReasonCacheConfig
from reasoncache.initialize import cache_from_text, init_from_questions, init_from_text
from reasoncache.inject import forward_with_cache

__all__ = [
    "CacheTrainer",
    "CachedCausalLM",
    "TrainConfig",
    "as_token_ids",
    "distillation_loss",
    "pad_batch",
    "positions_from_mask",
    "run_training",
    "tokenize_examples",
    "train_cache",
]

CACHE_STATE_DIR = "cache_state"
#: A training example: text, {"prompt", "completion"}, or a tokenised {"input_ids", "labels"}.
Example = str | dict[str, Any]


@dataclass
class TrainConfig:
    """Optimisation settings (the paper's are unpublished; defaults follow the research note)."""

    output_dir: str = field(
        default="reasoncache-run", metadata={"help": "checkpoints and the final cache go here"}
    )
    learning_rate: float = field(
        default=1e-2,
        metadata={"help": "AdamW learning rate on the cache (Cartridges use 2e-2 on raw KV)"},
    )
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    warmup_ratio: float = field(
        default=0.05, metadata={"help": "fraction of steps with linear warm-up (cosine after)"}
    )
    num_epochs: float = field(default=3.0, metadata={"help": "passes over the examples"})
    max_steps: int = field(default=-1, metadata={"help": "stop after this many steps (-1: off)"})
    batch_size: int = field(default=8, metadata={"help": "examples per step and device"})
    distill_weight: float = field(
        default=0.0,
        metadata={"help": "weight of the top-k KL to the in-context teacher (0 = NLL only)"},
    )
    distill_top_k: int = field(
        default=20, metadata={"help": "teacher logits kept for distillation (Cartridges: 20)"}
    )
    bf16: bool = field(default=False, metadata={"help": "bf16 autocast (masters stay fp32)"})
    gradient_checkpointing: bool = field(
        default=False,
        metadata={
            "help": "recompute activations in backward (the prefix is then concatenated inside "
            "attention; sdpa or eager attention)"
        },
    )
    save_steps: int = field(default=200, metadata={"help": "checkpoint every this many steps"})
    logging_steps: int = field(default=50, metadata={"help": "log every this many steps"})
    seed: int = field(default=0, metadata={"help": "random seed"})

    def __post_init__(self) -> None:
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if not 0.0 <= self.distill_weight <= 1.0:
            raise ValueError(f"distill_weight must be in [0, 1], got {self.distill_weight}")
        if self.distill_top_k < 1:
            raise ValueError(f"distill_top_k must be >= 1, got {self.distill_top_k}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")


def tokenize_examples(tokenizer: Any, examples: Sequence[Example]) -> list[dict[str, list[int]]]:
    """Each example is a string (loss on every token), {"prompt", "completion"} (loss on the
    completion only) or an already tokenised row {"input_ids", "labels"} (``labels`` -100 where
    no loss is taken; ``tokenizer`` may then be None). Returns ``input_ids`` and ``labels``."""
    rows = []
    for index, example in enumerate(examples):
        if isinstance(example, dict) and "input_ids" in example:
            rows.append(_checked_row(example, index))
            continue
        if tokenizer is None:
            raise ValueError(
                f"examples[{index}] is text, so a tokenizer is needed; got tokenizer=None"
            )
        if isinstance(example, str):
            prompt, completion = "", example
        elif isinstance(example, dict) and "completion" in example:
            prompt, completion = example.get("prompt", ""), example["completion"]
        else:
            raise ValueError(
                f"examples[{index}] must be a string, a dict with 'completion' (and optional "
                f"'prompt') or a dict with 'input_ids' and 'labels', got {example!r}"
            )
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"] if prompt else []
        completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
        if not completion_ids:
            raise ValueError(f"examples[{index}] has an empty completion")
        rows.append(
            {
                "input_ids": prompt_ids + completion_ids,
                "labels": [-100] * len(prompt_ids) + completion_ids,
            }
        )
    return rows


def _token_list(values: Any, where: str) -> list[int]:
    """Ints as they are: ``int()`` would truncate a float id and accept a bool."""
    if isinstance(values, torch.Tensor):
        values = values.tolist()
    if not isinstance(values, Sequence) or isinstance(values, str | bytes):
        raise TypeError(f"{where} must be a sequence of int token ids, got {values!r}")
    tokens = list(values)
    for token in tokens:
        if isinstance(token, bool) or not isinstance(token, int):
            raise TypeError(f"{where} must hold int token ids, got {token!r}")
    return tokens


def _checked_row(example: dict[str, Any], index: int) -> dict[str, list[int]]:
    ids = _token_list(example["input_ids"], f"examples[{index}] input_ids")
    labels = _token_list(example.get("labels", ids), f"examples[{index}] labels")
    if not ids or len(labels) != len(ids):
        raise ValueError(
            f"examples[{index}] must have non-empty input_ids and labels of the same length, got "
            f"{len(ids)} input_ids and {len(labels)} labels"
        )
    if all(label == -100 for label in labels):
        raise ValueError(f"examples[{index}] has no label other than -100 (nothing to score)")
    return {"input_ids": ids, "labels": labels}


def positions_from_mask(attention_mask: torch.Tensor, offset: int = 0) -> torch.Tensor:
    """Position ids ``offset + cumsum(mask) - 1`` (0 on padding): left padding then changes
    nothing, as in ``generate()``."""
    positions = attention_mask.long().cumsum(-1) - 1 + offset
    return positions.masked_fill(attention_mask == 0, 0)


def pad_batch(rows: Sequence[dict[str, list[int]]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Left-pad ``input_ids``/``labels`` and build the mask (left padding, as generation wants)."""
    length = max(len(r["input_ids"]) for r in rows)
    ids, labels, mask = [], [], []
    for row in rows:
        pad = length - len(row["input_ids"])
        ids.append([pad_token_id] * pad + row["input_ids"])
        labels.append([-100] * pad + row["labels"])
        mask.append([0] * pad + [1] * len(row["input_ids"]))
    return {
        "input_ids": torch.tensor(ids),
        "labels": torch.tensor(labels),
        "attention_mask": torch.tensor(mask),
    }


def distillation_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, top_k: int
) -> torch.Tensor:
    """KL from the teacher's top-k distribution to the student, at positions that predict a label.

    ``sum_{i in topk} p_T(i) (log p_T(i) - log p_S(i))`` with ``p_T`` the teacher's softmax
    renormalised over its top k logits and ``p_S`` the student's full softmax; averaged over the
    predicting positions. It is >= 0, and 0 when the student puts the teacher's renormalised
    probabilities on the top k (with ``top_k`` = vocabulary size it is the exact KL). Its gradient
    is that of the Cartridges soft cross-entropy (they differ by the teacher's entropy).
    """
    predicting = labels[:, 1:] != -100
    student = F.log_softmax(student_logits[:, :-1][predicting].float(), dim=-1)
    teacher = teacher_logits[:, :-1][predicting].float()
    top_values, top_index = teacher.topk(min(top_k, teacher.shape[-1]), dim=-1)
    teacher_log_probs = F.log_softmax(top_values, dim=-1)
    kl = teacher_log_probs.exp() * (teacher_log_probs - student.gather(-1, top_index))
    return kl.sum(-1).mean()


class CachedCausalLM(nn.Module):
    """A frozen causal LM plus a trainable cache, as one module the ``Trainer`` can drive."""

    def __init__(
        self, model: Any, cache: ReasonCache, teacher_cache: ReasonCache | None = None
    ) -> None:
        super().__init__()
        self.backbone = model
        self.cache = cache
        self.teacher_cache = teacher_cache
        model.requires_grad_(False)
        if teacher_cache is not None:
            teacher_cache.requires_grad_(False)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        outputs = forward_with_cache(
            self.backbone, self.cache, input_ids, attention_mask, labels=labels
        )
        return {"loss": outputs.loss, "logits": outputs.logits}

    @torch.no_grad()
    def teacher_logits(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None
    ) -> torch.Tensor:
        if self.teacher_cache is None:
            raise RuntimeError("distillation needs a teacher_cache (the demonstrations' KV)")
        return forward_with_cache(
            self.backbone, self.teacher_cache, input_ids, attention_mask
        ).logits

    def save_trainable(self, output_dir: str | os.PathLike) -> None:
        """The cache as an artifact (``from_pretrained``-loadable) plus its raw training state."""
        self.cache.save_pretrained(output_dir)
        state = {k: v.detach().cpu().contiguous() for k, v in self.cache.state_dict().items()}
        save_artifact(Path(output_dir) / CACHE_STATE_DIR, state, {}, kind="cache_state")

    def load_trainable(self, checkpoint_dir: str | os.PathLike) -> None:
        path = Path(checkpoint_dir) / CACHE_STATE_DIR
        if not path.is_dir():
            raise FileNotFoundError(f"checkpoint {str(checkpoint_dir)!r} has no {path.name}/")
        state, _ = load_artifact(path, kind="cache_state")
        self.cache.load_state_dict(state)


class CacheTrainer(Trainer):
    """``Trainer`` that optimises and checkpoints only the trainable part of a wrapped model.

    The model is a :class:`CachedCausalLM` (the cache) or a ``reasoncache.baselines.LoraCausalLM``
    (a LoRA adapter): anything with ``forward(input_ids, attention_mask, labels) -> {"loss",
    "logits"}``, ``save_trainable(dir)`` and ``load_trainable(dir)``. With ``distill_weight > 0``
    the loss is ``(1 - w) * NLL + w * distillation_loss(student, teacher)``; the mean NLL and KL
    since the last log are logged as ``nll`` and ``distill_kl``.
    """

    def __init__(self, *args: Any, distill_weight: float = 0.0, distill_top_k: int = 20, **kwargs):
        super().__init__(*args, **kwargs)
        self.distill_weight = distill_weight
        self.distill_top_k = distill_top_k
        self._loss_terms: dict[str, list[float]] = {"nll": [], "distill_kl": []}

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(**inputs)
        loss = outputs["loss"]
        self._loss_terms["nll"].append(loss.detach().item())
        if self.distill_weight > 0:
            unwrapped = self.accelerator.unwrap_model(model)
            teacher = unwrapped.teacher_logits(inputs["input_ids"], inputs.get("attention_mask"))
            kl = distillation_loss(outputs["logits"], teacher, inputs["labels"], self.distill_top_k)
            self._loss_terms["distill_kl"].append(kl.detach().item())
            loss = (1.0 - self.distill_weight) * loss + self.distill_weight * kl
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        if "loss" in logs:
            for name, values in self._loss_terms.items():
                if values:
                    logs[name] = sum(values) / len(values)
                    values.clear()
        super().log(logs, *args, **kwargs)

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        # transformers 5 calls _save on every rank and leaves the main-process check to it.
        if not self.args.should_save:
            return
        output_dir = output_dir or self.args.output_dir
        os.makedirs(output_dir, exist_ok=True)
        self.accelerator.unwrap_model(self.model).save_trainable(output_dir)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: nn.Module | None = None):
        self.accelerator.unwrap_model(model or self.model).load_trainable(resume_from_checkpoint)


def run_training(
    wrapped: nn.Module,
    rows: Sequence[dict[str, list[int]]],
    train_config: TrainConfig,
    *,
    pad_token_id: int = 0,
    resume_from_checkpoint: str | bool | None = None,
    callbacks: Sequence[TrainerCallback] | None = None,
) -> CacheTrainer:
    """The one training path for caches and baselines: left-padded batches, AdamW, cosine with
    warm-up, checkpoints of the trainable part; returns the finished trainer."""
    args = TrainingArguments(
        output_dir=train_config.output_dir,
        learning_rate=train_config.learning_rate,
        weight_decay=train_config.weight_decay,
        warmup_steps=train_config.warmup_ratio,
        lr_scheduler_type="cosine",
        num_train_epochs=train_config.num_epochs,
        max_steps=train_config.max_steps,
        per_device_train_batch_size=train_config.batch_size,
        bf16=train_config.bf16,
        save_steps=train_config.save_steps,
        logging_steps=train_config.logging_steps,
        seed=train_config.seed,
        report_to="none",
        remove_unused_columns=False,
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=not progress_enabled(),
    )
    trainer = CacheTrainer(
        model=wrapped,
        args=args,
        train_dataset=list(rows),
        data_collator=lambda batch: pad_batch(batch, pad_token_id),
        callbacks=list(callbacks or []),
        distill_weight=train_config.distill_weight,
        distill_top_k=train_config.distill_top_k,
    )
    trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    trainer.save_model(train_config.output_dir)
    return trainer


def enable_gradient_checkpointing(model: Any) -> None:
    """Turn on non-reentrant activation checkpointing (named ``activation_checkpointing_*``
    from transformers 5 on, ``gradient_checkpointing_*`` before)."""
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable({"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def _pad_token_id(tokenizer: Any) -> int:
    pad = getattr(tokenizer, "pad_token_id", None)
    return pad if pad is not None else 0


def as_token_ids(tokenizer: Any, text_or_ids: str | Sequence[int] | torch.Tensor) -> torch.Tensor:
    """``[1, n]`` token ids of a text (no special tokens) or of ids given directly."""
    if isinstance(text_or_ids, str):
        if tokenizer is None:
            raise ValueError("a text was given but tokenizer is None; pass token ids instead")
        return torch.tensor([tokenizer(text_or_ids, add_special_tokens=False)["input_ids"]])
    ids = torch.as_tensor(text_or_ids, dtype=torch.long)
    ids = ids.unsqueeze(0) if ids.dim() == 1 else ids
    if ids.dim() != 2 or ids.shape[0] != 1 or ids.shape[1] == 0:
        raise ValueError(f"token ids must be one non-empty sequence, got shape {tuple(ids.shape)}")
    return ids


def train_cache(
    model: Any,
    tokenizer: Any,
    examples: Sequence[Example],
    cache_config: ReasonCacheConfig | None = None,
    train_config: TrainConfig | None = None,
    *,
    demonstrations: str | Sequence[int] | torch.Tensor | None = None,
    questions: Sequence[str] | None = None,
    init_cache: ReasonCache | None = None,
    resume_from_checkpoint: str | bool | None = None,
    callbacks: Sequence[TrainerCallback] | None = None,
) -> ReasonCache:
    """Train a cache on ``examples`` with ``model`` frozen; returns the trained cache.

    ``demonstrations`` (a text, or token ids) is needed for ``init="text"`` and for distillation
    (the teacher has it in context); ``questions`` for ``init="questions"``. ``tokenizer`` may be
    None when examples are tokenised rows and demonstrations are ids. ``callbacks`` are
    transformers ``TrainerCallback``s (e.g. to read the logged ``loss``/``nll``/``distill_kl``).
    """
    cache_config = cache_config or ReasonCacheConfig()
    train_config = train_config or TrainConfig()
    if len(examples) == 0:
        raise ValueError("examples must hold at least one training example, got none")

    seed_everything(train_config.seed)
    if train_config.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    cache = init_cache if init_cache is not None else ReasonCache(model, cache_config)
    if init_cache is None and cache_config.init == "text":
        if demonstrations is None:
            raise ValueError("init='text' needs the demonstrations text")
        init_from_text(cache, model, as_token_ids(tokenizer, demonstrations))
    elif init_cache is None and cache_config.init == "questions":
        if not questions:
            raise ValueError("init='questions' needs a non-empty list of questions")
        init_from_questions(cache, model, [as_token_ids(tokenizer, q)[0] for q in questions])
    if cache_config.reparam_hidden > 0 and cache.reparam is None:
        raise ValueError("init_cache has no reparameterisation but reparam_hidden > 0")

    teacher = None
    if train_config.distill_weight > 0:
        if demonstrations is None:
            raise ValueError("distill_weight > 0 needs the demonstrations text for the teacher")
        teacher = cache_from_text(model, as_token_ids(tokenizer, demonstrations))

    run_training(
        CachedCausalLM(model, cache, teacher),
        tokenize_examples(tokenizer, examples),
        train_config,
        pad_token_id=_pad_token_id(tokenizer),
        resume_from_checkpoint=resume_from_checkpoint,
        callbacks=callbacks,
    )
    return cache
