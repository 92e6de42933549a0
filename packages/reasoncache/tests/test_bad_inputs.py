"""reasoncache's public functions under kernelkit's bad-input harness (kernelkit.testing_inputs)."""

import functools

import reasoncache
import torch
from hypothesis import strategies as st

from kernelkit.testing import (
    CountArg,
    IdsArg,
    PublicFunction,
    TensorArg,
    assert_handles_bad_inputs,
    tensors,
    tiny_causal_lm,
    uncovered_names,
)


@functools.cache
def model():
    # Smaller than tiny_causal_lm's default, so the ~300 calls stay within a few seconds.
    lm, _ = tiny_causal_lm(
        hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2
    )
    return lm


@functools.cache
def cache():
    torch.manual_seed(0)
    return reasoncache.ReasonCache(model(), reasoncache.ReasonCacheConfig(num_slots=2))


VOCAB = 384  # ByT5's byte vocabulary, as tiny_causal_lm builds it
IDS = IdsArg(high=VOCAB, ndim=2)
MASK = IdsArg(high=2, ndim=2, optional=True, float_ok=True)
TEXT = IdsArg(high=VOCAB, ndim=(1, 2))


@st.composite
def token_batches(draw, batch=None, min_length=1):
    rows = draw(st.integers(1, 2)) if batch is None else batch
    length = draw(st.integers(min_length, 5))
    ids = draw(tensors(shape=(rows, length), dtype=torch.int64, min_value=0, max_value=VOCAB - 1))
    return {"input_ids": ids, "attention_mask": torch.ones(rows, length, dtype=torch.long)}


@st.composite
def text_ids(draw, min_size=2):
    length = draw(st.integers(min_size, 5))
    return draw(tensors(shape=(length,), dtype=torch.int64, min_value=0, max_value=VOCAB - 1))


@st.composite
def rotations(draw):
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), 4)
    return {
        "keys": draw(tensors(shape=shape)),
        "shift": draw(st.integers(-3, 3)),
        "inv_freq": torch.tensor([1.0, 0.01]),
    }


FUNCTIONS = [
    PublicFunction(
        "forward_with_cache",
        lambda input_ids, attention_mask: (
            reasoncache.forward_with_cache(model(), cache(), input_ids, attention_mask).logits
        ),
        token_batches(),
        {"input_ids": IDS, "attention_mask": MASK},
    ),
    PublicFunction(
        "generate_with_cache",
        lambda input_ids, attention_mask: reasoncache.generate_with_cache(
            model(), cache(), input_ids, attention_mask, max_new_tokens=1, do_sample=False
        ),
        token_batches(),
        {"input_ids": IDS, "attention_mask": MASK},
        examples=1,
    ),
    PublicFunction(
        "extend_attention_mask",
        reasoncache.extend_attention_mask,
        token_batches().map(lambda kw: {**kw, "num_slots": 2}),
        {
            "input_ids": IdsArg(high=None, ndim=2),
            "attention_mask": MASK,
            "num_slots": CountArg(low=0),
        },
    ),
    PublicFunction(
        "rotate_keys",
        reasoncache.rotate_keys,
        rotations(),
        {
            "keys": TensorArg(
                dtypes=(torch.float16, torch.bfloat16, torch.float32, torch.float64),
                min_ndim=1,
                nan="propagate",
            ),
            "inv_freq": TensorArg(ndim=1),
        },
    ),
    PublicFunction(
        "real_key_values",
        lambda input_ids: reasoncache.real_key_values(model(), input_ids),
        token_batches(batch=1).map(lambda kw: {"input_ids": kw["input_ids"]}),
        {"input_ids": IDS},
    ),
    PublicFunction(
        "init_from_text",
        lambda text_ids: reasoncache.init_from_text(cache(), model(), text_ids).key_values(),
        text_ids().map(lambda ids: {"text_ids": ids}),
        {"text_ids": TEXT},
    ),
    PublicFunction(
        "init_from_questions",
        lambda question_ids: reasoncache.init_from_questions(
            cache(), model(), [question_ids]
        ).key_values(),
        text_ids().map(lambda ids: {"question_ids": ids}),
        {"question_ids": IdsArg(high=VOCAB, ndim=1)},
    ),
    PublicFunction(
        "cache_from_text",
        lambda text_ids, frozen_slots: reasoncache.cache_from_text(
            model(), text_ids, frozen_slots=frozen_slots
        ).key_values(),
        text_ids().map(lambda ids: {"text_ids": ids, "frozen_slots": 1}),
        {
            "text_ids": TEXT,
            "frozen_slots": CountArg(low=0, high=lambda kw: kw["text_ids"].numel() - 1),
        },
    ),
    PublicFunction(
        "ReasonCache.key_values",
        lambda batch_size: cache().key_values(batch_size),
        st.builds(lambda: {"batch_size": 2}),
        {"batch_size": CountArg(low=1)},
    ),
    PublicFunction(
        "ReasonCacheConfig",
        reasoncache.ReasonCacheConfig,
        st.builds(
            lambda: {"num_slots": 4, "frozen_slots": 1, "init_std": 0.02, "reparam_hidden": 0}
        ),
        {
            "num_slots": CountArg(low=1),
            "frozen_slots": CountArg(low=0, high=lambda kw: kw["num_slots"] - 1),
            "reparam_hidden": CountArg(low=0),
        },
    ),
    PublicFunction(
        "CachedCausalLM.forward",
        lambda input_ids, attention_mask, labels: reasoncache.CachedCausalLM(model(), cache())(
            input_ids, attention_mask, labels
        )["loss"],
        token_batches(min_length=2).map(lambda kw: {**kw, "labels": kw["input_ids"].clone()}),
        {
            "input_ids": IDS,
            "attention_mask": MASK,
            "labels": IdsArg(high=VOCAB, low=-100, ndim=2, optional=True),
        },
    ),
    PublicFunction(
        "ICLMethod",
        lambda demonstration_ids: reasoncache.ICLMethod(model(), demonstration_ids).prefix_ids,
        text_ids().map(lambda ids: {"demonstration_ids": ids}),
        {"demonstration_ids": TEXT},
    ),
    PublicFunction(
        "evaluate",
        lambda input_ids, batch_size: reasoncache.evaluate(
            reasoncache.ModelMethod(model()),
            [
                {
                    "input_ids": input_ids.tolist()
                    if isinstance(input_ids, torch.Tensor)
                    else input_ids,
                    "labels": [1] * 3,
                }
            ],
            batch_size=batch_size,
            flop_queries=1,
        ),
        text_ids(min_size=3).map(lambda ids: {"input_ids": ids[:3], "batch_size": 4}),
        {"input_ids": IdsArg(high=VOCAB, ndim=1, empty=False), "batch_size": CountArg(low=1)},
        examples=1,
    ),
    PublicFunction(
        "match_lora_to_cache",
        lambda num_slots, frozen_slots: reasoncache.match_lora_to_cache(
            model(), num_slots, frozen_slots=frozen_slots
        ),
        st.builds(lambda: {"num_slots": 4, "frozen_slots": 1}),
        {
            "num_slots": CountArg(low=1),
            "frozen_slots": CountArg(low=0, high=lambda kw: kw["num_slots"] - 1),
        },
    ),
]

EXEMPT = {
    "CacheMethod": "wraps a model and a cache for evaluate; its logits go through forward_with_cache",
    "CacheMismatchError": "an exception class",
    "CacheTrainer": "a transformers Trainer subclass; tested in test_train",
    "EvalResult": "result dataclass of evaluate",
    "LayerShape": "dataclass of a layer's KV shape",
    "LoraMatch": "result dataclass of match_lora_to_cache",
    "ModelMethod": "wraps a model for evaluate (registered with it)",
    "TrainConfig": "configuration dataclass; validated in __post_init__",
    "UnsupportedModelError": "an exception class",
    "__version__": "a string",
    "attach": "takes a model and a cache (no tensors); calls then go through forward_with_cache",
    "cache_keyword": "takes a model; returns the name of its cache keyword",
    "compose": "takes ReasonCache objects; mismatches raise CacheMismatchError (test_cache)",
    "detach": "takes a model; undoes attach",
    "init_from_cache": "takes two ReasonCache objects; mismatches raise CacheMismatchError (test_cache)",
    "layer_shapes": "takes a model or config; unsupported ones raise UnsupportedModelError (test_cache)",
    "model_fingerprint": "takes a model or config; hashes its architecture",
    "train_cache": "trains through a transformers Trainer (seconds per call); batches go through forward_with_cache",
    "train_lora": "trains through a transformers Trainer (seconds per call); tested in test_baselines",
    "weights_fingerprint": "takes a model; hashes slices of its weights",
}


def test_bad_inputs(bad_input_table):
    bad_input_table("reasoncache", FUNCTIONS, assert_handles_bad_inputs(FUNCTIONS))


def test_every_public_name_is_registered_or_exempt():
    assert uncovered_names(reasoncache, FUNCTIONS, EXEMPT) == []
