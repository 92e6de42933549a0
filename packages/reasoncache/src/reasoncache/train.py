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
from transformers import Trainer, TrainingArguments

from kernelkit.io import load_artifact, save_artifact
from kernelkit.utils import seed_everything
from reasoncache.cache import ReasonCache, ReasonCacheConfig
from reasoncache.initialize import cache_from_text, init_from_questions, init_from_text
from reasoncache.inject import forward_with_cache, gradient_checkpointing_enabled

__all__ = [
    "CacheTrainer",
    "CachedCausalLM",
    "TrainConfig",
    "distillation_loss",
    "tokenize_examples",
    "train_cache",
]

CACHE_STATE_DIR = "cache_state"


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


def tokenize_examples(
    tokenizer: Any, examples: Sequence[dict[str, str] | str]
) -> list[dict[str, list[int]]]:
    """Each example is a string (loss on every token) or {"prompt", "completion"} (loss on the
    completion only). Returns ``input_ids`` and ``labels`` (-100 where no loss is taken)."""
    rows = []
    for index, example in enumerate(examples):
        if isinstance(example, str):
            prompt, completion = "", example
        elif isinstance(example, dict) and "completion" in example:
            prompt, completion = example.get("prompt", ""), example["completion"]
        else:
            raise ValueError(
                f"examples[{index}] must be a string or a dict with 'completion' (and optional "
                f"'prompt'), got {example!r}"
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
    """Soft cross-entropy to the teacher's top-k distribution at positions that predict a label.

    ``-sum_{i in topk} p_T(i) log p_S(i)`` with ``p_T`` renormalised over the top k; this is the
    KL up to the teacher's (constant) entropy.
    """
    predicting = labels[:, 1:] != -100
    student = F.log_softmax(student_logits[:, :-1][predicting].float(), dim=-1)
    teacher = teacher_logits[:, :-1][predicting].float()
    top_values, top_index = teacher.topk(min(top_k, teacher.shape[-1]), dim=-1)
    weights = F.softmax(top_values, dim=-1)
    return -(weights * student.gather(-1, top_index)).sum(-1).mean()


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


class CacheTrainer(Trainer):
    """``Trainer`` that optimises only the cache and checkpoints only the cache."""

    def __init__(self, *args: Any, distill_weight: float = 0.0, distill_top_k: int = 20, **kwargs):
        super().__init__(*args, **kwargs)
        self.distill_weight = distill_weight
        self.distill_top_k = distill_top_k

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(**inputs)
        loss = outputs["loss"]
        if self.distill_weight > 0:
            unwrapped = self.accelerator.unwrap_model(model)
            teacher = unwrapped.teacher_logits(inputs["input_ids"], inputs.get("attention_mask"))
            kl = distillation_loss(outputs["logits"], teacher, inputs["labels"], self.distill_top_k)
            loss = (1.0 - self.distill_weight) * loss + self.distill_weight * kl
        return (loss, outputs) if return_outputs else loss

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        output_dir = output_dir or self.args.output_dir
        os.makedirs(output_dir, exist_ok=True)
        cache = self.accelerator.unwrap_model(self.model).cache
        cache.save_pretrained(output_dir)
        state = {k: v.detach().cpu().contiguous() for k, v in cache.state_dict().items()}
        save_artifact(os.path.join(output_dir, CACHE_STATE_DIR), state, {}, kind="cache_state")

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: nn.Module | None = None):
        cache = self.accelerator.unwrap_model(model or self.model).cache
        path = Path(resume_from_checkpoint) / CACHE_STATE_DIR
        if not path.is_dir():
            raise FileNotFoundError(f"checkpoint {resume_from_checkpoint!r} has no {path.name}/")
        state, _ = load_artifact(path, kind="cache_state")
        cache.load_state_dict(state)


def train_cache(
    model: Any,
    tokenizer: Any,
    examples: Sequence[dict[str, str] | str],
    cache_config: ReasonCacheConfig | None = None,
    train_config: TrainConfig | None = None,
    *,
    demonstrations: str | None = None,
    questions: Sequence[str] | None = None,
    init_cache: ReasonCache | None = None,
    resume_from_checkpoint: str | bool | None = None,
) -> ReasonCache:
    """Train a cache on ``examples`` with ``model`` frozen; returns the trained cache.

    ``demonstrations`` (a text) is needed for ``init="text"`` and for distillation (the teacher
    has it in context); ``questions`` for ``init="questions"``.
    """
    cache_config = cache_config or ReasonCacheConfig()
    train_config = train_config or TrainConfig()
    if len(examples) == 0:
        raise ValueError("examples must hold at least one training example, got none")
    if gradient_checkpointing_enabled(model):
        raise RuntimeError(
            "gradient checkpointing is enabled on the model; disable it "
            "(model.gradient_checkpointing_disable()) to train a ReasonCache"
        )

    def ids_of(text: str) -> torch.Tensor:
        return torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"]])

    seed_everything(train_config.seed)
    cache = init_cache if init_cache is not None else ReasonCache(model, cache_config)
    if init_cache is None and cache_config.init == "text":
        if demonstrations is None:
            raise ValueError("init='text' needs the demonstrations text")
        init_from_text(cache, model, ids_of(demonstrations))
    elif init_cache is None and cache_config.init == "questions":
        if not questions:
            raise ValueError("init='questions' needs a non-empty list of questions")
        init_from_questions(cache, model, [ids_of(q)[0] for q in questions])
    if cache_config.reparam_hidden > 0 and cache.reparam is None:
        raise ValueError("init_cache has no reparameterisation but reparam_hidden > 0")

    teacher = None
    if train_config.distill_weight > 0:
        if demonstrations is None:
            raise ValueError("distill_weight > 0 needs the demonstrations text for the teacher")
        teacher = cache_from_text(model, ids_of(demonstrations))

    wrapped = CachedCausalLM(model, cache, teacher)
    rows = tokenize_examples(tokenizer, examples)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
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
        disable_tqdm=True,
    )
    trainer = CacheTrainer(
        model=wrapped,
        args=args,
        train_dataset=rows,
        data_collator=lambda batch: pad_batch(batch, pad_id),
        distill_weight=train_config.distill_weight,
        distill_top_k=train_config.distill_top_k,
    )
    trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    trainer.save_model(train_config.output_dir)
    return cache
