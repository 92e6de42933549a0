"""The generic PSM, the Transformer-PSM, the affine operators, the tasks and training."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from psm import PSM, TransformerPSM, TransformerPSMConfig
from psm.affine import (
    affine_states,
    gla_steps,
    linear_attention_steps,
    mamba2_steps,
    mamba_steps,
    mlstm_output,
    mlstm_states,
    read_out,
    retnet_steps,
)
from psm.layers import batch_invariant_linear
from psm.tasks import mqar_batch, permutation_group, state_tracking_batch
from psm.training import TrainConfig, evaluate, load_checkpoint, train

F64 = torch.float64


def tiny_psm(chunk_size: int, partial_chunk: str = "infer") -> PSM:
    gen = torch.Generator().manual_seed(chunk_size)
    w = torch.randn(3, 6, generator=gen, dtype=F64)

    def encoder(chunk):  # (N, c, 3) -> (N, 3)
        return chunk.sum(1)

    def aggregator(older, newer):
        return torch.tanh(batch_invariant_linear(torch.cat([older, newer], -1), w)) + newer

    def inference(state, chunk):  # causal within the chunk: running sums only
        return chunk.cumsum(1) * state.unsqueeze(1)

    identity = torch.full((3,), 0.3, dtype=F64)
    return PSM(encoder, aggregator, inference, identity, chunk_size, partial_chunk=partial_chunk)


@settings(max_examples=20)
@given(length=st.integers(1, 60), chunk=st.integers(1, 5))
def test_generic_psm_parallel_streaming_and_token_streaming_agree(length, chunk):
    model = tiny_psm(chunk)
    tokens = torch.randn(2, length, 3, dtype=F64)
    parallel = model(tokens)
    streamed, states = model.forward_streaming(tokens)
    assert torch.equal(parallel, streamed)
    assert torch.equal(states, model.chunk_states(tokens)[0])
    stream = model.stream()
    stepped = torch.stack([stream.step(tokens[:, t]) for t in range(length)], 1)
    torch.testing.assert_close(stepped, parallel, rtol=1e-12, atol=1e-12)


def test_psm_is_causal():
    model = tiny_psm(3)
    tokens = torch.randn(1, 20, 3, dtype=F64)
    changed = tokens.clone()
    changed[:, 11] += 1.0
    a, b = model(tokens), model(changed)
    assert torch.equal(a[:, :11], b[:, :11])
    assert not torch.equal(a[:, 11:], b[:, 11:])


def test_chunk_size_not_dividing_needs_a_policy():
    model = tiny_psm(4, partial_chunk="error")
    with pytest.raises(ValueError, match=r"length 10, not a multiple of chunk_size=4"):
        model(torch.randn(1, 10, 3, dtype=F64))
    with pytest.raises(ValueError, match="partial_chunk must be one of"):
        tiny_psm(4, partial_chunk="pad")


def test_encoder_with_the_wrong_state_shape_is_rejected():
    model = tiny_psm(2)
    model.encoder = lambda chunk: chunk.flatten(1)
    with pytest.raises(ValueError, match=r"encoder must return states of shape"):
        model(torch.randn(1, 4, 3, dtype=F64))


@pytest.mark.parametrize(
    ("chunk_size", "aggregator", "inference"),
    [
        (1, "transformer", "transformer"),
        (3, "transformer", "transformer"),
        (1, "mlp", "aggregator"),
        (3, "mlp", "transformer"),
    ],
)
def test_transformer_psm_training_and_streaming_states_are_identical(
    chunk_size, aggregator, inference
):
    torch.manual_seed(0)
    config = TransformerPSMConfig(
        vocab_size=7,
        d_model=16,
        n_heads=2,
        chunk_size=chunk_size,
        aggregator=aggregator,
        inference=inference,
    )
    model = TransformerPSM(config).double().eval()
    ids = torch.randint(0, 7, (1, 23))
    with torch.no_grad():
        assert torch.equal(model.chunk_states(ids), model.chunk_states(ids, streaming=True))
        stream = model.stream()
        stepped = torch.stack([stream.step(ids[:, t]) for t in range(ids.shape[1])], 1)
        torch.testing.assert_close(stepped, model(ids), rtol=1e-10, atol=1e-10)
    assert stream.scanner.peak_live_states <= 1 + (23 // chunk_size).bit_length()
    generated = model.generate(ids[:, :5], max_new_tokens=4)
    assert generated.shape == (1, 9) and torch.equal(generated[:, :5], ids[:, :5])


def test_transformer_psm_rejects_out_of_vocabulary_ids():
    model = TransformerPSM(TransformerPSMConfig(vocab_size=5, d_model=8, n_heads=2))
    with pytest.raises(ValueError, match=r"input_ids must hold ids in \[0, 5\)"):
        model(torch.tensor([[0, 5]]))
    with pytest.raises(ValueError, match="divisible by n_heads"):
        TransformerPSMConfig(d_model=10, n_heads=4)
    with pytest.raises(ValueError, match="aggregator must be one of"):
        TransformerPSMConfig(aggregator="rnn")
    with pytest.raises(ValueError, match="inference must be one of"):
        TrainConfig(inference="mlp")
    with pytest.raises(ValueError, match="inference='aggregator' needs chunk_size=1"):
        TransformerPSMConfig(chunk_size=2, inference="aggregator")


def test_aggregator_inference_reads_out_the_inclusive_prefix():
    torch.manual_seed(0)
    config = TransformerPSMConfig(
        vocab_size=6, d_model=8, n_heads=2, aggregator="mlp", inference="aggregator"
    )
    model = TransformerPSM(config).double().eval()
    ids = torch.randint(0, 6, (2, 9))
    core = model.core
    with torch.no_grad():
        prefixes = model.chunk_states(ids)
        inclusive = core.aggregator(
            prefixes.flatten(0, 1), core.encoder(model.embedding(ids).reshape(-1, 1, 8))
        )
        expected = model.head(inclusive).reshape(2, 9, 6)
        torch.testing.assert_close(model(ids), expected, rtol=0, atol=0)
    # The encoder and aggregator are registered once: no duplicated parameters or state keys.
    names = list(model.state_dict())
    assert not any(name.startswith("core.inference") for name in names)


def _affine_cases(gen):
    b, t, h, dk, dv = 2, 29, 2, 3, 4

    def r(*shape):
        return torch.randn(*shape, generator=gen, dtype=F64)

    k, v = r(b, t, h, dk), r(b, t, h, dv)
    return {
        "linear_attention": linear_attention_steps(k, v),
        "retnet": retnet_steps(k, v, torch.rand(h, generator=gen, dtype=F64)),
        "gla": gla_steps(k, v, torch.nn.functional.logsigmoid(r(b, t, h, dk))),
        "mamba2": mamba2_steps(
            r(b, t, h, 5),
            torch.rand(b, t, h, generator=gen, dtype=F64),
            -torch.rand(h, generator=gen, dtype=F64),
            r(b, t, h, 3),
        ),
        "mamba": mamba_steps(
            r(b, t, 6),
            torch.rand(b, t, 6, generator=gen, dtype=F64),
            -torch.rand(6, 3, generator=gen, dtype=F64),
            r(b, t, 3),
        ),
    }


@pytest.mark.parametrize("name", ["linear_attention", "retnet", "gla", "mamba2", "mamba"])
def test_affine_operators_linear_scan_equals_tree_equals_loop(name):
    steps = _affine_cases(torch.Generator().manual_seed(0))[name]
    reference = affine_states(steps, method="loop")
    h0 = torch.randn_like(reference[:, 0])
    for method in ("linear_scan", "tree"):
        torch.testing.assert_close(
            affine_states(steps, method=method), reference, rtol=1e-10, atol=1e-10
        )
        torch.testing.assert_close(
            affine_states(steps, h0, method=method),
            affine_states(steps, h0, method="loop"),
            rtol=1e-10,
            atol=1e-10,
        )


def test_linear_attention_read_out_is_causal_attention_without_softmax():
    gen = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, 9, 1, 3, generator=gen, dtype=F64) for _ in range(3))
    out = read_out(affine_states(linear_attention_steps(k, v)), q)
    scores = torch.einsum("bthk,bshk->bhts", q, k).tril()
    torch.testing.assert_close(out, torch.einsum("bhts,bshv->bthv", scores, v))


def test_mlstm_paths_agree_even_with_large_input_gates():
    gen = torch.Generator().manual_seed(2)
    b, t, h, d = 2, 31, 2, 4
    q, k, v = (torch.randn(b, t, h, d, generator=gen, dtype=F64) for _ in range(3))
    input_gate = torch.randn(b, t, h, generator=gen, dtype=F64) * 30  # exp(90) would overflow fp32
    forget_gate = torch.randn(b, t, h, generator=gen, dtype=F64) * 3
    reference = mlstm_output(mlstm_states(k, v, input_gate, forget_gate, method="loop"), q)
    assert torch.isfinite(reference).all()
    for method in ("linear_scan", "tree"):
        out = mlstm_output(mlstm_states(k, v, input_gate, forget_gate, method=method), q)
        torch.testing.assert_close(out, reference, rtol=1e-9, atol=1e-9)


def test_affine_inputs_are_checked():
    with pytest.raises(ValueError, match="gamma must have shape"):
        retnet_steps(torch.randn(1, 2, 3, 4), torch.randn(1, 2, 3, 4), torch.rand(2))
    with pytest.raises(ValueError, match="method must be one of"):
        affine_states(
            linear_attention_steps(torch.randn(1, 2, 1, 2), torch.randn(1, 2, 1, 2)), method="fast"
        )


def test_state_tracking_targets_are_running_products():
    group = permutation_group("S5")
    inputs, targets = state_tracking_batch("S5", 4, 12, torch.Generator().manual_seed(0))
    for row in range(4):
        perm = tuple(range(5))
        for t in range(12):
            step = group.elements[int(inputs[row, t])]
            perm = tuple(step[perm[x]] for x in range(5))
            assert group.elements[int(targets[row, t])] == perm
    assert permutation_group("A5").order == 60 and permutation_group("S3").order == 6


def test_mqar_queries_ask_for_earlier_values():
    inputs, targets = mqar_batch(3, 40, 5, 32, torch.Generator().manual_seed(0))
    for row in range(3):
        pairs = {int(inputs[row, i]): int(inputs[row, i + 1]) for i in range(0, 10, 2)}
        queried = (targets[row] != -100).nonzero().flatten()
        assert len(queried) == 5
        for pos in queried:
            assert pairs[int(inputs[row, pos])] == int(targets[row, pos])
    with pytest.raises(ValueError, match="length must be >= 15"):
        mqar_batch(1, 10, 5, 32, torch.Generator())


@pytest.mark.slow
@pytest.mark.parametrize(
    "overrides",
    [
        {"model": "psm"},
        {"model": "psm", "aggregator": "mlp", "inference": "aggregator"},
        {"model": "transformer"},
        {"model": "rnn"},
    ],
)
def test_training_resumes_to_the_same_weights(tmp_path, overrides):
    config = TrainConfig(
        **overrides, d_model=8, n_heads=2, steps=4, batch_size=4, checkpoint_every=2, train_length=6
    )
    straight = train(config, tmp_path / "straight", show_progress=False)
    first = train(
        TrainConfig(**{**config.__dict__, "steps": 2}), tmp_path / "split", show_progress=False
    )
    assert first.history[-1]["step"] == 2
    resumed = train(config, tmp_path / "split", show_progress=False)
    assert resumed.resumed_from == 2 and len(resumed.history) == 4
    for (name, a), b in zip(
        straight.model.state_dict().items(), resumed.model.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, msg=name)
    with pytest.raises(ValueError, match="different run"):
        train(
            TrainConfig(**{**config.__dict__, "lr": 0.5}), tmp_path / "split", show_progress=False
        )
    reloaded, _, meta = load_checkpoint(tmp_path / "straight")
    assert meta["step"] == 4
    rows = evaluate(reloaded, config, [6, 12], samples=8)
    assert [r["length"] for r in rows] == [6, 12] and all(0 <= r["accuracy"] <= 1 for r in rows)
