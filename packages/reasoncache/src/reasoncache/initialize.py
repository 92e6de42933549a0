"""Initialising a cache: zeros, small random, real KV of a text or of questions, another cache."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from reasoncache.cache import CacheMismatchError, ReasonCache, ReasonCacheConfig
from reasoncache.inject import check_token_ids, real_key_values

__all__ = ["cache_from_text", "init_from_cache", "init_from_questions", "init_from_text"]


def _as_ids(
    text_ids: torch.Tensor | Sequence[int], model: Any, name: str = "text_ids"
) -> torch.Tensor:
    """One sequence of the model's token ids as ``[1, n]`` (a float or bool tensor, which
    ``torch.as_tensor(..., dtype=long)`` would silently truncate, is refused)."""
    if text_ids is None:
        raise TypeError(f"{name} must be token ids (a tensor or a sequence of ints), got None")
    ids = torch.as_tensor(text_ids)
    if ids.dtype.is_floating_point or ids.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer token ids, got dtype {ids.dtype}")
    if ids.dim() == 1:
        ids = ids.unsqueeze(0)
    if ids.dim() != 2 or ids.shape[0] != 1:
        raise ValueError(
            f"{name} must be one token sequence ([n] or [1, n]), got {tuple(ids.shape)}"
        )
    check_token_ids(model, ids.long(), name)
    return ids.long()


def init_from_text(cache: ReasonCache, model: Any, text_ids: torch.Tensor) -> ReasonCache:
    """Set the m slots to the real KV of the first m tokens of ``text_ids`` (no padding).

    With these slots the model behaves exactly as if those m tokens were in its context.
    """
    ids = _as_ids(text_ids, model).to(next(model.parameters()).device)
    if ids.shape[1] < cache.num_slots:
        raise ValueError(
            f"text_ids has {ids.shape[1]} tokens, fewer than the cache's m={cache.num_slots} slots"
        )
    cache.load_key_values(real_key_values(model, ids[:, : cache.num_slots]))
    cache.init_method = "text"
    return cache


def init_from_questions(
    cache: ReasonCache, model: Any, question_ids: Sequence[Sequence[int] | torch.Tensor]
) -> ReasonCache:
    """Real KV of training questions, concatenated in order and cut to m tokens."""
    if len(question_ids) == 0:
        raise ValueError("question_ids must hold at least one question, got none")
    joined = torch.cat(
        [_as_ids(q, model, f"question_ids[{i}]")[0] for i, q in enumerate(question_ids)]
    )
    if joined.numel() < cache.num_slots:
        raise ValueError(
            f"question_ids hold {joined.numel()} tokens, fewer than the cache's "
            f"m={cache.num_slots} slots"
        )
    init_from_text(cache, model, joined)
    cache.init_method = "questions"
    return cache


@torch.no_grad()
def init_from_cache(cache: ReasonCache, other: ReasonCache) -> ReasonCache:
    """Copy the first m slots of ``other`` (which must have at least m) into ``cache``.

    The first m slots of a cache were rotated for positions 0..m-1, so keeping a prefix of the
    slots keeps the geometry that queries starting at position m expect.
    """
    if other.shapes != cache.shapes or other.fingerprint != cache.fingerprint:
        raise CacheMismatchError("other was built for a different model than cache")
    if other.num_slots < cache.num_slots:
        raise ValueError(
            f"other has {other.num_slots} slots, fewer than the m={cache.num_slots} to fill"
        )
    pairs = [
        (k[0, :, : cache.num_slots].float(), v[0, :, : cache.num_slots].float())
        for k, v in other.key_values(batch_size=1)
    ]
    cache.load_key_values(pairs)
    cache.init_method = "cache"
    return cache


def cache_from_text(
    model: Any, text_ids: torch.Tensor, *, frozen_slots: int = 0, reparam_hidden: int = 0
) -> ReasonCache:
    """A cache whose m = len(text_ids) slots are the real KV of the whole text."""
    ids = _as_ids(text_ids, model)
    config = ReasonCacheConfig(
        num_slots=ids.shape[1],
        frozen_slots=frozen_slots,
        init="text",
        reparam_hidden=reparam_hidden,
    )
    return init_from_text(ReasonCache(model, config), model, ids)
