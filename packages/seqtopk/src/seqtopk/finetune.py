"""Fine-tune a pretrained MoE model with SeqTopK routing, with the transformers Trainer.

The model directory is anything ``AutoModelForCausalLM.from_pretrained`` reads locally (with its
tokenizer). The model is patched with offline SeqTopK (or, for a control, left on its own TopK),
trained for a few hundred steps on a text file (one example per line, or fixed-size blocks of
the whole file), unpatched and saved with ``save_pretrained`` together with
``seqtopk.json`` recording the routing to re-apply with ``seqtopk.patch``. Because it is a plain
``Trainer`` run, ``accelerate launch`` or ``torchrun`` scale it without code of ours, and an
interrupted run resumes with ``resume_from_checkpoint`` (a checkpoint directory or ``"last"``),
which the Trainer honours with its own optimiser, scheduler, RNG and data-position state.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import torch

from kernelkit.io import atomic_write_text
from kernelkit.utils import progress, progress_enabled
from kernelkit.validation import check_int_in_range
from seqtopk.patching import is_patched, patch, unpatch

__all__ = ["EvalConfig", "FinetuneConfig", "evaluate_text", "finetune"]


@dataclass
class FinetuneConfig:
    """Switching a pretrained MoE to SeqTopK by brief fine-tuning (paper: at most 200 steps)."""

    model_dir: str = field(metadata={"help": "local directory of the pretrained MoE model"})
    train_file: str = field(metadata={"help": "UTF-8 text file, one training example per line"})
    output_dir: str = field(metadata={"help": "where checkpoints and the final model go"})
    routing: Literal["topk", "seqtopk"] = field(
        default="seqtopk",
        metadata={
            "help": "train with offline SeqTopK, or with the model's own TopK (the control: the "
            "same fine-tuning without the switch; the bounds are then unused)"
        },
    )
    k: int = field(default=0, metadata={"help": "experts per token; 0 keeps num_experts_per_tok"})
    min_per_token: int = field(default=1, metadata={"help": "SeqTopK lower bound L"})
    max_per_token: int = field(default=0, metadata={"help": "upper bound U; 0 means K + 2"})
    block_size: int = field(
        default=0,
        metadata={
            "help": "0: one example per line; N > 0: the whole file as one token stream (no "
            "special tokens, newlines kept) cut into consecutive N-token examples, the last "
            "partial one dropped (e.g. byte-level text); max_length is then unused"
        },
    )
    max_steps: int = field(default=200, metadata={"help": "optimiser steps"})
    learning_rate: float = field(default=1e-5, metadata={"help": "peak learning rate"})
    batch_size: int = field(default=8, metadata={"help": "sequences per device and step"})
    max_length: int = field(default=512, metadata={"help": "tokens per example (truncated)"})
    save_steps: int = field(default=100, metadata={"help": "steps between Trainer checkpoints"})
    seed: int = field(default=0, metadata={"help": "Trainer seed"})
    resume_from_checkpoint: str = field(
        default="",
        metadata={
            "help": "resume the Trainer run: a checkpoint directory, or 'last' for the newest "
            "checkpoint-* in output_dir; empty starts afresh"
        },
    )

    def __post_init__(self) -> None:
        if self.routing not in ("topk", "seqtopk"):
            raise ValueError(f"routing must be 'topk' or 'seqtopk', got {self.routing!r}")
        check_int_in_range("block_size", self.block_size, 0)


@dataclass
class EvalConfig:
    """Perplexity and next-token accuracy of a saved MoE model on a text file."""

    model_dir: str = field(metadata={"help": "local directory of the MoE model"})
    text_file: str = field(metadata={"help": "UTF-8 text file, one example per line"})
    routing: Literal["topk", "seqtopk"] = field(
        default="seqtopk", metadata={"help": "route with the model's TopK or with SeqTopK"}
    )
    mode: Literal["offline", "online"] = field(
        default="online", metadata={"help": "SeqTopK mode; online is the causal number"}
    )
    k: int = field(default=0, metadata={"help": "experts per token; 0 keeps num_experts_per_tok"})
    min_per_token: int = field(default=1, metadata={"help": "SeqTopK lower bound L"})
    max_per_token: int = field(default=0, metadata={"help": "upper bound U; 0 means K + 2"})
    batch_size: int = field(default=8, metadata={"help": "sequences per forward"})
    max_length: int = field(default=512, metadata={"help": "tokens per example (truncated)"})


def _read_text(path: str) -> str:
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"text file {path!r} does not exist")
    return file.read_text(encoding="utf-8")


def _read_lines(path: str) -> list[str]:
    lines = [line for line in _read_text(path).splitlines() if line.strip()]
    if not lines:
        raise ValueError(f"text file {path!r} has no non-empty lines")
    return lines


def _examples(config: FinetuneConfig, tokenizer) -> list[list[int]]:
    if not config.block_size:
        lines = _read_lines(config.train_file)
        return tokenizer(lines, truncation=True, max_length=config.max_length)["input_ids"]
    stream = tokenizer(_read_text(config.train_file), add_special_tokens=False)["input_ids"]
    size = config.block_size
    if len(stream) < size:
        raise ValueError(
            f"block_size={size} is more than the {len(stream)} tokens of {config.train_file!r}"
        )
    return [stream[start : start + size] for start in range(0, len(stream) - size + 1, size)]


def _load(model_dir: str, weights_dir: str | None = None):
    """Tokenizer from ``model_dir``; weights from ``weights_dir`` (a checkpoint) when given."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    for name, path in (("model_dir", model_dir), ("resume_from_checkpoint", weights_dir)):
        if path is not None and not Path(path).is_dir():
            raise FileNotFoundError(f"{name} {path!r} is not a directory")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(weights_dir or model_dir)
    return model, tokenizer


def _checkpoint_to_resume(config: FinetuneConfig) -> str | None:
    if not config.resume_from_checkpoint:
        return None
    if config.resume_from_checkpoint != "last":
        return config.resume_from_checkpoint
    from transformers.trainer_utils import get_last_checkpoint

    last = get_last_checkpoint(config.output_dir) if Path(config.output_dir).is_dir() else None
    if last is None:
        raise FileNotFoundError(
            f"resume_from_checkpoint='last' but output_dir {config.output_dir!r} holds no "
            "checkpoint-* directory"
        )
    return last


def _patch(model, k: int, low: int, high: int, mode: str) -> None:
    patch(model, k=k or None, mode=mode, min_per_token=low, max_per_token=high or None)


def finetune(config: FinetuneConfig):
    """Run the fine-tuning; returns the (unpatched) model after saving it."""
    from transformers import DataCollatorForLanguageModeling, Trainer, TrainingArguments

    resume = _checkpoint_to_resume(config)
    # transformers 5 saves MoE experts in the per-expert layout and the Trainer reloads a
    # checkpoint with load_state_dict(strict=False) into the fused layout, silently keeping the
    # experts' initial weights; building the model from the checkpoint itself loads them right.
    model, tokenizer = _load(config.model_dir, resume)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    examples = [{"input_ids": ids} for ids in _examples(config, tokenizer)]
    experts_per_token = model.config.num_experts_per_tok
    if config.routing == "topk":
        # transformers' router reads num_experts_per_tok; another K would need a config edit
        # that the saved model would then carry, which is not this control's point.
        if config.k not in (0, experts_per_token):
            raise ValueError(
                f"k must be 0 or the model's num_experts_per_tok={experts_per_token} with "
                f"routing='topk', got {config.k}"
            )
    else:
        _patch(model, config.k, config.min_per_token, config.max_per_token, "offline")
    # With SeqTopK the balance loss then follows the routing actually made (seqtopk.patching).
    model.config.output_router_logits = True
    arguments = TrainingArguments(
        output_dir=config.output_dir,
        max_steps=config.max_steps,
        learning_rate=config.learning_rate,
        per_device_train_batch_size=config.batch_size,
        save_steps=config.save_steps,
        seed=config.seed,
        report_to=[],
        logging_steps=max(1, config.max_steps // 20),
        disable_tqdm=not progress_enabled(),
        remove_unused_columns=False,
        # Without use_cpu a CPU-only process never joins the process group torchrun prepared,
        # so N processes would run N independent trainings into one output_dir.
        use_cpu=not torch.cuda.is_available(),
    )
    trainer = Trainer(
        model=model,
        args=arguments,
        train_dataset=examples,
        data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False),
    )
    # The Trainer's checkpoints hold the weights, optimiser, scheduler, RNG states and the data
    # position; the patch adds no state of its own (routers keep their parameters), so resuming
    # a patched model is the Trainer's ordinary resume.
    trainer.train(resume_from_checkpoint=resume)
    if config.routing == "topk":
        bounds = dict.fromkeys(("k", "min_per_token", "max_per_token"), experts_per_token)
    else:
        routing = model._seqtopk_routing
        bounds = {
            "k": routing.k,
            "min_per_token": routing.min_per_token,
            "max_per_token": routing.max_per_token,
        }
        unpatch(model)
    recorded = {"routing": config.routing, **bounds, "finetune": asdict(config)}
    model.config.output_router_logits = False
    if trainer.is_world_process_zero():
        model.save_pretrained(config.output_dir)
        tokenizer.save_pretrained(config.output_dir)
        atomic_write_text(Path(config.output_dir) / "seqtopk.json", json.dumps(recorded, indent=2))
    return model


@torch.no_grad()
def evaluate_text(config: EvalConfig) -> dict[str, float]:
    """Perplexity and next-token accuracy over the non-padding tokens of ``text_file``."""
    model, tokenizer = _load(config.model_dir)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    if config.routing == "seqtopk":
        _patch(model, config.k, config.min_per_token, config.max_per_token, config.mode)
    model.eval()
    lines = _read_lines(config.text_file)
    nll, correct, count = 0.0, 0, 0
    for start in progress(range(0, len(lines), config.batch_size), desc="seqtopk eval"):
        batch = tokenizer(
            lines[start : start + config.batch_size],
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=config.max_length,
        )
        logits = model(**batch).logits[:, :-1].float()
        targets = batch["input_ids"][:, 1:]
        keep = batch["attention_mask"][:, 1:].bool()
        losses = torch.nn.functional.cross_entropy(
            logits.transpose(1, 2), targets, reduction="none"
        )
        nll += float(losses[keep].sum())
        correct += int((logits.argmax(-1) == targets)[keep].sum())
        count += int(keep.sum())
    if is_patched(model):
        unpatch(model)
    return {
        "perplexity": math.exp(nll / max(count, 1)),
        "accuracy": correct / max(count, 1),
        "tokens": float(count),
    }
