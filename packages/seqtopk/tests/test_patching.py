import pytest
import seqtopk
import torch

from kernelkit.testing import assert_close, tiny_causal_lm

MODELS = {
    "olmoe": {"num_experts": 4},
    "qwen3_moe": {"num_experts": 4, "head_dim": 16, "moe_intermediate_size": 32},
    "mixtral": {"num_local_experts": 4},
    "qwen2_moe": {
        "num_experts": 4,
        "moe_intermediate_size": 32,
        "shared_expert_intermediate_size": 32,
    },
}


def build(model_type, top_k=2, **extra):
    model, tokenizer = tiny_causal_lm(
        model_type, num_experts_per_tok=top_k, **MODELS[model_type], **extra
    )
    return model, tokenizer


@pytest.mark.parametrize("model_type", list(MODELS))
@pytest.mark.parametrize("impl", ["eager", "batched_mm", "grouped_mm"])
def test_k1_min1_equals_unpatched(model_type, impl):
    model, tok = build(model_type, top_k=1)
    model.config._experts_implementation = impl
    batch = tok(["hello world", "hi"], return_tensors="pt", padding=True)
    with torch.no_grad():
        expected = model(**batch, output_router_logits=True)
        seqtopk.patch(model, k=1, min_per_token=1)
        actual = model(**batch, output_router_logits=True)
    assert_close(actual.logits, expected.logits, atol=1e-5, rtol=1e-5)
    assert_close(actual.aux_loss, expected.aux_loss)
    seqtopk.unpatch(model)
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, expected.logits)


@pytest.mark.parametrize("model_type", ["olmoe", "mixtral"])
def test_seqtopk_changes_routing_and_keeps_budget(model_type):
    model, tok = build(model_type, top_k=2)
    batch = tok(["a longer sentence here", "short"], return_tensors="pt", padding=True)
    seqtopk.patch(model, min_per_token=0)
    routing = model._seqtopk_routing
    with torch.no_grad():
        patched = model(**batch).logits
    for _probs, selected, valid in routing.records:
        assert torch.equal(selected.sum(dim=(1, 2)), valid.sum(-1) * 2)
        assert int(selected.sum(-1)[~valid].sum()) == 0
    seqtopk.unpatch(model)
    with torch.no_grad():
        assert not torch.allclose(model(**batch).logits, patched)


@pytest.mark.parametrize("mode", ["offline", "online"])
def test_left_and_right_padding_agree(mode):
    model, tok = build("olmoe", top_k=2)
    seqtopk.patch(model, mode=mode, min_per_token=0)
    texts = ["the cat sat on it", "dog"]
    outputs = {}
    for side in ("left", "right"):
        tok.padding_side = side
        batch = tok(texts, return_tensors="pt", padding=True)
        positions = (batch["attention_mask"].cumsum(-1) - 1).clamp_min(0)
        with torch.no_grad():
            logits = model(**batch, position_ids=positions).logits
        outputs[side] = [logits[i][batch["attention_mask"][i].bool()] for i in range(2)]
    for left, right in zip(outputs["left"], outputs["right"], strict=True):
        assert_close(left, right, atol=1e-5, rtol=1e-4)


def test_generate_online_matches_teacher_forced_online():
    model, tok = build("olmoe", top_k=2)
    seqtopk.patch(model, mode="online", min_per_token=0)
    batch = tok(["hello there", "hi"], return_tensors="pt", padding=True)
    generated = model.generate(**batch, max_new_tokens=5, do_sample=False)
    mask = torch.cat(
        [batch["attention_mask"], torch.ones(2, 5, dtype=batch["attention_mask"].dtype)], 1
    )
    positions = (mask.cumsum(-1) - 1).clamp_min(0)
    with torch.no_grad():
        logits = model(generated, attention_mask=mask, position_ids=positions).logits
    prompt = batch["input_ids"].shape[1]
    assert torch.equal(logits[:, prompt - 1 : -1].argmax(-1), generated[:, prompt:])
    used = [state.used for state in model._seqtopk_routing.states.values()]
    assert all(bool((u <= mask.sum(-1) * 2).all()) for u in used)


def test_generate_with_beams_runs_online():
    model, tok = build("qwen3_moe", top_k=2)
    seqtopk.patch(model, mode="online")
    batch = tok(["hello", "hi there"], return_tensors="pt", padding=True)
    out = model.generate(**batch, max_new_tokens=4, do_sample=False, num_beams=3)
    assert out.shape == (2, batch["input_ids"].shape[1] + 4)


def test_gradients_reach_router_and_only_selected_gates():
    model, tok = build("olmoe", top_k=2)
    model.train()
    seqtopk.patch(model, min_per_token=0)
    batch = tok(["hello world", "hi"], return_tensors="pt", padding=True)
    out = model(**batch, labels=batch["input_ids"])
    probs, selected, _ = model._seqtopk_routing.records[0]
    grad = torch.autograd.grad(out.loss, probs, retain_graph=True)[0]
    assert bool((grad[~selected] == 0).all())
    assert grad[selected].abs().sum() > 0
    out.loss.backward()
    router = model._seqtopk_routing.routers[0]
    assert router.weight.grad is not None and router.weight.grad.abs().sum() > 0


def test_aux_loss_uses_real_routing():
    model, tok = build("olmoe", top_k=2)
    batch = tok(["hello world", "hi"], return_tensors="pt", padding=True)
    with torch.no_grad():
        topk_out = model(**batch, labels=batch["input_ids"], output_router_logits=True)
    seqtopk.patch(model, min_per_token=0, max_per_token=4)
    with torch.no_grad():
        out = model(**batch, labels=batch["input_ids"], output_router_logits=True)
    expected = seqtopk.load_balancing_loss(model._seqtopk_routing.records)
    assert_close(out.aux_loss, expected)
    ce = out.loss - model.router_aux_loss_coef * out.aux_loss
    unpatched_ce = topk_out.loss - model.router_aux_loss_coef * topk_out.aux_loss
    assert not torch.allclose(ce, unpatched_ce)  # routing changed the language-model loss


def test_bad_models_and_arguments_raise():
    llama, _ = tiny_causal_lm("llama")
    with pytest.raises(ValueError, match="model_type='llama'"):
        seqtopk.patch(llama)
    model, _ = build("olmoe", top_k=2)
    with pytest.raises(ValueError, match="infeasible"):
        seqtopk.patch(model, min_per_token=3)
    with pytest.raises(ValueError, match="mode must be"):
        seqtopk.patch(model, mode="causal")
    seqtopk.patch(model)
    with pytest.raises(ValueError, match="already patched"):
        seqtopk.patch(model)
    with pytest.raises(ValueError, match="2-D attention_mask"):
        model(torch.ones(1, 3, dtype=torch.long), attention_mask=torch.ones(1, 1, 3, 3))
    other, _ = build("olmoe", top_k=2)
    other.model.layers[0].mlp.experts = model.model.layers[0].mlp.experts
    with pytest.raises(ValueError, match="shared with another patched model"):
        seqtopk.patch(other)
    seqtopk.unpatch(model)
    with pytest.raises(ValueError, match="not patched"):
        seqtopk.unpatch(model)
    seqtopk.patch(other)  # the shared experts module is free again


@pytest.mark.parametrize("model_type", list(MODELS))
@pytest.mark.parametrize("impl", ["eager", "batched_mm", "grouped_mm"])
@pytest.mark.parametrize("mode", ["offline", "online"])
def test_padding_free_dispatch_equals_padded_slots(model_type, impl, mode, monkeypatch):
    model, tok = build(model_type, top_k=2)
    model.config._experts_implementation = impl
    experts_class = type(model.model.layers[0].mlp.experts)
    implementation = experts_class.forward
    rows_seen = []

    def counting(self, hidden, index, weights):
        rows_seen.append(index.numel())
        return implementation(self, hidden, index, weights)

    monkeypatch.setattr(experts_class, "forward", counting)
    seqtopk.patch(model, mode=mode, min_per_token=0, max_per_token=4)
    routing = model._seqtopk_routing
    calls = []
    for experts in routing.experts:
        experts.register_forward_hook(lambda m, args, out: calls.append((m, args, out)))
    batch = tok(["a longer sentence here", "short"], return_tensors="pt", padding=True)
    with torch.no_grad():
        model(**batch)
    assert len(calls) == len(routing.records) == model.config.num_hidden_layers
    for (experts, args, out), (probs, selected, _valid), rows in zip(
        calls, routing.records, rows_seen, strict=True
    ):
        # Only the selected pairs were computed: no zero-weight slot reached the experts.
        assert rows == int(selected.sum())
        weights = seqtopk.routing_weights(probs, selected, renormalize=routing.renormalize)
        index, slot_weights = seqtopk.selection_to_indices(selected, weights, 4)
        padded = implementation(experts, args[0], index, slot_weights.to(args[0].dtype))
        assert_close(out, padded, atol=1e-6, rtol=1e-5)


def test_padding_free_dispatch_gradients_equal_padded_slots():
    model, _ = build("olmoe", top_k=2)
    seqtopk.patch(model, min_per_token=0, max_per_token=4)
    experts = model._seqtopk_routing.experts[0]
    gen = torch.Generator().manual_seed(0)
    hidden = torch.randn(6, model.config.hidden_size, generator=gen, requires_grad=True)
    probs = torch.softmax(torch.randn(1, 6, 4, generator=gen), -1).requires_grad_()
    selected = seqtopk.select_experts(probs.detach(), 2, None, 0, 4)
    weights = seqtopk.routing_weights(probs, selected).view(6, 4)
    model._seqtopk_routing.pending[0] = selected.view(6, 4)
    dense_index = torch.arange(4).expand(6, 4)
    free = experts(hidden, dense_index, weights)
    assert 0 not in model._seqtopk_routing.pending  # consumed
    grads_free = torch.autograd.grad(free.square().sum(), (hidden, probs), retain_graph=True)
    index, slot_weights = seqtopk.selection_to_indices(selected.view(6, 4), weights, 4)
    padded = type(experts).forward(experts, hidden, index, slot_weights)
    grads_padded = torch.autograd.grad(padded.square().sum(), (hidden, probs))
    assert_close(free, padded, atol=1e-6, rtol=1e-5)
    for a, b in zip(grads_free, grads_padded, strict=True):
        assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_per_token_sum_by_slot_equals_index_add():
    # The slot buffer (used off the CPU, where index_add_ is not deterministic) and index_add_
    # (the CPU path) give the same sums, including tokens with no pair.
    from seqtopk.patching import _sum_per_token

    gen = torch.Generator().manual_seed(2)
    selected = torch.rand(7, 5, generator=gen) < 0.4
    selected[3] = False
    token, _ = selected.nonzero(as_tuple=True)
    rows = torch.randn(token.numel(), 6, generator=gen, dtype=torch.float64)
    by_slot = _sum_per_token(rows, token, selected, 5, by_slot=True)
    assert_close(by_slot, _sum_per_token(rows, token, selected, 5, by_slot=False))
    assert_close(by_slot[0], rows[token == 0].sum(0))
    assert bool((by_slot[3] == 0).all())


def test_online_prompt_in_one_call_equals_prompt_fed_in_pieces():
    # A 40-position prompt spans several of the online pass's 16-token chunks; feeding it as
    # 25 positions and then one at a time through the generation cache routes each token on
    # the same prefix, so the logits agree.
    from transformers import DynamicCache

    model, _ = build("olmoe", top_k=2)
    seqtopk.patch(model, mode="online", min_per_token=0)
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(3, model.config.vocab_size, (2, 40), generator=gen)
    mask = torch.ones(2, 40, dtype=torch.long)
    mask[1, :6] = 0  # left padding
    positions = (mask.cumsum(-1) - 1).clamp_min(0)
    with torch.no_grad():
        whole = model(ids, attention_mask=mask, position_ids=positions).logits
        cache = DynamicCache()
        pieces = [
            model(
                ids[:, :25],
                attention_mask=mask[:, :25],
                position_ids=positions[:, :25],
                past_key_values=cache,
                use_cache=True,
            ).logits
        ]
        for t in range(25, 40):
            pieces.append(
                model(
                    ids[:, t : t + 1],
                    attention_mask=mask[:, : t + 1],
                    position_ids=positions[:, t : t + 1],
                    past_key_values=cache,
                    use_cache=True,
                ).logits
            )
    valid = mask.bool()
    assert_close(torch.cat(pieces, 1)[valid], whole[valid], atol=1e-4, rtol=1e-4)
    used = [state.used for state in model._seqtopk_routing.states.values()]
    assert all(bool((u <= mask.sum(-1) * 2).all()) for u in used)
