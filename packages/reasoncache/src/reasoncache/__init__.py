"""reasoncache: trained key-value caches that teach a frozen causal LM without weight updates."""

from importlib.metadata import version

from reasoncache.baselines import (
    CacheMethod,
    EvalResult,
    ICLMethod,
    LoraMatch,
    ModelMethod,
    evaluate,
    match_lora_to_cache,
    train_lora,
)
from reasoncache.cache import (
    CacheMismatchError,
    LayerShape,
    ReasonCache,
    ReasonCacheConfig,
    UnsupportedModelError,
    compose,
    layer_shapes,
    model_fingerprint,
    rotate_keys,
    weights_fingerprint,
)
from reasoncache.initialize import (
    cache_from_text,
    init_from_cache,
    init_from_questions,
    init_from_text,
)
from reasoncache.inject import (
    attach,
    cache_keyword,
    detach,
    extend_attention_mask,
    forward_with_cache,
    generate_with_cache,
    real_key_values,
)
from reasoncache.train import CachedCausalLM, CacheTrainer, TrainConfig, train_cache

__version__ = version("reasoncache")

__all__ = [
    "CacheMethod",
    "CacheMismatchError",
    "CacheTrainer",
    "CachedCausalLM",
    "EvalResult",
    "ICLMethod",
    "LayerShape",
    "LoraMatch",
    "ModelMethod",
    "ReasonCache",
    "ReasonCacheConfig",
    "TrainConfig",
    "UnsupportedModelError",
    "__version__",
    "attach",
    "cache_from_text",
    "cache_keyword",
    "compose",
    "detach",
    "evaluate",
    "extend_attention_mask",
    "forward_with_cache",
    "generate_with_cache",
    "init_from_cache",
    "init_from_questions",
    "init_from_text",
    "layer_shapes",
    "match_lora_to_cache",
    "model_fingerprint",
    "real_key_values",
    "rotate_keys",
    "train_cache",
    "train_lora",
    "weights_fingerprint",
]
