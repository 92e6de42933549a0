"""Equivalence with in-context text, immutability, gradients, persistence and bad inputs."""

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from reasoncache import (
    CacheMismatchError,
    ReasonCache,
    ReasonCacheConfig,
    UnsupportedModelError,
    attach,
    cache_from_text,
    compose,
    detach,
    forward_with_cache,
    generate_with_cache,
    init_from_cache,
    layer_shapes,
    rotate_keys,
    weights_fingerprint,
)

from kernelkit.testing import assert_close, tiny_causal_lm

DEMO = "k1=v1;k2=v2;k3=v3;"
QUERIES = ["k2=", "some longer k1=", "x"]


@pytest.fixture(scope="module")
def lm():
    return tiny_causal_lm()


def _ids(tokenizer, text):
    return torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"]])


def _in_context(model, tokenizer, prefix, queries):
    batch = tokenizer(
        [prefix + q for q in queries], return_tensors="pt", padding=True, add_special_tokens=False
    )
    positions = (batch.attention_mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        return model(**batch, position_ids=positions).logits, batch


def test_cache_from_text_equals_text_in_context_batched_left_padding(lm):
    model, tokenizer = lm
    cache = cache_from_text(model, _ids(tokenizer, DEMO))
    reference, _ = _in_context(model, tokenizer, DEMO, QUERIES)
    query = tokenizer(QUERIES, return_tensors="pt", padding=True, add_special_tokens=False)
    assert query.attention_mask.min() == 0, "the batch must exercise left padding"
    with torch.no_grad():
        logits = forward_with_cache(model, cache, query.input_ids, query.attention_mask).logits
    n, real = query.input_ids.shape[1], query.attention_mask.bool()
    assert_close(logits[real], reference[:, -n:][real], atol=1e-5, rtol=0)


def test_generate_with_cache_matches_generate_with_text(lm):
    model, tokenizer = lm
    cache = cache_from_text(model, _ids(tokenizer, DEMO))
    reference = tokenizer(
        [DEMO + q for q in QUERIES], return_tensors="pt", padding=True, add_special_tokens=False
    )
    query = tokenizer(QUERIES, return_tensors="pt", padding=True, add_special_tokens=False)
    expected = model.generate(**reference, max_new_tokens=10, do_sample=False)[:, -10:]
    got = generate_with_cache(
        model, cache, query.input_ids, query.attention_mask, max_new_tokens=10, do_sample=False
    )[:, -10:]
    assert torch.equal(got, expected)


def test_attach_routes_plain_calls_and_detach_restores(lm):
    model, tokenizer = lm
    cache = cache_from_text(model, _ids(tokenizer, DEMO))
    query = tokenizer(QUERIES, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.no_grad():
        plain = model(**query).logits
        direct = forward_with_cache(model, cache, query.input_ids, query.attention_mask).logits
    attach(model, cache)
    try:
        with torch.no_grad():
            attached = model(**query).logits
        generated = model.generate(**query, max_new_tokens=5, do_sample=False)
        expected = generate_with_cache(
            model, cache, query.input_ids, query.attention_mask, max_new_tokens=5, do_sample=False
        )
        with pytest.raises(RuntimeError, match="already attached"):
            attach(model, cache)
    finally:
        assert detach(model) is cache
    assert_close(attached, direct)
    assert torch.equal(generated, expected)
    with torch.no_grad():
        assert_close(model(**query).logits, plain)
    assert not torch.allclose(plain, direct)


def test_parameters_unchanged_by_forward_and_generate_and_grads_reach_only_cache(lm):
    model, tokenizer = lm
    cache = ReasonCache(model, ReasonCacheConfig(num_slots=3, init="random", init_std=0.5))
    snapshot = [p.detach().clone() for p in cache.parameters()]
    query = tokenizer(QUERIES, return_tensors="pt", padding=True, add_special_tokens=False)
    generate_with_cache(model, cache, query.input_ids, query.attention_mask, max_new_tokens=4)
    model.requires_grad_(False)
    out = forward_with_cache(
        model, cache, query.input_ids, query.attention_mask, labels=query.input_ids
    )
    out.loss.backward()
    for before, after in zip(snapshot, cache.parameters(), strict=True):
        assert torch.equal(before, after.detach())
    assert all(p.grad is None for p in model.parameters())
    grads = [p.grad for p in cache.parameters() if p.requires_grad]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)
    model.requires_grad_(True)


def test_frozen_sink_slot_gets_no_gradient(lm):
    model, tokenizer = lm
    cache = ReasonCache(model, ReasonCacheConfig(num_slots=4, frozen_slots=1))
    assert cache.num_trainable_parameters() == 2 * 2 * 3 * 2 * 16
    query = tokenizer(QUERIES[:1], return_tensors="pt", add_special_tokens=False)
    out = forward_with_cache(model, cache, query.input_ids, labels=query.input_ids)
    out.loss.backward()
    assert all(p.grad is None for p in cache.frozen_keys)


def test_reparameterised_cache_materialises_to_same_outputs(lm):
    model, tokenizer = lm
    cache = ReasonCache(model, ReasonCacheConfig(num_slots=3, reparam_hidden=8))
    with torch.no_grad():
        cache.reparam[2].weight.normal_(0, 0.1)
    raw = cache.materialize()
    assert raw.reparam is None
    query = tokenizer(QUERIES, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.no_grad():
        a = forward_with_cache(model, cache, query.input_ids, query.attention_mask).logits
        b = forward_with_cache(model, raw, query.input_ids, query.attention_mask).logits
    assert_close(a, b)


def test_save_load_round_trip_is_exact(lm, tmp_path):
    model, _ = lm
    cache = ReasonCache(model, ReasonCacheConfig(num_slots=5, frozen_slots=1, init="random"))
    cache.save_pretrained(tmp_path)
    loaded = ReasonCache.from_pretrained(tmp_path, model)
    assert loaded.num_slots == 5 and loaded.config.frozen_slots == 1
    for (k1, v1), (k2, v2) in zip(cache.key_values(), loaded.key_values(), strict=True):
        assert torch.equal(k1, k2) and torch.equal(v1, v2)


@pytest.mark.parametrize(
    ("override", "pattern"),
    [
        ({"num_hidden_layers": 3}, "layers"),
        ({"num_key_value_heads": 4}, "layers"),
        ({"head_dim": 8}, "layers"),
        ({"rope_theta": 500.0}, "fingerprint"),
    ],
)
def test_loading_into_a_mismatched_model_raises(lm, tmp_path, override, pattern):
    model, _ = lm
    ReasonCache(model, ReasonCacheConfig(num_slots=2)).save_pretrained(tmp_path)
    other, _ = tiny_causal_lm(**override)
    with pytest.raises(CacheMismatchError, match=pattern):
        ReasonCache.from_pretrained(tmp_path, other)


def test_a_cache_refuses_another_checkpoint_of_the_same_architecture(lm, tmp_path):
    model, _ = lm
    ReasonCache(model, ReasonCacheConfig(num_slots=2)).save_pretrained(tmp_path)
    other = copy.deepcopy(model)
    with torch.no_grad():
        next(other.parameters()).add_(0.01)  # another checkpoint: same config, other weights
    with pytest.raises(CacheMismatchError, match="trained against other weights"):
        ReasonCache.from_pretrained(tmp_path, other)
    loaded = ReasonCache.from_pretrained(tmp_path, other, check_weights=False)
    assert loaded.num_slots == 2
    # Loaded anyway, the cache still belongs to the weights it was trained against.
    with pytest.raises(CacheMismatchError, match="different model"):
        compose([loaded, ReasonCache(other, ReasonCacheConfig(num_slots=2))])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_the_same_checkpoint_is_accepted_in_any_dtype_and_after_a_round_trip(lm, tmp_path, dtype):
    from transformers import AutoModelForCausalLM

    model, _ = lm
    ReasonCache(model, ReasonCacheConfig(num_slots=2)).save_pretrained(tmp_path / "cache")
    model.save_pretrained(tmp_path / "model")  # safetensors
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "model", dtype=dtype)
    assert weights_fingerprint(reloaded).mismatch(weights_fingerprint(model)) is None
    assert ReasonCache.from_pretrained(tmp_path / "cache", reloaded).num_slots == 2


def test_weights_fingerprint_tolerates_rounding_and_not_a_changed_weight(lm):
    model, _ = lm
    reference = weights_fingerprint(model)
    # A float16 cast moves a sizeable share of samples across a bfloat16 rounding boundary,
    # so a hash of bfloat16-rounded samples (the first version) refused this model in float16.
    half = weights_fingerprint(copy.deepcopy(model).half())
    moved = half.sample.to(torch.bfloat16) != reference.sample.to(torch.bfloat16)
    assert bool(moved.any()) and half.mismatch(reference) is None
    changed = copy.deepcopy(model)
    with torch.no_grad():
        parameter = dict(changed.named_parameters())["lm_head.weight"]
        parameter.view(-1)[-1] *= 1.05  # the last element is always sampled
    assert weights_fingerprint(changed).mismatch(reference) == (
        f"1 of {reference.sample.numel()} sampled weights differ by more than 0.0078 relative"
    )
    smaller = copy.deepcopy(model)
    smaller.lm_head.weight = torch.nn.Parameter(smaller.lm_head.weight[:-1].detach().clone())
    assert weights_fingerprint(smaller).mismatch(reference) == "parameter names or shapes differ"


def test_a_cache_saved_without_a_weights_fingerprint_loads_with_a_warning(lm, tmp_path):
    import json

    model, _ = lm
    ReasonCache(model, ReasonCacheConfig(num_slots=2)).save_pretrained(tmp_path)
    manifest_path = tmp_path / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    del manifest["config"]["weights_layout"]
    manifest_path.write_text(json.dumps(manifest))
    with pytest.warns(UserWarning, match="without a weights fingerprint"):
        ReasonCache.from_pretrained(tmp_path, model)


def test_explicit_head_dim_and_gqa_shapes():
    model, _ = tiny_causal_lm(head_dim=24, num_key_value_heads=1)
    cache = ReasonCache(model, ReasonCacheConfig(num_slots=3))
    assert cache.keys[0].shape == (1, 3, 24)
    assert [(s.num_kv_heads, s.head_dim) for s in layer_shapes(model)] == [(1, 24), (1, 24)]


@settings(max_examples=10)
@given(shift=st.integers(0, 40), position=st.integers(0, 40))
def test_rotate_keys_composes_rotations(shift, position):
    generator = torch.Generator().manual_seed(position)
    raw = torch.randn(2, 1, 16, generator=generator, dtype=torch.float64)
    inv_freq = 1.0 / 10000.0 ** (torch.arange(0, 16, 2, dtype=torch.float64) / 16)
    direct = rotate_keys(raw, position + shift, inv_freq)
    stepwise = rotate_keys(rotate_keys(raw, position, inv_freq), shift, inv_freq)
    assert_close(stepwise, direct.to(stepwise.dtype), atol=1e-6, rtol=1e-6)


def test_compose_keeps_each_caches_query_distances(lm):
    model, tokenizer = lm
    first = cache_from_text(model, _ids(tokenizer, DEMO))
    second = cache_from_text(model, _ids(tokenizer, "zz"))
    composite = compose([first, second])
    assert composite.num_slots == first.num_slots + second.num_slots
    # Scores of a query at the composite's first position against the re-rotated keys equal the
    # scores of a query at each cache's own first position against its original keys.
    inv_freq = first.inv_freq.double()
    query = torch.randn(16, dtype=torch.float64)
    for cache, start in ((first, 0), (second, first.num_slots)):
        original = cache.key_values()[0][0][0, 0].double()
        moved = composite.key_values()[0][0][0, 0, start : start + cache.num_slots].double()
        q_alone = rotate_keys(query, cache.num_slots, inv_freq)
        q_composite = rotate_keys(query, composite.num_slots, inv_freq)
        assert_close(moved @ q_composite, original @ q_alone, atol=1e-4, rtol=1e-4)


def test_init_from_cache_copies_leading_slots(lm):
    model, tokenizer = lm
    source = cache_from_text(model, _ids(tokenizer, DEMO))
    target = init_from_cache(ReasonCache(model, ReasonCacheConfig(num_slots=4)), source)
    assert torch.equal(target.key_values()[1][0], source.key_values()[1][0][:, :, :4])


def test_bad_inputs_raise_clear_errors(lm):
    model, tokenizer = lm
    with pytest.raises(ValueError, match="num_slots"):
        ReasonCacheConfig(num_slots=0)
    with pytest.raises(ValueError, match="frozen_slots"):
        ReasonCacheConfig(num_slots=2, frozen_slots=2)
    cache = ReasonCache(model, ReasonCacheConfig(num_slots=2))
    query = tokenizer(QUERIES, return_tensors="pt", padding=True, add_special_tokens=False)
    short = query.attention_mask[:, 1:]
    with pytest.raises(ValueError, match="attention_mask has shape"):
        forward_with_cache(model, cache, query.input_ids, short)
    extended = torch.cat([torch.ones(3, 2, dtype=torch.long), query.attention_mask], 1)
    with pytest.raises(ValueError, match="attention_mask has shape"):
        generate_with_cache(model, cache, query.input_ids, extended)
    with pytest.raises(ValueError, match="pass neither"):
        forward_with_cache(model, cache, query.input_ids, cache=object())
    other, _ = tiny_causal_lm(num_hidden_layers=3)
    with pytest.raises(CacheMismatchError, match="fingerprint"):
        forward_with_cache(other, cache, query.input_ids)


def test_unsupported_models_are_refused():
    from transformers import T5Config

    with pytest.raises(UnsupportedModelError, match="encoder-decoder"):
        layer_shapes(T5Config(num_layers=1, d_model=8, num_heads=2, d_kv=4))
    model, _ = tiny_causal_lm(layer_types=["full_attention", "linear_attention"])
    with pytest.raises(UnsupportedModelError, match="linear_attention"):
        ReasonCache(model)


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_gradient_checkpointing_gives_the_same_loss_and_gradients(implementation):
    """Under checkpointing the prefix is concatenated inside attention (transformers drops cache
    objects in checkpointed layers): same loss, logits and cache gradients as without, left
    padding included; the backbone gets no gradient; plain calls are unchanged afterwards."""
    model, tokenizer = tiny_causal_lm()
    model.config._attn_implementation = implementation
    model.requires_grad_(False)
    cache = ReasonCache(model, ReasonCacheConfig(num_slots=3, init="random", init_std=0.5))
    batch = tokenizer(QUERIES, return_tensors="pt", padding=True, add_special_tokens=False)
    labels = batch.input_ids.masked_fill(batch.attention_mask == 0, -100)
    with torch.no_grad():
        plain_before = model(**batch).logits
    model.train()
    runs = []
    for checkpointing in (False, True):
        if checkpointing:
            model.gradient_checkpointing_enable()
        cache.zero_grad()
        out = forward_with_cache(model, cache, batch.input_ids, batch.attention_mask, labels=labels)
        out.loss.backward()
        runs.append((out.loss.detach(), out.logits.detach(), [p.grad.clone() for p in cache.keys]))
    assert model.config._attn_implementation == f"reasoncache_{implementation}"
    assert all(p.grad is None for p in model.parameters())
    (loss, logits, grads), (ck_loss, ck_logits, ck_grads) = runs
    assert_close(ck_loss, loss, atol=1e-6, rtol=0)
    real = batch.attention_mask.bool()
    assert_close(ck_logits[real], logits[real], atol=1e-5, rtol=0)
    for grad, ck_grad in zip(grads, ck_grads, strict=True):
        assert grad.abs().sum() > 0
        assert_close(ck_grad, grad, atol=1e-6, rtol=1e-5)
    model.gradient_checkpointing_disable()
    model.eval()
    with torch.no_grad():
        assert_close(model(**batch).logits, plain_before, atol=1e-6, rtol=0)
        # the prefix matters: without it the loss is different
        assert abs(model(**batch, labels=labels).loss - loss) > 1e-3


def test_gradient_checkpointing_with_unsupported_attention_is_refused():
    model, tokenizer = tiny_causal_lm()
    model.config._attn_implementation = "flex_attention"
    model.gradient_checkpointing_enable()
    model.train()
    cache = ReasonCache(model, ReasonCacheConfig(num_slots=2))
    query = tokenizer(QUERIES[:1], return_tensors="pt", add_special_tokens=False)
    with pytest.raises(RuntimeError, match="attn_implementation"):
        forward_with_cache(model, cache, query.input_ids)


@pytest.mark.parametrize(
    ("ids", "error", "match"),
    [
        (torch.tensor([[1, 2, 10_000]]), ValueError, r"token ids in \[0, 383\].*to 10000"),
        (torch.tensor([[1, -1]]), ValueError, r"token ids in \[0, 383\]"),
        (torch.tensor([[1.0, 2.0]]), TypeError, "integer token ids"),
        (torch.zeros(1, 0, dtype=torch.long), ValueError, "non-empty 2-D"),
        (torch.zeros(0, 3, dtype=torch.long), ValueError, "non-empty 2-D"),
    ],
)
def test_forward_with_cache_checks_token_ids(lm, ids, error, match):
    model, _ = lm
    cache = ReasonCache(model, ReasonCacheConfig(num_slots=2))
    with pytest.raises(error, match=match):
        forward_with_cache(model, cache, ids)


def test_mask_and_rotation_arguments_are_checked():
    from reasoncache import extend_attention_mask

    ids = torch.zeros(1, 3, dtype=torch.long)
    with pytest.raises(ValueError, match="num_slots must be >= 0, got -2"):
        extend_attention_mask(None, ids, -2)
    inv_freq = torch.ones(3)
    with pytest.raises(ValueError, match="even, non-zero head_dim"):
        rotate_keys(torch.ones(2, 5), 1, inv_freq)
    with pytest.raises(ValueError, match=r"inv_freq must have shape \(2,\)"):
        rotate_keys(torch.ones(2, 4), 1, inv_freq)
    with pytest.raises(TypeError, match="shift must be an int"):
        rotate_keys(torch.ones(2, 6), 1.5, inv_freq)
