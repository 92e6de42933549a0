"""The trained key-value cache: per-layer prefix keys and values for a frozen causal LM.

A :class:`ReasonCache` holds, for every decoder layer ``l``, ``m`` key vectors and ``m`` value
vectors shaped ``[H_kv(l), m, head_dim(l)]``. Attention in layer ``l`` then runs over
``[P_K; K]`` and ``[P_V; V]``. Master parameters are float32 and are cast to the model's dtype
only when a fresh per-call cache is built (:meth:`ReasonCache.key_values`), so the trained
parameters are never mutated by a forward or ``generate()`` call.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from kernelkit.io import ArtifactError, load_artifact, save_artifact
from kernelkit.validation import (
    check_finite,
    check_floating,
    check_int_in_range,
    check_real_in_range,
    check_tensor,
)

__all__ = [
    "CacheMismatchError",
    "LayerShape",
    "ReasonCache",
    "ReasonCacheConfig",
    "UnsupportedModelError",
    "WeightsFingerprint",
    "compose",
    "layer_shapes",
    "model_fingerprint",
    "rotate_keys",
    "weights_fingerprint",
]

ARTIFACT_KIND = "reasoncache"
_ATTENTION_LAYER_TYPES = {"full_attention", "sliding_attention", "chunked_attention"}


class UnsupportedModelError(ValueError):
    """The model has no attention layers whose keys and values a prefix cache can extend."""


class CacheMismatchError(ValueError):
    """A cache was built for a model with different layers, heads, head_dim or RoPE settings,
    or (:meth:`ReasonCache.from_pretrained`, :func:`compose`) for other weights."""


@dataclass(frozen=True)
class LayerShape:
    """Shape of one layer's prefix: ``[num_kv_heads, m, head_dim]``."""

    num_kv_heads: int
    head_dim: int


@dataclass
class ReasonCacheConfig:
    """How a cache is parameterised and initialised."""

    num_slots: int = field(
        default=16, metadata={"help": "m, the number of key/value slots per layer (> 0)"}
    )
    frozen_slots: int = field(
        default=0,
        metadata={
            "help": "leading slots kept fixed during training (1 = an attention sink, as in "
            "Cartridges); must be < num_slots"
        },
    )
    init: Literal["zeros", "random", "text", "questions"] = field(
        default="random",
        metadata={
            "help": "initialisation: zeros, small random (init_std), the real KV of a "
            "demonstration text, or of a set of training questions"
        },
    )
    init_std: float = field(
        default=0.02, metadata={"help": "standard deviation of the 'random' initialisation"}
    )
    reparam_hidden: int = field(
        default=0,
        metadata={
            "help": "hidden width of the Li & Liang MLP reparameterisation (0 = raw KV "
            "parameters); materialise() turns it into raw KV for inference"
        },
    )

    def __post_init__(self) -> None:
        if isinstance(self.num_slots, bool) or not isinstance(self.num_slots, int):
            raise ValueError(f"num_slots must be an int > 0, got {self.num_slots!r}")
        if self.num_slots <= 0:
            raise ValueError(f"num_slots (m) must be > 0, got {self.num_slots}")
        check_int_in_range("frozen_slots", self.frozen_slots, 0)
        check_int_in_range("reparam_hidden", self.reparam_hidden, 0)
        if not 0 <= self.frozen_slots < self.num_slots:
            raise ValueError(
                f"frozen_slots must be in [0, num_slots={self.num_slots}), got {self.frozen_slots}"
            )
        if self.init not in ("zeros", "random", "text", "questions"):
            raise ValueError(
                f"init must be one of zeros, random, text, questions; got {self.init!r}"
            )
        check_real_in_range("init_std", self.init_std, 0.0)
        if self.reparam_hidden < 0:
            raise ValueError(f"reparam_hidden must be >= 0, got {self.reparam_hidden}")


def _text_config(model_or_config: Any) -> Any:
    config = getattr(model_or_config, "config", model_or_config)
    if hasattr(config, "get_text_config"):
        config = config.get_text_config(decoder=True)
    return config


def layer_shapes(model_or_config: Any) -> list[LayerShape]:
    """Per-layer prefix shapes from a transformers model or config (GQA and ``head_dim`` aware).

    Raises :class:`UnsupportedModelError` for encoder-decoder models, for configs without
    attention heads, and for layers that are not softmax attention (linear attention, SSM).
    """
    config = _text_config(model_or_config)
    if getattr(config, "is_encoder_decoder", False):
        raise UnsupportedModelError(
            f"model type {getattr(config, 'model_type', '?')!r} is encoder-decoder; a prefix "
            "cache is supported for decoder-only causal LMs only"
        )
    heads = getattr(config, "num_attention_heads", None)
    layers = getattr(config, "num_hidden_layers", None)
    hidden = getattr(config, "hidden_size", None)
    if not heads or not layers or not hidden:
        raise UnsupportedModelError(
            f"model config {type(config).__name__} has num_attention_heads={heads!r}, "
            f"num_hidden_layers={layers!r}, hidden_size={hidden!r}; expected a decoder-only "
            "transformer with softmax attention layers"
        )
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    layer_types = getattr(config, "layer_types", None) or ["full_attention"] * layers
    unsupported = sorted({t for t in layer_types if t not in _ATTENTION_LAYER_TYPES})
    if unsupported:
        raise UnsupportedModelError(
            f"model has layer types {unsupported}; a prefix cache needs softmax attention in "
            f"every layer (supported: {sorted(_ATTENTION_LAYER_TYPES)})"
        )
    return [LayerShape(int(kv_heads), int(head_dim)) for _ in range(layers)]


def _rope_settings(config: Any) -> dict[str, Any]:
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    settings = {k: v for k, v in dict(rope).items() if isinstance(v, (int, float, str, bool))}
    theta = getattr(config, "rope_theta", None)
    if theta is not None:
        settings.setdefault("rope_theta", theta)
    return settings


def model_fingerprint(model_or_config: Any) -> str:
    """SHA-256 over the config fields a cache depends on (architecture, shapes, RoPE, vocab)."""
    config = _text_config(model_or_config)
    fields = {
        "model_type": getattr(config, "model_type", None),
        "vocab_size": getattr(config, "vocab_size", None),
        "hidden_size": getattr(config, "hidden_size", None),
        "num_attention_heads": getattr(config, "num_attention_heads", None),
        "layer_shapes": [asdict(s) for s in layer_shapes(config)],
        "rope": _rope_settings(config),
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


WEIGHT_SAMPLES = 64
"""Elements sampled per parameter by :func:`weights_fingerprint`."""

WEIGHTS_RTOL = 2.0**-7
"""Relative tolerance of :meth:`WeightsFingerprint.mismatch`: twice bfloat16's largest rounding
error (2^-8 relative), sixteen times float16's (2^-11)."""

WEIGHTS_ATOL = 2.0**-20
"""Absolute tolerance of :meth:`WeightsFingerprint.mismatch`, for weights near zero, which
float16 stores as subnormals or flushes to zero (error at most 2^-25)."""


@dataclass(frozen=True, eq=False)
class WeightsFingerprint:
    """Which weights a cache was trained against (built by :func:`weights_fingerprint`).

    ``layout`` is the SHA-256 of the parameter names and shapes; ``sample`` (float32, CPU) holds
    up to :data:`WEIGHT_SAMPLES` evenly spaced elements of every parameter, in name order.
    """

    layout: str
    sample: torch.Tensor

    def mismatch(self, other: WeightsFingerprint) -> str | None:
        """Why ``other`` is not the same checkpoint, or ``None`` when it is.

        The same checkpoint means the same parameter names and shapes and every sampled weight
        within ``WEIGHTS_RTOL`` relative (plus ``WEIGHTS_ATOL``) of this one's. Samples are
        compared with a tolerance, not hashed: a cast to float16 moves about one sample in
        twenty across a bfloat16 rounding boundary, so no hash of rounded values survives it.
        """
        if self.layout != other.layout or self.sample.shape != other.sample.shape:
            return "parameter names or shapes differ"
        close = torch.isclose(
            other.sample, self.sample, rtol=WEIGHTS_RTOL, atol=WEIGHTS_ATOL, equal_nan=True
        )
        if bool(close.all()):
            return None
        differing = int((~close).sum())
        return (
            f"{differing} of {close.numel()} sampled weights differ by more than "
            f"{WEIGHTS_RTOL:.2g} relative"
        )


def weights_fingerprint(model: Any) -> WeightsFingerprint:
    """A cheap fingerprint of ``model``'s weights: parameter names and shapes, and 64 evenly
    spaced elements of every parameter.

    Reading 64 elements per tensor keeps this cheap for any model size, and two checkpoints of
    one architecture almost surely differ somewhere among them. The same checkpoint matches
    itself (:meth:`WeightsFingerprint.mismatch`) on any device and in float32, bfloat16 or
    float16 (the tolerances cover their rounding), unless a sampled weight overflows float16;
    a quantised copy (other parameter shapes or dtypes) does not match.
    """
    names, samples = [], []
    for name, parameter in sorted(model.named_parameters(), key=lambda item: item[0]):
        flat = parameter.detach().reshape(-1)
        count = min(WEIGHT_SAMPLES, flat.numel())
        # Integer positions: the same elements on every platform, at any tensor size.
        index = torch.arange(count) * (flat.numel() - 1) // max(count - 1, 1)
        samples.append(flat[index.to(flat.device)].float().cpu())
        names.append(f"{name}:{list(parameter.shape)}")
    layout = hashlib.sha256(";".join(names).encode()).hexdigest()
    return WeightsFingerprint(layout, torch.cat(samples) if samples else torch.zeros(0))


def _rotary_inv_freq(model: Any, head_dim: int) -> torch.Tensor:
    """The model's RoPE inverse frequencies (found on its rotary embedding module)."""
    for module in model.modules():
        inv_freq = getattr(module, "inv_freq", None)
        if isinstance(inv_freq, torch.Tensor) and inv_freq.numel() * 2 == head_dim:
            return inv_freq.detach().float().cpu().clone()
    config = _text_config(model)
    theta = _rope_settings(config).get("rope_theta", 10000.0)
    return 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)


def rotate_keys(keys: torch.Tensor, shift: int, inv_freq: torch.Tensor) -> torch.Tensor:
    """Apply the RoPE rotation for ``shift`` extra positions to keys ``[..., head_dim]``.

    Uses Llama's half-split convention (``rotate_half``). Because rotations compose,
    ``R(shift) R(p) k = R(p + shift) k`` exactly: a key rotated for position ``p`` becomes the key
    rotated for ``p + shift``. NaN in ``keys`` propagates (a rotation is elementwise arithmetic);
    ``inv_freq`` must be finite.
    """
    check_tensor("keys", keys)
    check_floating("keys", keys)
    if isinstance(shift, bool) or not isinstance(shift, int):
        raise TypeError(f"shift must be an int (positions), got {type(shift).__name__} ({shift!r})")
    head_dim = keys.shape[-1] if keys.dim() else 0
    if head_dim % 2 or head_dim == 0:
        raise ValueError(
            f"keys must end in an even, non-zero head_dim (RoPE rotates pairs), got shape "
            f"{tuple(keys.shape)}"
        )
    check_floating("inv_freq", inv_freq)
    if tuple(inv_freq.shape) != (head_dim // 2,):
        raise ValueError(
            f"inv_freq must have shape ({head_dim // 2},) for head_dim {head_dim}, got "
            f"{tuple(inv_freq.shape)}"
        )
    check_finite("inv_freq", inv_freq)
    if shift == 0:
        return keys
    angles = shift * inv_freq.to(device=keys.device, dtype=torch.float64)
    cos = torch.cat([angles.cos(), angles.cos()]).to(keys.dtype)
    sin = torch.cat([angles.sin(), angles.sin()]).to(keys.dtype)
    half = keys.shape[-1] // 2
    rotated_half = torch.cat([-keys[..., half:], keys[..., :half]], dim=-1)
    return keys * cos + rotated_half * sin


class ReasonCache(nn.Module):
    """m trainable key/value slots per layer, fp32 masters, for one model architecture."""

    def __init__(self, model: Any, config: ReasonCacheConfig | None = None) -> None:
        super().__init__()
        self.config = config or ReasonCacheConfig()
        self.shapes = layer_shapes(model)
        self.fingerprint = model_fingerprint(model)
        self.weights_fingerprint = weights_fingerprint(model)
        self.rope = _rope_settings(_text_config(model))
        self.init_method = self.config.init
        # Keys initialised from real KV carry rotations for positions 0..m-1, so queries must start
        # at position m; recorded so a loader and compose() know the geometry.
        self.position_offset = self.config.num_slots
        self.register_buffer(
            "inv_freq", _rotary_inv_freq(model, self.shapes[0].head_dim), persistent=False
        )
        m, frozen = self.config.num_slots, self.config.frozen_slots
        self.frozen_keys = nn.ParameterList()
        self.frozen_values = nn.ParameterList()
        self.keys = nn.ParameterList()
        self.values = nn.ParameterList()
        for shape in self.shapes:
            for store, count, trainable in (
                (self.frozen_keys, frozen, False),
                (self.frozen_values, frozen, False),
                (self.keys, m - frozen, True),
                (self.values, m - frozen, True),
            ):
                tensor = torch.zeros(shape.num_kv_heads, count, shape.head_dim)
                store.append(nn.Parameter(tensor, requires_grad=trainable))
        if self.config.init == "random":
            self.reset_random(self.config.init_std)
        self.reparam: nn.Module | None = None
        if self.config.reparam_hidden > 0:
            self._build_reparam(self.config.reparam_hidden)

    @property
    def num_slots(self) -> int:
        return self.config.num_slots

    @property
    def num_layers(self) -> int:
        return len(self.shapes)

    def _build_reparam(self, hidden: int) -> None:
        """Li & Liang reparameterisation: P = P_0 + MLP(E), E of shape [m_trainable, hidden].

        The raw slots P_0 are frozen and the MLP's last layer starts at zero, so switching the
        reparameterisation on does not move the initialisation (random, zeros or real KV).
        """
        trainable = self.num_slots - self.config.frozen_slots
        out = sum(2 * s.num_kv_heads * s.head_dim for s in self.shapes)
        mlp = nn.Sequential(nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, out))
        nn.init.zeros_(mlp[2].weight)
        nn.init.zeros_(mlp[2].bias)
        self.reparam = mlp
        self.reparam_embedding = nn.Parameter(torch.randn(trainable, hidden))
        for store in (self.keys, self.values):
            for p in store:
                p.requires_grad_(False)

    def _trainable_kv(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        raw = [(self.keys[i], self.values[i]) for i in range(self.num_layers)]
        if self.reparam is None:
            return raw
        flat = self.reparam(self.reparam_embedding)
        out, start = [], 0
        for (raw_k, raw_v), shape in zip(raw, self.shapes, strict=True):
            width = shape.num_kv_heads * shape.head_dim
            pair = []
            for base in (raw_k, raw_v):
                chunk = flat[:, start : start + width]
                start += width
                delta = chunk.reshape(-1, shape.num_kv_heads, shape.head_dim).permute(1, 0, 2)
                pair.append(base + delta)
            out.append((pair[0], pair[1]))
        return out

    def key_values(
        self,
        batch_size: int = 1,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Fresh per-layer ``(K, V)`` of shape ``[batch, H_kv, m, head_dim]`` in ``dtype``.

        Differentiable with respect to the master parameters; the batch axis is an ``expand``
        view, so nothing is copied per row.
        """
        check_int_in_range("batch_size", batch_size, 1)
        result = []
        for layer, (keys, values) in enumerate(self._trainable_kv()):
            full_k = torch.cat([self.frozen_keys[layer], keys], dim=1)
            full_v = torch.cat([self.frozen_values[layer], values], dim=1)
            pair = []
            for tensor in (full_k, full_v):
                tensor = tensor.to(device=device or tensor.device, dtype=dtype or tensor.dtype)
                pair.append(tensor.unsqueeze(0).expand(batch_size, *tensor.shape))
            result.append((pair[0], pair[1]))
        return result

    @torch.no_grad()
    def reset_random(self, std: float) -> None:
        for store in (self.keys, self.values):
            for p in store:
                p.normal_(0.0, std)

    @torch.no_grad()
    def load_key_values(self, key_values: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Set all m slots from per-layer ``(K, V)`` shaped ``[H_kv, m, head_dim]`` (or batch 1)."""
        if len(key_values) != self.num_layers:
            raise CacheMismatchError(
                f"key_values has {len(key_values)} layers, this cache has {self.num_layers}"
            )
        frozen = self.config.frozen_slots
        for layer, (k, v) in enumerate(key_values):
            k = k[0] if k.dim() == 4 else k
            v = v[0] if v.dim() == 4 else v
            shape = self.shapes[layer]
            expected = (shape.num_kv_heads, self.num_slots, shape.head_dim)
            for name, tensor in (("keys", k), ("values", v)):
                if tuple(tensor.shape) != expected:
                    raise CacheMismatchError(
                        f"layer {layer} {name} have shape {tuple(tensor.shape)}, expected {expected}"
                    )
            self.frozen_keys[layer].copy_(k[:, :frozen].float())
            self.frozen_values[layer].copy_(v[:, :frozen].float())
            self.keys[layer].copy_(k[:, frozen:].float())
            self.values[layer].copy_(v[:, frozen:].float())
        if self.reparam is not None:
            self._build_reparam(self.config.reparam_hidden)

    @torch.no_grad()
    def materialize(self) -> ReasonCache:
        """A copy with raw KV parameters (the MLP reparameterisation evaluated once)."""
        config = ReasonCacheConfig(**{**asdict(self.config), "reparam_hidden": 0, "init": "zeros"})
        clone = ReasonCache.__new__(ReasonCache)
        nn.Module.__init__(clone)
        clone.config = config
        clone.shapes = list(self.shapes)
        clone.fingerprint = self.fingerprint
        clone.weights_fingerprint = self.weights_fingerprint
        clone.rope = dict(self.rope)
        clone.init_method = self.init_method
        clone.position_offset = self.position_offset
        clone.register_buffer("inv_freq", self.inv_freq.clone(), persistent=False)
        clone.reparam = None
        clone.frozen_keys, clone.frozen_values = nn.ParameterList(), nn.ParameterList()
        clone.keys, clone.values = nn.ParameterList(), nn.ParameterList()
        for layer, (k, v) in enumerate(self._trainable_kv()):
            clone.frozen_keys.append(
                nn.Parameter(self.frozen_keys[layer].clone(), requires_grad=False)
            )
            clone.frozen_values.append(
                nn.Parameter(self.frozen_values[layer].clone(), requires_grad=False)
            )
            clone.keys.append(nn.Parameter(k.detach().clone().float()))
            clone.values.append(nn.Parameter(v.detach().clone().float()))
        return clone.to(self.inv_freq.device)

    def num_trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    # ----------------------------------------------------------------------- persistence

    def manifest(self) -> dict[str, Any]:
        return {
            "num_slots": self.num_slots,
            "frozen_slots": self.config.frozen_slots,
            "master_dtype": "float32",
            "layer_shapes": [asdict(s) for s in self.shapes],
            "rope": self.rope,
            "position_offset": self.position_offset,
            "model_fingerprint": self.fingerprint,
            "weights_layout": self.weights_fingerprint.layout,
            "init": self.init_method,
            "materialized_from_reparam": self.config.reparam_hidden > 0,
        }

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write ``cache.safetensors`` (materialised KV, fp32) and a JSON manifest."""
        tensors: dict[str, torch.Tensor] = {
            "inv_freq": self.inv_freq,
            "weights_sample": self.weights_fingerprint.sample,
        }
        for layer, (k, v) in enumerate(self.key_values(batch_size=1)):
            tensors[f"layers.{layer}.keys"] = k[0].detach().float()
            tensors[f"layers.{layer}.values"] = v[0].detach().float()
        return save_artifact(directory, tensors, self.manifest(), kind=ARTIFACT_KIND)

    @classmethod
    def from_pretrained(
        cls, directory: str | os.PathLike, model: Any, *, check_weights: bool = True
    ) -> ReasonCache:
        """Load a saved cache for ``model``; raises :class:`CacheMismatchError` on a mismatch.

        Refused: another architecture (layers, KV heads, head_dim, vocabulary, hidden size, RoPE
        settings) and, with ``check_weights`` (the default), another checkpoint of the same
        architecture (:func:`weights_fingerprint`; the same checkpoint on another device or in
        float32, bfloat16 or float16 is accepted). A cache is trained against one frozen
        model's weights, so it is meaningless for another's; pass ``check_weights=False`` only
        to reuse a cache deliberately, e.g. on a fine-tuned copy of the model it was built for.
        A cache saved without a weights fingerprint (by reasoncache 0.1.0) loads with a warning.
        """
        try:
            tensors, manifest = load_artifact(directory, kind=ARTIFACT_KIND)
        except ArtifactError as err:
            raise CacheMismatchError(str(err)) from err
        shapes = layer_shapes(model)
        saved = [LayerShape(**s) for s in manifest["layer_shapes"]]
        if saved != shapes:
            raise CacheMismatchError(
                f"cache at {str(directory)!r} was built for {len(saved)} layers with shapes "
                f"{[(s.num_kv_heads, s.head_dim) for s in saved]} (H_kv, head_dim); the model has "
                f"{len(shapes)} layers with {[(s.num_kv_heads, s.head_dim) for s in shapes]}"
            )
        fingerprint = model_fingerprint(model)
        if manifest["model_fingerprint"] != fingerprint:
            raise CacheMismatchError(
                f"cache at {str(directory)!r} has model fingerprint "
                f"{manifest['model_fingerprint'][:12]}…, the model's is {fingerprint[:12]}… "
                "(vocabulary, hidden size or RoPE settings differ)"
            )
        layout, sample = manifest.get("weights_layout"), tensors.get("weights_sample")
        saved_weights = (
            WeightsFingerprint(layout, sample.float().reshape(-1))
            if isinstance(layout, str) and sample is not None
            else None
        )
        if check_weights and saved_weights is None:
            warnings.warn(
                f"cache at {str(directory)!r} was saved without a weights fingerprint (an older "
                "reasoncache); only the architecture was checked",
                stacklevel=2,
            )
        elif check_weights:
            reason = saved_weights.mismatch(weights_fingerprint(model))
            if reason is not None:
                raise CacheMismatchError(
                    f"cache at {str(directory)!r} was trained against other weights ({reason}): "
                    "same architecture, another checkpoint. Pass check_weights=False to load "
                    "it anyway."
                )
        config = ReasonCacheConfig(
            num_slots=manifest["num_slots"], frozen_slots=manifest["frozen_slots"], init="zeros"
        )
        cache = cls(model, config)
        if saved_weights is not None:
            # The cache stays tied to the weights it was trained against, even when loaded into
            # another checkpoint with check_weights=False (compose then refuses to mix them).
            cache.weights_fingerprint = saved_weights
        cache.init_method = manifest["init"]
        cache.position_offset = manifest["position_offset"]
        cache.load_key_values(
            [
                (tensors[f"layers.{i}.keys"], tensors[f"layers.{i}.values"])
                for i in range(len(shapes))
            ]
        )
        return cache


def compose(caches: Sequence[ReasonCache]) -> ReasonCache:
    """Concatenate caches along the slot axis, re-rotating keys for their new offsets.

    In the composite (``M = sum m_c`` slots) queries start at position ``M`` instead of ``m_c``,
    so each cache's keys are rotated by ``M - m_c`` positions: every cached key keeps exactly the
    query distance it had when that cache was used alone. This is exact for RoPE with the
    half-split convention and unscaled cos/sin; what is not recovered is attention *between*
    the caches (each was built without seeing the others). Only the first cache's frozen
    slots stay frozen; the others become trainable.
    """
    if len(caches) == 0:
        raise ValueError("caches must hold at least one ReasonCache, got an empty sequence")
    first = caches[0]
    for index, cache in enumerate(caches):
        if not isinstance(cache, ReasonCache):
            raise TypeError(f"caches[{index}] must be a ReasonCache, got {type(cache).__name__}")
        if (
            cache.fingerprint != first.fingerprint
            or cache.weights_fingerprint.mismatch(first.weights_fingerprint) is not None
            or cache.shapes != first.shapes
        ):
            raise CacheMismatchError(
                f"caches[{index}] was built for a different model than caches[0] "
                "(architecture or weights fingerprints differ)"
            )
    total = sum(c.num_slots for c in caches)
    per_layer: list[list[tuple[torch.Tensor, torch.Tensor]]] = [[] for _ in first.shapes]
    with torch.no_grad():
        for cache in caches:
            shift = total - cache.num_slots
            for layer, (k, v) in enumerate(cache.key_values(batch_size=1)):
                per_layer[layer].append((rotate_keys(k[0].float(), shift, cache.inv_freq), v[0]))
    composite = first.materialize()
    composite.config = ReasonCacheConfig(
        num_slots=total, frozen_slots=first.config.frozen_slots, init="zeros"
    )
    composite.position_offset = total
    composite.init_method = "compose"
    frozen = first.config.frozen_slots
    for layer in range(len(first.shapes)):
        k = torch.cat([pair[0] for pair in per_layer[layer]], dim=1)
        v = torch.cat([pair[1].float() for pair in per_layer[layer]], dim=1)
        composite.frozen_keys[layer] = nn.Parameter(k[:, :frozen].clone(), requires_grad=False)
        composite.frozen_values[layer] = nn.Parameter(v[:, :frozen].clone(), requires_grad=False)
        composite.keys[layer] = nn.Parameter(k[:, frozen:].clone())
        composite.values[layer] = nn.Parameter(v[:, frozen:].clone())
    return composite
