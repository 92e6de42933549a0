"""The parallel tree and the streaming counter: exact agreement, bounds, errors."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from psm.layers import batch_invariant_linear
from psm.scan import (
    OnlineScanner,
    ScanCounts,
    exclusive_prefix,
    left_fold_prefix,
    online_prefix,
)

F64 = torch.float64


def matrix_product(older, newer):
    return older @ newer


def mlp_aggregator(seed: int, width: int):
    """A random non-associative, non-commutative aggregator (batch-invariant by construction)."""
    gen = torch.Generator().manual_seed(seed)
    w1 = torch.randn(16, 2 * width, generator=gen, dtype=F64) / math.sqrt(2 * width)
    w2 = torch.randn(width, 16, generator=gen, dtype=F64) / 4

    def agg(older, newer):
        hidden = torch.tanh(batch_invariant_linear(torch.cat([older, newer], -1), w1))
        return batch_invariant_linear(hidden, w2) + 0.5 * newer

    return agg


def symbolic_prefixes(n: int) -> list[str]:
    """The documented parenthesisation, spelled out: P(i) = agg(P(i - 2^z), T[i - 2^z, i))."""

    def block(start: int, size: int) -> str:
        if size == 1:
            return f"x{start}"
        half = size // 2
        return f"({block(start, half)}.{block(start + half, half)})"

    prefixes = ["e"]
    for i in range(1, n + 1):
        low = i & -i
        prefixes.append(f"({prefixes[i - low]}.{block(i - low, low)})")
    return prefixes


@pytest.mark.parametrize("n", [1, 2, 3, 6, 7, 8, 13, 33])
def test_both_evaluators_follow_the_documented_tree(n):
    # Strings under concatenation-with-brackets record exactly which calls were made.
    vocab = [f"x{i}" for i in range(n)]
    codes = torch.arange(n, dtype=F64).reshape(1, n, 1)
    names: dict[float, str] = {float(i): s for i, s in enumerate(vocab)}
    names[-1.0] = "e"

    def agg(older, newer):
        out = torch.empty_like(newer)
        for row in range(newer.shape[0]):
            key = float(len(names))
            names[key] = f"({names[float(older[row, 0])]}.{names[float(newer[row, 0])]})"
            out[row, 0] = key
        return out

    identity = torch.tensor([-1.0], dtype=F64)
    expected = symbolic_prefixes(n)
    parallel, final = exclusive_prefix(agg, codes, identity, return_final=True)
    assert [names[float(v)] for v in parallel[0, :, 0]] == expected[:n]
    assert names[float(final[0, 0])] == expected[n]
    streamed, streamed_final, _ = online_prefix(agg, codes, identity)
    assert [names[float(v)] for v in streamed[0, :, 0]] == expected[:n]
    assert names[float(streamed_final[0, 0])] == expected[n]


@settings(max_examples=30)
@given(n=st.integers(0, 512), batch=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_parallel_equals_streaming_bitwise_for_matrix_products(n, batch, seed):
    gen = torch.Generator().manual_seed(seed)
    items = torch.randn(batch, n, 2, 2, generator=gen, dtype=F64)
    identity = torch.randn(2, 2, generator=gen, dtype=F64)  # not neutral
    parallel, final = exclusive_prefix(matrix_product, items, identity, return_final=True)
    streamed, streamed_final, _ = online_prefix(matrix_product, items, identity)
    assert torch.equal(parallel, streamed)
    assert torch.equal(final, streamed_final)


@settings(max_examples=20)
@given(n=st.integers(1, 200), width=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_parallel_equals_streaming_bitwise_for_a_random_mlp(n, width, seed):
    agg = mlp_aggregator(seed, width)
    gen = torch.Generator().manual_seed(seed + 1)
    items = torch.randn(2, n, width, generator=gen, dtype=F64)
    identity = torch.randn(width, generator=gen, dtype=F64)
    parallel, final = exclusive_prefix(agg, items, identity, return_final=True)
    streamed, streamed_final, _ = online_prefix(agg, items, identity)
    assert torch.equal(parallel, streamed)
    assert torch.equal(final, streamed_final)


def test_tree_differs_from_a_left_fold_for_a_nonassociative_aggregator():
    # Guards the bitwise tests' power: a different parenthesisation gives different states.
    agg = mlp_aggregator(0, 4)
    items = torch.randn(1, 37, 4, dtype=F64)
    identity = torch.zeros(4, dtype=F64)
    parallel = exclusive_prefix(agg, items, identity)
    folded, _ = left_fold_prefix(agg, items, identity)
    assert (parallel - folded).abs().max() > 1e-3


@settings(max_examples=12)
@given(n=st.integers(0, 128), seed=st.integers(0, 2**16))
def test_associative_operator_matches_left_fold(n, seed):
    gen = torch.Generator().manual_seed(seed)
    items = torch.randn(2, n, 3, 3, generator=gen, dtype=F64) / 1.8
    identity = torch.eye(3, dtype=F64)
    parallel, final = exclusive_prefix(matrix_product, items, identity, return_final=True)
    folded, folded_final = left_fold_prefix(matrix_product, items, identity)
    torch.testing.assert_close(parallel, folded, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(final, folded_final, rtol=1e-9, atol=1e-12)


@settings(max_examples=15)
@given(n=st.integers(2, 64), cut=st.data(), seed=st.integers(0, 2**16))
def test_changing_a_later_item_never_changes_an_earlier_prefix(n, cut, seed):
    position = cut.draw(st.integers(0, n - 1))
    agg = mlp_aggregator(seed, 3)
    items = torch.randn(1, n, 3, dtype=F64)
    changed = items.clone()
    changed[:, position] += 1.0
    identity = torch.zeros(3, dtype=F64)
    before = exclusive_prefix(agg, items, identity)
    after = exclusive_prefix(agg, changed, identity)
    assert torch.equal(before[:, : position + 1], after[:, : position + 1])
    if position + 1 < n:
        assert not torch.equal(before[:, position + 1], after[:, position + 1])


@pytest.mark.parametrize("n", [*range(1, 70), 255, 256, 257, 1000])
def test_call_and_live_state_bounds(n):
    items = torch.randn(1, n, 2, 2, dtype=F64) / 2
    counts = ScanCounts()
    exclusive_prefix(matrix_product, items, torch.eye(2, dtype=F64), counts=counts)
    _, _, scanner = online_prefix(matrix_product, items, torch.eye(2, dtype=F64))
    exact = 2 * n - bin(n).count("1")
    assert counts.pairs == scanner.calls == exact <= 2 * n
    assert counts.calls <= 2 * math.floor(math.log2(n)) + 1
    assert scanner.peak_live_states <= math.floor(math.log2(n)) + 1
    assert scanner.live_states == bin(n).count("1")
    assert scanner.stored_states == 2 * scanner.live_states


def test_scanner_push_returns_the_state_before_the_item():
    scanner = OnlineScanner(matrix_product, torch.eye(2, dtype=F64))
    a, b = torch.randn(2, 1, 2, 2, dtype=F64)
    assert torch.equal(scanner.push(a), torch.eye(2, dtype=F64).expand(1, 2, 2))
    assert torch.equal(scanner.push(b), torch.eye(2, dtype=F64) @ a)
    assert torch.equal(scanner.state, torch.eye(2, dtype=F64) @ (a @ b))


def test_gradients_of_the_parallel_evaluator_match_finite_differences():
    agg = mlp_aggregator(3, 2)
    items = torch.randn(1, 7, 2, dtype=F64, requires_grad=True)
    identity = torch.randn(2, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, e: exclusive_prefix(agg, x, e, return_final=True), (items, identity)
    )


def test_identity_of_the_wrong_shape_is_rejected():
    with pytest.raises(ValueError, match=r"identity must have the state shape \(2, 2\)"):
        exclusive_prefix(matrix_product, torch.randn(1, 4, 2, 2), torch.eye(3))
    with pytest.raises(ValueError, match="item must have shape"):
        OnlineScanner(matrix_product, torch.eye(3)).push(torch.randn(1, 2, 2))


def test_aggregator_changing_the_state_shape_is_rejected():
    def widening(older, newer):
        return torch.cat([older, newer], -1)

    with pytest.raises(ValueError, match="may not change the state shape"):
        exclusive_prefix(widening, torch.randn(1, 4, 3), torch.zeros(3))
    scanner = OnlineScanner(widening, torch.zeros(3))
    with pytest.raises(ValueError, match="may not change the state shape"):
        scanner.push(torch.randn(1, 3))


def test_items_without_a_sequence_axis_are_rejected():
    with pytest.raises(ValueError, match="items must have shape"):
        exclusive_prefix(matrix_product, torch.randn(4), torch.zeros(()))
    with pytest.raises(TypeError, match=r"items must be a torch\.Tensor"):
        exclusive_prefix(matrix_product, [1.0, 2.0], torch.zeros(()))


@pytest.mark.parametrize("scan", [exclusive_prefix, left_fold_prefix, online_prefix])
def test_scans_refuse_a_missing_aggregator(scan):
    # exclusive_prefix(None, ...) used to fail with "'NoneType' object is not callable".
    with pytest.raises(TypeError, match="agg must be a callable aggregator"):
        scan(None, torch.zeros(1, 3, 2), torch.zeros(2))
