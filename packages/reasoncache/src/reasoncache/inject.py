"""Injecting a :class:`ReasonCache` into a transformers causal LM so it cannot go silently wrong.

Every call builds a fresh ``DynamicCache`` from the cache's parameters (forward and
``generate()`` append to the cache object they are given, so reusing one would grow it), passes
it under the keyword the installed transformers expects (``cache`` on 5.24+, ``past_key_values``
before; never both), extends the 2-D attention mask by m ones in front, and derives position ids
from that mask so real tokens start at position m even with left padding.
"""

from __future__ import annotations

import functools
import inspect
import sys
from typing import Any

import torch
from transformers import DynamicCache

from kernelkit.validation import check_int_in_range, check_tensor
from reasoncache.cache import CacheMismatchError, ReasonCache, model_fingerprint

__all__ = [
    "attach",
    "cache_keyword",
    "detach",
    "extend_attention_mask",
    "forward_with_cache",
    "fresh_dynamic_cache",
    "generate_with_cache",
    "gradient_checkpointing_enabled",
    "real_key_values",
]

_CACHE_KEYWORDS = ("cache", "past_key_values")
_ATTACHED = "_reasoncache_attached"


def cache_keyword(model: Any) -> str:
    """``"cache"`` or ``"past_key_values"``: the keyword this model's ``forward`` takes."""
    parameters = inspect.signature(model.forward).parameters
    for keyword in _CACHE_KEYWORDS:
        if keyword in parameters:
            return keyword
    raise TypeError(
        f"{type(model).__name__}.forward takes neither 'cache' nor 'past_key_values'; "
        "a prefix cache needs a causal LM that accepts a key-value cache"
    )


def _check_compatible(model: Any, cache: ReasonCache) -> None:
    if not isinstance(cache, ReasonCache):
        raise TypeError(f"cache must be a ReasonCache, got {type(cache).__name__}")
    fingerprint = model_fingerprint(model)
    if cache.fingerprint != fingerprint:
        raise CacheMismatchError(
            f"cache was built for a model with fingerprint {cache.fingerprint[:12]}…, "
            f"this model's is {fingerprint[:12]}…"
        )


def _model_dtype(model: Any) -> torch.dtype:
    return next(p for p in model.parameters()).dtype


def _model_device(model: Any) -> torch.device:
    return next(p for p in model.parameters()).device


def fresh_dynamic_cache(model: Any, cache: ReasonCache, batch_size: int) -> DynamicCache:
    """A new ``DynamicCache`` holding the prefix, in the model's dtype, differentiable."""
    key_values = cache.key_values(
        batch_size, dtype=_model_dtype(model), device=_model_device(model)
    )
    return DynamicCache(key_values, config=model.config)


def extend_attention_mask(
    attention_mask: torch.Tensor | None, input_ids: torch.Tensor, num_slots: int
) -> torch.Tensor:
    """``ones(B, m) ⊕ attention_mask`` as an int64 mask; checks the mask covers exactly the
    input tokens and holds only 0 and 1 (any integer, bool or float dtype)."""
    check_tensor("input_ids", input_ids)
    if input_ids.dim() != 2:
        raise ValueError(
            f"input_ids must be a 2-D [batch, seq] tensor, got {tuple(input_ids.shape)}"
        )
    if input_ids.dtype.is_floating_point or input_ids.dtype in (torch.bool, torch.complex64):
        raise TypeError(f"input_ids must hold integer token ids, got dtype {input_ids.dtype}")
    if input_ids.numel() and int(input_ids.min()) < 0:
        raise ValueError(f"input_ids must be token ids >= 0, got {int(input_ids.min())}")
    check_int_in_range("num_slots", num_slots, 0)
    batch, length = input_ids.shape
    if attention_mask is None:
        attention_mask = torch.ones(batch, length, dtype=torch.long, device=input_ids.device)
    check_tensor("attention_mask", attention_mask)
    if attention_mask.dim() != 2 or tuple(attention_mask.shape) != (batch, length):
        raise ValueError(
            f"attention_mask has shape {tuple(attention_mask.shape)}, expected {(batch, length)} "
            f"(one column per input token; the {num_slots} prefix columns are added here, so do "
            "not pass an already extended or a 4-D mask)"
        )
    if not bool(((attention_mask == 0) | (attention_mask == 1)).all()):
        bad = attention_mask[(attention_mask != 0) & (attention_mask != 1)][0].item()
        raise ValueError(f"attention_mask must hold only 0 and 1, got {bad!r}")
    attention_mask = attention_mask.long()
    prefix = torch.ones(batch, num_slots, dtype=attention_mask.dtype, device=attention_mask.device)
    return torch.cat([prefix, attention_mask], dim=1)


def _positions(extended_mask: torch.Tensor, num_slots: int) -> torch.Tensor:
    positions = extended_mask.long().cumsum(-1) - 1
    return positions.masked_fill(extended_mask == 0, 0)[:, num_slots:]


def gradient_checkpointing_enabled(model: Any) -> bool:
    """Whether activation checkpointing is on (the attribute was renamed in transformers 5)."""
    for name in ("is_activation_checkpointing", "is_gradient_checkpointing"):
        if hasattr(type(model), name) or hasattr(model, name):
            return bool(getattr(model, name))
    return False


_PREFIX_KWARG = "reasoncache_prefix"
_MASK_KWARG = "reasoncache_extended_mask"
_PREFIX_IMPLEMENTATION = "reasoncache_{}"
_WRAPPABLE_IMPLEMENTATIONS = ("sdpa", "eager")


def _prefix_mask(extended_mask: torch.Tensor, num_slots: int, query_length: int) -> torch.Tensor:
    """``[B, 1, n, m + n]`` boolean: every query sees the m slots, causal among the n tokens,
    padding hidden. Never a fully masked row (the slots are always visible)."""
    keys = torch.arange(num_slots + query_length, device=extended_mask.device)
    queries = torch.arange(query_length, device=extended_mask.device) + num_slots
    causal = keys[None, :] <= queries[:, None]
    return causal[None, None] & extended_mask.bool()[:, None, None, :]


def _inner_attention(implementation: str, module: Any) -> Any:
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    if implementation == "eager":
        # Every model defines its own eager function next to its attention class.
        return sys.modules[type(module).__module__].eager_attention_forward
    return ALL_ATTENTION_FUNCTIONS[implementation]


def _make_prefix_attention(implementation: str) -> Any:
    def prefix_attention(module, query, key, value, attention_mask, **kwargs):
        """``implementation`` with the prefix K/V concatenated inside attention.

        The prefix tensors arrive as call kwargs, so a checkpointed layer's recomputation sees
        the same tensors again: nothing is appended to any cache object. Without the kwarg this
        is exactly ``implementation``.
        """
        prefix = kwargs.pop(_PREFIX_KWARG, None)
        extended = kwargs.pop(_MASK_KWARG, None)
        inner = _inner_attention(implementation, module)
        if prefix is None:
            return inner(module, query, key, value, attention_mask, **kwargs)
        prefix_keys, prefix_values = prefix[module.layer_idx]
        key = torch.cat([prefix_keys.to(key.dtype), key], dim=2)
        value = torch.cat([prefix_values.to(value.dtype), value], dim=2)
        allowed = _prefix_mask(extended, prefix_keys.shape[2], query.shape[2])
        if implementation == "eager":  # eager adds the mask to the scores
            blocked = torch.finfo(query.dtype).min
            allowed = torch.zeros(
                allowed.shape, dtype=query.dtype, device=query.device
            ).masked_fill(~allowed, blocked)
        return inner(module, query, key, value, allowed, **kwargs)

    return prefix_attention


def _use_prefix_attention(model: Any) -> None:
    """Switch ``model`` to ``reasoncache_<impl>``: identical to ``<impl>`` unless a prefix is
    passed. Registered once per implementation; idempotent per model."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

    config = model.config
    current = config._attn_implementation
    if current.startswith(_PREFIX_IMPLEMENTATION.format("")):
        return
    if current not in _WRAPPABLE_IMPLEMENTATIONS:
        raise RuntimeError(
            f"gradient checkpointing with a ReasonCache needs attn_implementation in "
            f"{_WRAPPABLE_IMPLEMENTATIONS}, the model uses {current!r}; load it with "
            "attn_implementation='sdpa' or disable gradient checkpointing"
        )
    name = _PREFIX_IMPLEMENTATION.format(current)
    AttentionInterface.register(name, _make_prefix_attention(current))
    AttentionMaskInterface.register(name, ALL_MASK_ATTENTION_FUNCTIONS[current])
    config._attn_implementation = name


def _checkpointed_forward(
    model: Any, reason_cache: ReasonCache, input_ids: torch.Tensor, kwargs: dict[str, Any]
) -> Any:
    """Forward with the prefix inside attention (no cache object), safe to recompute."""
    if kwargs.pop("use_cache", False):
        raise ValueError(
            "use_cache=True is not available under gradient checkpointing (transformers drops "
            "the cache in checkpointed layers); call without use_cache"
        )
    _use_prefix_attention(model)
    kwargs.pop(cache_keyword(model))
    extended = kwargs["attention_mask"]
    batch = input_ids.shape[0]
    kwargs[_PREFIX_KWARG] = reason_cache.key_values(
        batch, dtype=_model_dtype(model), device=_model_device(model)
    )
    kwargs[_MASK_KWARG] = extended
    kwargs["attention_mask"] = extended[:, reason_cache.num_slots :]
    kwargs["position_ids"] = _positions(extended, reason_cache.num_slots)
    return _original(model, "forward")(input_ids=input_ids, use_cache=False, **kwargs)


def check_token_ids(model: Any, input_ids: Any, name: str = "input_ids") -> None:
    """Token ids as the model's embedding expects them, with an error that says which rule broke
    (otherwise torch raises a bare IndexError or dtype error deep inside the embedding)."""
    check_tensor(name, input_ids)
    if input_ids.dtype.is_floating_point or input_ids.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer token ids, got dtype {input_ids.dtype}")
    if input_ids.dim() != 2 or input_ids.shape[0] == 0 or input_ids.shape[1] == 0:
        raise ValueError(
            f"{name} must be a non-empty 2-D [batch, seq] tensor of token ids, got shape "
            f"{tuple(input_ids.shape)}"
        )
    vocab = model.get_input_embeddings().num_embeddings
    low, high = int(input_ids.min()), int(input_ids.max())
    if low < 0 or high >= vocab:
        raise ValueError(
            f"{name} must be token ids in [0, {vocab - 1}] (the model's vocabulary), got values "
            f"from {low} to {high}"
        )


def _check_labels(model: Any, labels: Any, input_ids: torch.Tensor) -> None:
    """Next-token labels: ids of the vocabulary or -100 (no loss), the shape of ``input_ids``,
    and at least one position left to predict (otherwise the mean loss is NaN)."""
    check_tensor("labels", labels)
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise TypeError(f"labels must hold integer token ids or -100, got dtype {labels.dtype}")
    if labels.shape != input_ids.shape:
        raise ValueError(
            f"labels must have the shape of input_ids {tuple(input_ids.shape)}, got "
            f"{tuple(labels.shape)}"
        )
    vocab = model.get_input_embeddings().num_embeddings
    invalid = (labels != -100) & ((labels < 0) | (labels >= vocab))
    if bool(invalid.any()):
        raise ValueError(
            f"labels must be token ids in [0, {vocab - 1}] or -100, got {labels[invalid][0].item()}"
        )
    if not bool((labels[:, 1:] != -100).any()):
        raise ValueError(
            "labels must leave at least one token to predict (a label other than -100 after the "
            "first position); the loss would be NaN"
        )


def _prepare(
    model: Any,
    reason_cache: ReasonCache,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    kwargs: dict[str, Any],
) -> dict[str, Any]:
    _check_compatible(model, reason_cache)
    check_token_ids(model, input_ids)
    if kwargs.get("labels") is not None:
        _check_labels(model, kwargs["labels"], input_ids)
    for keyword in _CACHE_KEYWORDS:
        if kwargs.get(keyword) is not None:
            raise ValueError(
                f"{keyword!r} was passed together with a ReasonCache; the prefix cache is built "
                "per call, so pass neither 'cache' nor 'past_key_values'"
            )
        kwargs.pop(keyword, None)
    if kwargs.get("position_ids") is not None:
        raise ValueError("position_ids are derived from the extended mask; do not pass them")
    kwargs.pop("position_ids", None)
    extended = extend_attention_mask(attention_mask, input_ids, reason_cache.num_slots)
    kwargs[cache_keyword(model)] = fresh_dynamic_cache(model, reason_cache, input_ids.shape[0])
    kwargs["attention_mask"] = extended
    return kwargs


def forward_with_cache(
    model: Any,
    reason_cache: ReasonCache,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    **kwargs: Any,
) -> Any:
    """``model(input_ids, ...)`` with the prefix in every layer; logits cover the n inputs only.

    With gradient checkpointing on (and the model training) the prefix is concatenated inside
    attention instead of through a cache object (see :func:`_checkpointed_forward`), because
    transformers drops the cache in checkpointed layers and a recomputation would append twice.
    """
    kwargs = _prepare(model, reason_cache, input_ids, attention_mask, kwargs)
    if gradient_checkpointing_enabled(model) and model.training:
        return _checkpointed_forward(model, reason_cache, input_ids, kwargs)
    kwargs["position_ids"] = _positions(kwargs["attention_mask"], reason_cache.num_slots)
    return _original(model, "forward")(input_ids=input_ids, **kwargs)


def generate_with_cache(
    model: Any,
    reason_cache: ReasonCache,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    **generate_kwargs: Any,
) -> torch.Tensor:
    """``model.generate`` with the prefix; returns the input tokens followed by new ones."""
    generate_kwargs = _prepare(model, reason_cache, input_ids, attention_mask, generate_kwargs)
    # generate() derives position ids from the (extended) mask itself: real tokens start at m.
    return _original(model, "generate")(input_ids=input_ids, **generate_kwargs)


def _original(model: Any, name: str) -> Any:
    """The model's own bound method, bypassing an :func:`attach` wrapper."""
    return getattr(type(model), name).__get__(model)


def attach(model: Any, cache: ReasonCache) -> Any:
    """Make plain ``model(...)`` and ``model.generate(...)`` use ``cache``; returns ``model``.

    A call that already passes a non-empty cache object (a decoding step, or generate()'s own
    steps) is forwarded untouched: that cache is trusted to hold the prefix already.
    """
    _check_compatible(model, cache)
    if getattr(model, _ATTACHED, None) is not None:
        raise RuntimeError("a ReasonCache is already attached to this model; call detach() first")
    keyword = cache_keyword(model)
    forward, generate = _original(model, "forward"), _original(model, "generate")

    @functools.wraps(forward)
    def forward_attached(*args: Any, **kwargs: Any) -> Any:
        given = kwargs.get(keyword, kwargs.get("past_key_values"))
        if given is not None and given.get_seq_length() > 0:
            return forward(*args, **kwargs)
        if given is not None:
            raise ValueError(
                "an empty cache object was passed to a model with an attached ReasonCache; "
                "pass no cache (the prefix is injected) or one that already holds the prefix"
            )
        input_ids = kwargs.pop("input_ids", args[0] if args else None)
        attention_mask = kwargs.pop("attention_mask", args[1] if len(args) > 1 else None)
        return forward_with_cache(model, cache, input_ids, attention_mask, **kwargs)

    @functools.wraps(generate)
    def generate_attached(input_ids: torch.Tensor | None = None, **kwargs: Any) -> Any:
        attention_mask = kwargs.pop("attention_mask", None)
        return generate_with_cache(model, cache, input_ids, attention_mask, **kwargs)

    model.forward = forward_attached
    model.generate = generate_attached
    setattr(model, _ATTACHED, cache)
    return model


def detach(model: Any) -> ReasonCache:
    """Undo :func:`attach`; returns the cache that was attached."""
    cache = getattr(model, _ATTACHED, None)
    if cache is None:
        raise RuntimeError("no ReasonCache is attached to this model")
    del model.forward, model.generate
    delattr(model, _ATTACHED)
    return cache


@torch.no_grad()
def real_key_values(model: Any, input_ids: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per-layer ``(K, V)`` ``[H_kv, n, head_dim]`` of one unpadded text run through the model.

    Keys carry RoPE rotations for positions 0..n-1, which is why queries after such a cache start
    at position n.
    """
    check_token_ids(model, input_ids)
    if input_ids.shape[0] != 1:
        raise ValueError(
            f"input_ids must be one unpadded sequence of shape [1, n], got {tuple(input_ids.shape)}"
        )
    keyword = cache_keyword(model)
    store = DynamicCache(config=model.config)
    _original(model, "forward")(input_ids=input_ids, use_cache=True, **{keyword: store})
    return [(layer.keys[0].float(), layer.values[0].float()) for layer in store.layers]
