"""Scoring pairs with a reward model: the margins every metric and certificate starts from."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from faro.data import GROUP_COLUMN, LABEL_COLUMN, ORIENTATION_COLUMN, FeaturePairs
from kernelkit.utils import progress

__all__ = ["PairScores", "score_pairs"]


@dataclass(frozen=True)
class PairScores:
    """Per-pair reward margins and the columns needed to evaluate constraints.

    ``margin = r(chosen) - r(rejected)`` (label orientation); ``canonical_margin`` multiplies it by
    ``orientation`` so that it is positive when the model prefers the canonical first response.
    """

    reward_chosen: torch.Tensor
    reward_rejected: torch.Tensor
    group: torch.Tensor
    orientation: torch.Tensor
    label: torch.Tensor | None = None
    twin_margin: torch.Tensor | None = None
    clean_preference: torch.Tensor | None = None

    @property
    def margin(self) -> torch.Tensor:
        return self.reward_chosen - self.reward_rejected

    @property
    def canonical_margin(self) -> torch.Tensor:
        return self.orientation.to(self.margin.dtype) * self.margin

    @property
    def canonical_twin_margin(self) -> torch.Tensor | None:
        if self.twin_margin is None:
            return None
        return self.orientation.to(self.twin_margin.dtype) * self.twin_margin

    def __len__(self) -> int:
        return self.reward_chosen.shape[0]


@torch.no_grad()
def _score_features(model: nn.Module, data: FeaturePairs) -> PairScores:
    twin = None
    if data.has_twins:
        twin = (model(data.chosen_twin) - model(data.rejected_twin)).float()
    return PairScores(
        reward_chosen=model(data.chosen).float(),
        reward_rejected=model(data.rejected).float(),
        group=data.group,
        orientation=data.orientation,
        label=data.label,
        twin_margin=twin,
        clean_preference=data.clean_preference,
    )


@torch.no_grad()
def _rewards_of_texts(model, tokenizer, texts: list[str], batch_size: int) -> torch.Tensor:
    device = next(model.parameters()).device
    rewards = []
    padding_side = tokenizer.padding_side
    tokenizer.padding_side = "right"
    try:
        for start in progress(range(0, len(texts), batch_size), desc="faro scoring"):
            encoded = tokenizer(
                texts[start : start + batch_size], return_tensors="pt", padding=True
            )
            encoded = {
                k: v.to(device) for k, v in encoded.items() if k in ("input_ids", "attention_mask")
            }
            rewards.append(model(**encoded).logits.squeeze(-1).float().cpu())
    finally:
        tokenizer.padding_side = padding_side
    return torch.cat(rewards)


def _with_eos(text: str, eos: str | None) -> str:
    return text if eos is None or text.endswith(eos) else text + eos


def _score_texts(model, dataset, tokenizer, batch_size: int) -> PairScores:
    if tokenizer is None:
        raise ValueError(
            "tokenizer is required to score a text dataset with a transformers reward model, got None"
        )
    columns = dataset.column_names
    if GROUP_COLUMN not in columns:
        raise ValueError(f"the dataset lacks the required column 'group'; it has {sorted(columns)}")
    prompts = dataset["prompt"] if "prompt" in columns else [""] * len(dataset)
    eos = tokenizer.eos_token

    def texts(prompt_column: list[str], response_column: str) -> list[str]:
        return [
            _with_eos(p + r, eos)
            for p, r in zip(prompt_column, dataset[response_column], strict=True)
        ]

    was_training = model.training
    model.eval()
    try:
        chosen = _rewards_of_texts(model, tokenizer, texts(prompts, "chosen"), batch_size)
        rejected = _rewards_of_texts(model, tokenizer, texts(prompts, "rejected"), batch_size)
        twin = None
        if "chosen_cf" in columns and "rejected_cf" in columns:
            twin_prompts = dataset["prompt_cf"] if "prompt_cf" in columns else prompts
            twin = _rewards_of_texts(
                model, tokenizer, texts(twin_prompts, "chosen_cf"), batch_size
            ) - _rewards_of_texts(model, tokenizer, texts(twin_prompts, "rejected_cf"), batch_size)
    finally:
        model.train(was_training)
    orientation = (
        torch.tensor(dataset[ORIENTATION_COLUMN])
        if ORIENTATION_COLUMN in columns
        else torch.ones(len(dataset), dtype=torch.long)
    )
    label = torch.tensor(dataset[LABEL_COLUMN]) if LABEL_COLUMN in columns else None
    return PairScores(
        chosen, rejected, torch.tensor(dataset[GROUP_COLUMN]), orientation, label, twin
    )


def score_pairs(model, data, *, tokenizer=None, batch_size: int = 64) -> PairScores:
    """Score every pair of ``data`` with ``model``.

    ``model`` is either a module mapping feature rows to rewards (with :class:`FeaturePairs`) or a
    transformers sequence-classification reward model (with a text ``datasets.Dataset`` and its
    ``tokenizer``). :class:`PairScores` passes through unchanged.
    """
    if isinstance(data, PairScores):
        return data
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if isinstance(data, FeaturePairs):
        if not isinstance(model, nn.Module):
            raise TypeError(
                f"model must be a torch.nn.Module for FeaturePairs, got {type(model).__name__}"
            )
        return _score_features(model, data)
    from datasets import Dataset

    if isinstance(data, Dataset):
        return _score_texts(model, data, tokenizer, batch_size)
    raise TypeError(
        f"data must be FeaturePairs, a datasets.Dataset or PairScores, got {type(data).__name__}"
    )
