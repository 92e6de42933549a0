"""Baselines in the same harness as the cache: many-shot ICL and parameter-matched LoRA.

Every method is scored by :func:`evaluate` on the same tokenised rows (``input_ids`` and
``labels``, -100 where nothing is scored), left-padded into the same batches, with the same
teacher-forced exact-match scoring and the same cost accounting:

- :class:`CacheMethod`: the frozen model plus a :class:`~reasoncache.ReasonCache` of m slots.
- :class:`ICLMethod`: the frozen model with N demonstrations (token ids) in front of every query.
- :class:`ModelMethod`: the model as it is: zero-shot, or a peft LoRA model from
  :func:`train_lora` (trained by :func:`reasoncache.train.run_training`, the Trainer path the
  cache uses).

:func:`match_lora_to_cache` picks the LoRA rank for a parameter count matched to a cache of m
slots and reports both counts.

Cost per query (averaged over the rows):

- ``context_tokens``: tokens the model reads before the first scored token (demonstrations plus
  prompt); the completion being scored is not counted.
- ``kv_entries``: key/value entries the first scored token attends over: ``m + context_tokens``
  for a cache, ``context_tokens`` otherwise.
- ``flops``: counted by ``torch.utils.flop_counter.FlopCounterMode`` on one unpadded forward
  pass over ``context + completion`` (the prefill plus teacher-forced decoding of the answer).
  It counts ``2·a·b·c`` per ``[a,b]x[b,c]`` matrix product, so for a Llama-style decoder with
  ``n`` tokens, ``L`` layers, ``H`` query heads of width ``d_h`` and ``M`` extra cache slots::

      FLOPs = 2·n·W  +  4·L·H·d_h·n·(M + n)

  where ``W = sum of in·out over every linear layer`` (attention and MLP projections of all
  layers, the LM head, and unmerged LoRA factors) and the second term is ``QK^T`` plus
  ``softmax·V`` over all ``M + n`` key positions (the counter ignores causal masking). Norms,
  RoPE, softmax and other elementwise operations are not counted.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from kernelkit.utils import progress, seed_everything
from kernelkit.validation import check_int_in_range
from reasoncache.cache import ReasonCache, layer_shapes
from reasoncache.inject import check_token_ids, forward_with_cache
from reasoncache.train import (
    Example,
    TrainConfig,
    _pad_token_id,
    enable_gradient_checkpointing,
    pad_batch,
    positions_from_mask,
    run_training,
    tokenize_examples,
)

__all__ = [
    "DEFAULT_LORA_TARGETS",
    "CacheMethod",
    "EvalResult",
    "ICLMethod",
    "LoraCausalLM",
    "LoraMatch",
    "ModelMethod",
    "cache_parameter_count",
    "evaluate",
    "format_demonstrations",
    "lora_parameter_count",
    "match_lora_to_cache",
    "train_lora",
]

#: The standard LoRA placement (Hu et al., 2021): the query and value projections.
DEFAULT_LORA_TARGETS = ("q_proj", "v_proj")


# --------------------------------------------------------------------------- parameter matching


def cache_parameter_count(model: Any, num_slots: int, frozen_slots: int = 0) -> int:
    """Trainable parameters of a raw cache: ``2 · (m - frozen) · sum_l H_kv(l) · head_dim(l)``."""
    check_int_in_range("num_slots", num_slots, 1)
    check_int_in_range("frozen_slots", frozen_slots, 0)
    if num_slots <= 0 or not 0 <= frozen_slots < num_slots:
        raise ValueError(
            f"need num_slots > 0 and 0 <= frozen_slots < num_slots, got num_slots={num_slots}, "
            f"frozen_slots={frozen_slots}"
        )
    per_slot = sum(2 * s.num_kv_heads * s.head_dim for s in layer_shapes(model))
    return per_slot * (num_slots - frozen_slots)


def _target_linears(model: Any, target_modules: Sequence[str]) -> list[nn.Linear]:
    return [
        module
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and name.rsplit(".", 1)[-1] in target_modules
    ]


def lora_parameter_count(model: Any, rank: int, target_modules: Sequence[str]) -> int:
    """``rank · sum (in + out)`` over the linear layers named by ``target_modules`` (A and B)."""
    linears = _target_linears(model, target_modules)
    if not linears:
        raise ValueError(
            f"target_modules {list(target_modules)} match no nn.Linear in "
            f"{type(model).__name__}; expected module names such as q_proj, v_proj"
        )
    return rank * sum(m.in_features + m.out_features for m in linears)


@dataclass(frozen=True)
class LoraMatch:
    """A LoRA configuration whose parameter count is matched to a cache of ``num_slots``."""

    num_slots: int
    cache_parameters: int
    rank: int
    target_modules: tuple[str, ...]
    lora_parameters: int

    @property
    def relative_gap(self) -> float:
        """``(lora - cache) / cache``: how far the match is (rank is an integer >= 1)."""
        return (self.lora_parameters - self.cache_parameters) / self.cache_parameters

    def lora_config(self) -> Any:
        """The peft ``LoraConfig``: rank r, alpha = r (scale 1), no dropout, no bias."""
        from peft import LoraConfig

        return LoraConfig(
            r=self.rank,
            lora_alpha=self.rank,
            target_modules=list(self.target_modules),
            lora_dropout=0.0,
            bias="none",
        )


def match_lora_to_cache(
    model: Any,
    num_slots: int,
    target_modules: Sequence[str] = DEFAULT_LORA_TARGETS,
    frozen_slots: int = 0,
) -> LoraMatch:
    """The LoRA rank on ``target_modules`` whose parameter count is closest to a cache of m slots.

    A rank-r adapter on a linear layer ``in -> out`` has ``r · (in + out)`` parameters, so with
    ``R = sum (in + out)`` over the targeted layers the rank is ``max(1, round(cache / R))``
    (the integer closest to the cache's count; ties round to even). Below ``R / 2`` cache
    parameters even rank 1 is larger than the cache; the returned :attr:`LoraMatch.relative_gap`
    says by how much. The targets are kept as given (default q, v, the standard placement).
    """
    cache_parameters = cache_parameter_count(model, num_slots, frozen_slots)
    per_rank = lora_parameter_count(model, 1, target_modules)
    rank = max(1, round(cache_parameters / per_rank))
    return LoraMatch(
        num_slots=num_slots,
        cache_parameters=cache_parameters,
        rank=rank,
        target_modules=tuple(target_modules),
        lora_parameters=rank * per_rank,
    )


# --------------------------------------------------------------------------- LoRA training


class LoraCausalLM(nn.Module):
    """A peft LoRA model as the :class:`~reasoncache.train.CacheTrainer` drives it.

    Positions come from the attention mask, as for the cache and ICL, so left padding changes
    nothing. Only the ``lora_`` factors are trainable; checkpoints hold only the adapter
    (peft's safetensors ``save_pretrained``).
    """

    def __init__(self, peft_model: Any) -> None:
        super().__init__()
        self.peft_model = peft_model

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        outputs = self.peft_model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=positions_from_mask(attention_mask),
            labels=labels,
        )
        return {"loss": outputs.loss, "logits": outputs.logits}

    def save_trainable(self, output_dir: Any) -> None:
        self.peft_model.save_pretrained(str(output_dir), safe_serialization=True)

    def load_trainable(self, checkpoint_dir: Any) -> None:
        from peft import set_peft_model_state_dict
        from peft.utils import load_peft_weights

        set_peft_model_state_dict(self.peft_model, load_peft_weights(str(checkpoint_dir)))


def train_lora(
    model: Any,
    tokenizer: Any,
    examples: Sequence[Example],
    lora: LoraMatch | Any,
    train_config: TrainConfig | None = None,
    *,
    resume_from_checkpoint: str | bool | None = None,
    callbacks: Sequence[Any] | None = None,
) -> Any:
    """Train a LoRA adapter on a deep copy of ``model`` through the cache's Trainer path.

    ``lora`` is a :class:`LoraMatch` or a peft ``LoraConfig``. The same examples, padding,
    optimiser, schedule and checkpointing as :func:`~reasoncache.train_cache` (distillation is
    cache-only and refused here). ``model`` itself is not modified. Returns the peft model.
    """
    from peft import get_peft_model

    train_config = train_config or TrainConfig()
    if train_config.distill_weight > 0:
        raise ValueError(
            f"distill_weight={train_config.distill_weight}: distillation is implemented for the "
            "cache only; train LoRA with distill_weight=0"
        )
    if len(examples) == 0:
        raise ValueError("examples must hold at least one training example, got none")
    config = lora.lora_config() if isinstance(lora, LoraMatch) else lora
    seed_everything(train_config.seed)  # LoRA's A factors start random: make runs repeatable
    backbone = copy.deepcopy(model)
    if train_config.gradient_checkpointing:
        enable_gradient_checkpointing(backbone)
    peft_model = get_peft_model(backbone, config)
    run_training(
        LoraCausalLM(peft_model),
        tokenize_examples(tokenizer, examples),
        train_config,
        pad_token_id=_pad_token_id(tokenizer),
        resume_from_checkpoint=resume_from_checkpoint,
        callbacks=callbacks,
    )
    return peft_model.eval()


# --------------------------------------------------------------------------- methods


def format_demonstrations(
    examples: Sequence[dict[str, str]], num_demonstrations: int, separator: str = "\n"
) -> str:
    """The first N ``{"prompt", "completion"}`` examples as one ICL context text:
    ``prompt + completion`` joined and followed by ``separator``."""
    if not 0 < num_demonstrations <= len(examples):
        raise ValueError(
            f"num_demonstrations must be in [1, {len(examples)}] (the examples given), got "
            f"{num_demonstrations}"
        )
    parts = []
    for index, example in enumerate(examples[:num_demonstrations]):
        if not isinstance(example, dict) or "completion" not in example:
            raise ValueError(f"demonstration {index} needs a 'completion', got {example!r}")
        parts.append(example.get("prompt", "") + example["completion"] + separator)
    return "".join(parts)


class ModelMethod:
    """The model as it is (zero-shot, or a peft LoRA model); positions from the mask."""

    extra_kv_entries = 0

    def __init__(self, model: Any, name: str | None = None) -> None:
        self.model = model
        self.name = name or ("LoRA" if hasattr(model, "peft_config") else "zero-shot")
        self.prefix_ids = torch.zeros(0, dtype=torch.long)

    @property
    def trained_parameters(self) -> int:
        return sum(p.numel() for n, p in self.model.named_parameters() if "lora_" in n)

    def logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=positions_from_mask(attention_mask),
        ).logits


class ICLMethod(ModelMethod):
    """In-context learning: ``demonstration_ids`` (``[n]`` or ``[1, n]``) before every query."""

    def __init__(self, model: Any, demonstration_ids: torch.Tensor | Sequence[int]) -> None:
        if demonstration_ids is None:
            raise TypeError("demonstration_ids must be token ids, got None")
        ids = torch.as_tensor(demonstration_ids)
        if ids.dtype.is_floating_point or ids.dtype == torch.bool:
            raise TypeError(f"demonstration_ids must hold integer token ids, got dtype {ids.dtype}")
        ids = ids[0] if ids.dim() == 2 and ids.shape[0] == 1 else ids
        if ids.dim() != 1 or ids.numel() == 0:
            raise ValueError(
                "demonstration_ids must be one non-empty token sequence ([n] or [1, n]), got "
                f"shape {tuple(torch.as_tensor(demonstration_ids).shape)}"
            )
        check_token_ids(model, ids.long().unsqueeze(0), "demonstration_ids")
        ids = ids.long()
        super().__init__(model, name=f"ICL ({ids.numel()} context tokens)")
        self.prefix_ids = ids

    @property
    def trained_parameters(self) -> int:
        return 0


class CacheMethod:
    """The frozen model with a :class:`~reasoncache.ReasonCache` (m extra KV entries)."""

    def __init__(self, model: Any, cache: ReasonCache) -> None:
        self.model = model
        self.cache = cache
        self.name = f"cache m={cache.num_slots}"
        self.prefix_ids = torch.zeros(0, dtype=torch.long)
        self.extra_kv_entries = cache.num_slots
        self.trained_parameters = cache_parameter_count(
            model, cache.num_slots, cache.config.frozen_slots
        )

    def logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return forward_with_cache(self.model, self.cache, input_ids, attention_mask).logits


# --------------------------------------------------------------------------- evaluation


@dataclass
class EvalResult:
    """Per-method accuracy and per-query cost (see the module docstring for definitions)."""

    method: str
    accuracy: float
    nll: float
    context_tokens: float
    kv_entries: float
    flops: float
    num_queries: int
    trained_parameters: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _with_prefix(row: dict[str, list[int]], prefix: torch.Tensor) -> dict[str, list[int]]:
    ids = prefix.tolist()
    return {"input_ids": ids + row["input_ids"], "labels": [-100] * len(ids) + row["labels"]}


def _context_tokens(row: dict[str, list[int]]) -> int:
    return next(i for i, label in enumerate(row["labels"]) if label != -100)


@torch.no_grad()
def evaluate(
    method: ModelMethod | CacheMethod,
    examples: Sequence[Example],
    tokenizer: Any = None,
    *,
    batch_size: int = 32,
    flop_queries: int = 8,
) -> EvalResult:
    """Teacher-forced scoring of ``examples`` under ``method``, with per-query costs.

    A query is correct when the argmax at every scored position equals its label (exact match;
    the same as greedy decoding reproducing the completion). ``nll`` is the mean negative
    log-likelihood per scored token. FLOPs are measured on the first ``flop_queries`` rows
    (unpadded, one at a time) and averaged.
    """
    check_int_in_range("batch_size", batch_size, 1)
    check_int_in_range("flop_queries", flop_queries, 0)
    rows = [_with_prefix(r, method.prefix_ids) for r in tokenize_examples(tokenizer, examples)]
    if not rows:
        raise ValueError("examples must hold at least one example to evaluate, got none")
    vocab = method.model.get_input_embeddings().num_embeddings
    for index, row in enumerate(rows):
        if not all(0 <= t < vocab for t in row["input_ids"]):
            raise ValueError(
                f"examples[{index}] input_ids must be token ids in [0, {vocab - 1}], got "
                f"{next(t for t in row['input_ids'] if not 0 <= t < vocab)}"
            )
    device = next(method.model.parameters()).device
    correct, nll, scored = 0, 0.0, 0
    for start in progress(range(0, len(rows), batch_size), desc="reasoncache eval"):
        batch = {
            k: v.to(device)
            for k, v in pad_batch(
                rows[start : start + batch_size], _pad_token_id(tokenizer)
            ).items()
        }
        logits = method.logits(batch["input_ids"], batch["attention_mask"]).float()
        targets = batch["labels"][:, 1:]
        predicting = targets != -100
        log_probs = logits[:, :-1].log_softmax(-1)
        hits = (log_probs.argmax(-1) == targets) | ~predicting
        correct += int(hits.all(-1).sum())
        token_nll = -log_probs.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        nll += float(token_nll[predicting].sum())
        scored += int(predicting.sum())
    flops = []
    for row in rows[:flop_queries]:
        ids = torch.tensor([row["input_ids"]], device=device)
        counter = FlopCounterMode(display=False)
        with counter:
            method.logits(ids, torch.ones_like(ids))
        flops.append(counter.get_total_flops())
    context = sum(_context_tokens(r) for r in rows) / len(rows)
    return EvalResult(
        method=method.name,
        accuracy=correct / len(rows),
        nll=nll / scored,
        context_tokens=context,
        kv_entries=method.extra_kv_entries + context,
        flops=sum(flops) / len(flops) if flops else float("nan"),
        num_queries=len(rows),
        trained_parameters=method.trained_parameters,
    )
