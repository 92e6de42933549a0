import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from seqtopk import (
    OnlineRoutingState,
    numba_available,
    online_select,
    online_select_reference,
    routing_weights,
    select_experts,
    select_experts_reference,
    selection_to_indices,
)
from seqtopk.selection import resolve_path

# The CPU paths every equality test runs: torch always, numba where it is installed.
CPU_IMPLS = ["torch", *(["numba"] if numba_available() else [])]
# Where the Triton kernel runs: natively on CUDA, else in the interpreter on CPU tensors
# (TRITON_INTERPRET=1, set by the root conftest only when there is no CUDA device).
TRITON_DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
needs_numba = pytest.mark.skipif(
    not numba_available(), reason="numba not installed (seqtopk[fast])"
)


@st.composite
def routing_problems(draw, max_batch=3, max_tokens=6, max_experts=8):
    batch = draw(st.integers(1, max_batch))
    tokens = draw(st.integers(1, max_tokens))
    experts = draw(st.integers(1, max_experts))
    k = draw(st.integers(1, experts))
    low = draw(st.integers(0, k))
    high = draw(st.integers(k, experts))
    # Few distinct values make ties common, which is where tie-breaking shows.
    levels = draw(st.integers(2, 6))
    values = draw(
        st.lists(
            st.integers(0, levels - 1),
            min_size=batch * tokens * experts,
            max_size=batch * tokens * experts,
        )
    )
    probs = torch.tensor(values, dtype=torch.float32).view(batch, tokens, experts) / levels
    mask = torch.tensor(
        draw(st.lists(st.booleans(), min_size=batch * tokens, max_size=batch * tokens))
    ).view(batch, tokens)
    return probs, mask, k, low, high


@pytest.mark.parametrize("impl", CPU_IMPLS)
@settings(max_examples=60)
@given(routing_problems())
def test_cpu_paths_equal_brute_force_greedy(impl, problem):
    probs, mask, k, low, high = problem
    fast = select_experts(probs, k, mask, low, high, impl=impl)
    assert torch.equal(fast, select_experts_reference(probs, k, mask, low, high))


@pytest.mark.parametrize("impl", CPU_IMPLS)
@settings(max_examples=60)
@given(
    routing_problems(max_tokens=12, max_experts=10),
    st.integers(0, 2**31 - 1),
    st.sampled_from([0.3, 1.0, 4.0]),
)
def test_cpu_paths_equal_brute_force_greedy_on_real_valued_scores(impl, problem, seed, spread):
    # Tie-free softmax scores, from flat to peaked tokens: the path without any tie repair.
    _, mask, k, low, high = problem
    gen = torch.Generator().manual_seed(seed)
    shape = (*mask.shape, problem[0].shape[-1])
    sharpness = spread * 2 * torch.rand((*mask.shape, 1), generator=gen)
    probs = torch.softmax(torch.randn(shape, generator=gen) * sharpness, -1)
    fast = select_experts(probs, k, mask, low, high, impl=impl)
    assert torch.equal(fast, select_experts_reference(probs, k, mask, low, high))


@settings(max_examples=60)
@given(routing_problems())
def test_budget_bounds_and_padding(problem):
    probs, mask, k, low, high = problem
    selected = select_experts(probs, k, mask, low, high)
    per_token = selected.sum(-1)
    assert torch.equal(selected.sum(dim=(1, 2)), mask.sum(-1) * k)
    assert bool((per_token[mask] >= low).all()) and bool((per_token[mask] <= high).all())
    assert int(per_token[~mask].sum()) == 0


@settings(max_examples=30)
@given(routing_problems(), st.integers(0, 2**31 - 1))
def test_sequences_do_not_compete(problem, seed):
    probs, mask, k, low, high = problem
    selected = select_experts(probs, k, mask, low, high)
    for b in range(probs.shape[0]):
        alone = select_experts(probs[b : b + 1], k, mask[b : b + 1], low, high)
        assert torch.equal(alone[0], selected[b])
    other = torch.rand(probs.shape, generator=torch.Generator().manual_seed(seed))
    mixed = select_experts(
        torch.cat([probs[:1], other[:1]]),
        k,
        torch.ones(2, probs.shape[1], dtype=torch.bool),
        low,
        high,
    )
    assert torch.equal(mixed[0], select_experts(probs[:1], k, None, low, high)[0])


@settings(max_examples=30)
@given(routing_problems(), st.randoms(use_true_random=False))
def test_expert_permutation_permutes_the_mask(problem, rng):
    probs, mask, k, low, high = problem
    # Distinct scores: with ties, a permutation legitimately changes which expert wins.
    probs = probs + torch.rand(probs.shape, generator=torch.Generator().manual_seed(1)) * 1e-3
    perm = list(range(probs.shape[-1]))
    rng.shuffle(perm)
    perm = torch.tensor(perm)
    assert torch.equal(
        select_experts(probs[..., perm], k, mask, low, high),
        select_experts(probs, k, mask, low, high)[..., perm],
    )


@settings(max_examples=8)
@given(routing_problems(), st.sampled_from(["plain", "shifted", "signed_zeros"]))
def test_triton_kernel_equals_brute_force_greedy(problem, variant):
    # Interpreted on the CPU here (TRITON_INTERPRET=1 from the root conftest); native on CUDA.
    pytest.importorskip("triton")
    probs, mask, k, low, high = problem
    if variant == "shifted":  # negative scores order backwards in their float bits
        probs = probs - 0.5
    elif variant == "signed_zeros":  # -0.0 ties with +0.0 (and keeps its token/expert order)
        probs = probs - 0.5
        probs = torch.where(
            probs == 0, torch.where(torch.rand(probs.shape) < 0.5, -0.0, 0.0), probs
        )
    expected = select_experts_reference(probs, k, mask, low, high)
    got = select_experts(
        probs.to(TRITON_DEVICE), k, mask.to(TRITON_DEVICE), low, high, impl="triton"
    )
    assert torch.equal(got.cpu(), expected)


def test_triton_kernel_edge_cases():
    pytest.importorskip("triton")
    gen = torch.Generator().manual_seed(5)
    cases = [
        (torch.full((2, 5, 4), 0.25), torch.ones(2, 5, dtype=torch.bool), 2, 1, 4),  # all ties
        (
            torch.rand(3, 4, 6, generator=gen),
            torch.tensor([[1, 1, 0, 1], [0] * 4, [1] * 4]),
            3,
            0,
            6,
        ),
        (torch.rand(2, 3, 5, generator=gen), None, 2, 2, 4),  # k == L: nothing left to choose
        (torch.rand(2, 3, 5, generator=gen), None, 3, 1, 3),
        (torch.rand(2, 0, 5, generator=gen), None, 2, 1, 4),  # no tokens
        (torch.tensor([[[3.0e38, -3.0e38, 1e-45, -1e-45]] * 3]), None, 2, 0, 4),  # extremes
    ]
    for probs, mask, k, low, high in cases:
        expected = select_experts_reference(probs, k, mask, low, high)
        on_device = None if mask is None else mask.to(TRITON_DEVICE)
        got = select_experts(probs.to(TRITON_DEVICE), k, on_device, low, high, impl="triton")
        assert torch.equal(got.cpu(), expected), (k, low, high)


def test_auto_stays_on_torch_for_cpu_tensors(monkeypatch):
    import seqtopk._triton_select as kernel_module

    def fail(*args, **kwargs):
        raise AssertionError("auto must not pick the Triton kernel for CPU tensors")

    monkeypatch.setattr(kernel_module, "select_candidates_triton", fail)
    probs = torch.rand(2, 4, 6, generator=torch.Generator().manual_seed(6))
    assert torch.equal(select_experts(probs, 2), select_experts_reference(probs, 2))


def _tie_heavy(batch, tokens, experts, seed, device="cuda"):
    gen = torch.Generator().manual_seed(seed)
    probs = torch.randint(0, 16, (batch, tokens, experts), generator=gen).float() / 16
    mask = torch.rand(batch, tokens, generator=gen) < 0.85
    mask[0] = True
    mask[-1, : tokens // 3] = False  # left padding
    return probs.to(device), mask.to(device)


@pytest.mark.gpu
@pytest.mark.parametrize("k, low, high", [(1, 1, 3), (8, 1, 10), (4, 0, 16), (2, 2, 2)])
def test_cuda_triton_matches_torch_and_cpu_at_scale(k, low, high):
    probs, mask = _tie_heavy(8, 4096, 64, seed=7)
    expected = select_experts(probs.cpu(), k, mask.cpu(), low, high, impl="torch")
    for impl in ("triton", "torch", "auto"):  # auto -> triton on CUDA
        got = select_experts(probs, k, mask, low, high, impl=impl)
        assert got.is_cuda and torch.equal(got.cpu(), expected), impl


@pytest.mark.gpu
def test_cuda_triton_matches_reference_with_ties():
    for seed in range(4):
        probs, mask = _tie_heavy(3, 48, 16, seed=10 + seed)
        probs[1] -= 0.5
        expected = select_experts_reference(probs.cpu(), 4, mask.cpu(), 1, 7)
        assert torch.equal(select_experts(probs, 4, mask, 1, 7, impl="triton").cpu(), expected)


def test_k1_min1_is_per_token_topk():
    probs = torch.softmax(torch.randn(3, 9, 6, generator=torch.Generator().manual_seed(0)), -1)
    selected = select_experts(probs, 1, min_per_token=1)
    top = torch.zeros_like(selected).scatter_(-1, probs.argmax(-1, keepdim=True), True)
    assert torch.equal(selected, top)


def test_low_equals_high_equals_k_is_topk():
    probs = torch.rand(2, 7, 8, generator=torch.Generator().manual_seed(3))
    selected = select_experts(probs, 3, min_per_token=3, max_per_token=3)
    top = torch.zeros_like(selected).scatter_(-1, probs.topk(3, dim=-1).indices, True)
    assert torch.equal(selected, top)


def test_budget_moves_to_confident_tokens_flat_tokens_get_more():
    flat = torch.full((4,), 0.25)
    peaked = torch.tensor([0.97, 0.01, 0.01, 0.01])
    probs = torch.stack([peaked, flat]).unsqueeze(0)
    counts = select_experts(probs, 2, min_per_token=1, max_per_token=4).sum(-1)
    assert counts.tolist() == [[1, 3]]


@pytest.mark.parametrize("impl", CPU_IMPLS)
@settings(max_examples=40)
@given(routing_problems())
def test_online_fast_paths_equal_reference(impl, problem):
    probs, mask, k, low, high = problem
    fast, state = online_select(probs, k, mask, low, high, impl=impl)
    assert torch.equal(fast, online_select_reference(probs, k, mask, low, high))
    cumulative = fast.sum(-1).cumsum(-1)
    assert bool((cumulative <= mask.long().cumsum(-1) * k).all())
    assert torch.equal(state.used, fast.sum(dim=(1, 2)))


@needs_numba
@pytest.mark.parametrize("scan_budget", [0, 2**40])
@settings(max_examples=40)
@given(routing_problems())
def test_numba_prompt_kernel_both_ways_equals_reference(scan_budget, problem):
    probs, mask, k, low, high = problem
    expected = online_select_reference(probs, k, mask, low, high).sum(-1)
    assert torch.equal(_numba_prompt_counts(probs, mask, k, low, high, scan_budget), expected)


@settings(max_examples=30)
@given(routing_problems(), st.integers(0, 5), st.integers(0, 2**31 - 1))
def test_online_changing_the_future_never_changes_the_past(problem, cut, seed):
    probs, mask, k, low, high = problem
    cut = min(cut, probs.shape[1])
    changed = probs.clone()
    changed[:, cut:] = torch.rand(
        changed[:, cut:].shape, generator=torch.Generator().manual_seed(seed)
    )
    a, _ = online_select(probs, k, mask, low, high)
    b, _ = online_select(changed, k, mask, low, high)
    assert torch.equal(a[:, :cut], b[:, :cut])


@settings(max_examples=40)
@given(routing_problems(max_tokens=8))
def test_online_decode_step_equals_offline_rule_on_the_prefix(problem):
    # Each step, decided from the cache alone, must equal the definition evaluated offline on
    # the prefix: the token's entries in the prefix's top-(m*k) (select_experts with L=0, U=E
    # picks exactly the prefix's top m*k pairs), clamped to [L, U] and to the budget left.
    probs, mask, k, low, high = problem
    batch, length, experts = probs.shape
    state = OnlineRoutingState.empty(batch, experts, k, low, high)
    used = torch.zeros(batch, dtype=torch.long)
    for t in range(length):
        step = state.step(probs[:, t], mask[:, t])
        prefix_top = select_experts(probs[:, : t + 1], k, mask[:, : t + 1], 0, experts)
        seen = mask[:, : t + 1].sum(-1)
        inside = prefix_top[:, t].sum(-1)
        expected = torch.minimum(inside.clamp(low, high), seen * k - used) * mask[:, t]
        assert torch.equal(step.sum(-1), expected)
        used += expected
        assert bool((used <= seen * k).all())  # the budget is enforced at every step
        for b in range(batch):
            order = sorted(range(experts), key=lambda e, b=b: (-float(probs[b, t, e]), e))
            chosen = torch.zeros(experts, dtype=torch.bool)
            chosen[order[: int(expected[b])]] = True
            assert torch.equal(step[b], chosen)
    assert torch.equal(state.used, used)


@pytest.mark.parametrize("impl", CPU_IMPLS)
@pytest.mark.parametrize("chunk", [1, 3, 32])
def test_online_prompt_in_one_pass_equals_token_by_token(chunk, impl, monkeypatch):
    import seqtopk.online as online_module

    monkeypatch.setattr(online_module, "_CHUNK", chunk)
    gen = torch.Generator().manual_seed(11)
    # Coarse scores (ties across tokens and chunks), left padding, and peaked/flat tokens.
    probs = torch.randint(0, 7, (3, 45, 6), generator=gen).float() / 7
    probs[:, ::5] = torch.tensor([1.0, 0, 0, 0, 0, 0])
    mask = torch.ones(3, 45, dtype=torch.bool)
    mask[1, :9] = False
    mask[2, 20:23] = False
    whole, state = online_select(probs, 2, mask, 1, 4, impl=impl)
    assert torch.equal(whole, online_select_reference(probs, 2, mask, 1, 4))
    stepped = OnlineRoutingState.empty(3, 6, 2, 1, 4)
    steps = torch.stack([stepped.step(probs[:, t], mask[:, t]) for t in range(45)], 1)
    assert torch.equal(whole, steps)
    assert torch.equal(state.used, stepped.used) and len(state.runs) <= 6
    # Prompts too long for the torch prompt pass's tables take the chunked pass from the start.
    monkeypatch.setattr(online_module, "_PROMPT_TABLE_ENTRIES", 0)
    chunked, _ = online_select(probs, 2, mask, 1, 4, impl="torch")
    assert torch.equal(chunked, whole)
    # A later call with many tokens (chunked prefill) takes the chunked pass over the runs.
    head, state = online_select(probs[:, :4], 2, mask[:, :4], 1, 4, impl=impl)
    tail, state = online_select(probs[:, 4:], 2, mask[:, 4:], 1, 4, state=state)
    assert torch.equal(torch.cat([head, tail], 1), whole)
    assert torch.equal(state.used, stepped.used)


@pytest.mark.parametrize("multiple", [2, 0.05, 100])
def test_online_prompt_floor_repair_stays_exact(multiple, monkeypatch):
    import seqtopk.online as online_module

    monkeypatch.setattr(online_module, "_KEEP_MULTIPLE", multiple)
    gen = torch.Generator().manual_seed(5)
    # Early tokens score far below later ones, so a floor placed by the whole sequence's
    # quantile leaves the first prefixes short of their m*k scores and forces the repair.
    probs = torch.rand(2, 60, 16, generator=gen) * torch.linspace(0.01, 1, 60).view(1, 60, 1)
    probs[1, 30:] = probs[1, :30].flip(0)
    mask = torch.ones(2, 60, dtype=torch.bool)
    mask[0, 10:13] = False
    allowance = mask.long().cumsum(1) * 3
    kth_best = probs.topk(3, dim=-1).values[..., 2]
    floors = online_module._prompt_floors(probs, mask, kth_best, allowance, multiple * 3 / 16)
    if multiple == 2:
        assert bool((floors[0, :5] < floors[0, -1]).all())  # the repair lowered early floors
    routed, state = online_select(probs, 3, mask, 1, 5, impl="torch")
    assert torch.equal(routed, online_select_reference(probs, 3, mask, 1, 5))
    step, _ = online_select(probs[:, :1], 3, mask[:, :1], 1, 5, state=state)
    expected = online_select_reference(
        torch.cat([probs, probs[:, :1]], 1), 3, torch.cat([mask, mask[:, :1]], 1), 1, 5
    )
    assert torch.equal(step, expected[:, -1:])


def _trending(kind: str, batch: int, length: int, experts: int, seed: int) -> torch.Tensor:
    """Router-like scores whose level drifts over the sequence: the thresholds of the online
    rule then climb, fall or swing, which moves the numba kernel's band in every direction."""
    gen = torch.Generator().manual_seed(seed)
    probs = torch.softmax(torch.randn(batch, length, experts, generator=gen) * 2, -1)
    steps = torch.arange(length, dtype=torch.float32).view(1, length, 1)
    if kind == "rising":
        return probs * (0.01 + steps / length)
    if kind == "falling":
        return probs * (1.01 - steps / length)
    if kind == "swinging":
        return probs * (1.1 + torch.sin(steps / 40))
    return (probs * 16).round() / 16  # "ties": a coarse grid


@needs_numba
@pytest.mark.parametrize("kind", ["rising", "falling", "swinging", "ties"])
@pytest.mark.parametrize("k, low, high", [(8, 1, 10), (2, 0, 4), (4, 4, 4), (1, 1, 3)])
def test_numba_kernels_equal_torch_paths_on_long_drifting_prompts(kind, k, low, high):
    probs = _trending(kind, 2, 1500, 64, seed=len(kind) + k)
    mask = torch.ones(2, 1500, dtype=torch.bool)
    mask[1, :200] = False  # left padding
    mask[0, 700:720] = False
    offline = select_experts(probs, k, mask, low, high, impl="numba")
    assert torch.equal(offline, select_experts(probs, k, mask, low, high, impl="torch"))
    fast, fast_state = online_select(probs, k, mask, low, high, impl="numba")
    slow, slow_state = online_select(probs, k, mask, low, high, impl="torch")
    assert torch.equal(fast, slow)
    assert torch.equal(fast_state.used, slow_state.used)
    assert torch.equal(fast_state.counts, slow_state.counts)
    # Both ways the prompt kernel finds thresholds give these counts, whichever these scores get.
    for scan_budget in (0, 2**40):
        counts = _numba_prompt_counts(probs, mask, k, low, high, scan_budget)
        assert torch.equal(counts, slow_state.counts), scan_budget
    # Decoding continues from either state identically (the runs are built from the history).
    more = _trending(kind, 2, 5, 64, seed=99)
    step_mask = torch.ones(2, 5, dtype=torch.bool)
    fast_more, _ = online_select(more, k, step_mask, low, high, state=fast_state)
    slow_more, _ = online_select(more, k, step_mask, low, high, state=slow_state)
    assert torch.equal(fast_more, slow_more)


def _numba_prompt_counts(probs, mask, k, low, high, scan_budget):
    """The numba prompt kernel's counts with ``scan_budget`` keys compared per token (0: the heaps
    for every sequence; a huge number: the buckets, however many comparisons they take)."""
    from seqtopk import _numba_routing

    array = probs.contiguous().numpy()
    _, counts, _, used, seen = _numba_routing.prompt_route(
        array, array.view(np.int32), mask.numpy(), k, low, high, scan_budget
    )
    assert used.tolist() == counts.sum(1).tolist()
    assert seen.tolist() == mask.sum(1).tolist()
    return torch.from_numpy(counts)


@needs_numba
def test_numba_prompt_floor_repair_stays_exact():
    from seqtopk import _numba_routing

    # Early tokens score far below later ones: the sequence's sampled floor leaves the first
    # prefixes short of their m*k scores, so the kernel must lower their floor.
    gen = torch.Generator().manual_seed(5)
    probs = torch.rand(2, 60, 16, generator=gen) * torch.linspace(0.01, 1, 60).view(1, 60, 1)
    mask = torch.ones(2, 60, dtype=torch.bool)
    mask[0, 10:13] = False
    floor = _numba_routing._sample_floor(probs[1].numpy(), mask[1].numpy(), 3)
    kept = (probs[1] >= floor).sum(-1).cumsum(0)
    assert bool((kept < torch.arange(1, 61) * 3).any())  # a short prefix: the repair runs
    routed, state = online_select(probs, 3, mask, 1, 5, impl="numba")
    assert torch.equal(routed, online_select_reference(probs, 3, mask, 1, 5))
    for scan_budget in (0, 2**40):
        assert torch.equal(_numba_prompt_counts(probs, mask, 3, 1, 5, scan_budget), state.counts)


@needs_numba
@pytest.mark.parametrize("padding", [0.5, 0.9, 0.99])
def test_numba_prompt_kernel_on_mostly_padded_sequences(padding):
    from seqtopk import _numba_routing

    # Most of the floor's sample falls on padding (-inf) beyond about 84% padding: the floor is
    # then -inf and every score of a valid token is a key.
    gen = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(3, 400, 32, generator=gen) * 2, -1)
    mask = torch.rand(3, 400, generator=gen) > padding
    mask[2] = False
    mask[2, 5] = True  # one valid token
    floors = [_numba_routing._sample_floor(probs[b].numpy(), mask[b].numpy(), 4) for b in range(3)]
    assert floors[2] == -np.inf
    _, state = online_select(probs, 4, mask, 1, 6, impl="torch")
    for scan_budget in (0, _numba_routing.SCAN_BUDGET, 2**40):
        assert torch.equal(_numba_prompt_counts(probs, mask, 4, 1, 6, scan_budget), state.counts)


@needs_numba
def test_numba_prompt_buckets_give_up_on_ties_only():
    from seqtopk import _numba_routing as kernels

    def buckets_finish(probs: torch.Tensor) -> bool:
        array = probs.numpy()
        valid = np.ones(array.shape[0], dtype=np.bool_)
        experts = np.empty((array.shape[0], 10), dtype=np.int64)
        values = np.empty((array.shape[0], 10), dtype=np.float32)
        kept, start, lowest = kernels._rank_and_keep(array, valid, 8, experts, values)
        inside = np.empty(array.shape[0], dtype=np.int64)
        return kernels._inside_by_buckets(
            array.view(np.int32),
            valid,
            8,
            kept,
            start,
            lowest,
            experts,
            inside,
            kernels.SCAN_BUDGET,
        )

    gen = torch.Generator().manual_seed(0)
    assert buckets_finish(torch.softmax(torch.randn(2048, 64, generator=gen), -1))
    # An untrained router's equal scores put every key in one bucket: the heaps take over.
    assert not buckets_finish(torch.full((2048, 64), 1 / 64))


def test_path_resolution_and_its_errors(monkeypatch):
    import seqtopk.selection as selection_module

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_path("torch", cpu) == "torch"
    assert resolve_path("reference", cpu) == "reference"
    assert resolve_path("auto", cpu) == ("numba" if numba_available() else "torch")
    with pytest.raises(ValueError, match="impl must be one of"):
        resolve_path("numpy", cpu)
    if numba_available():
        with pytest.raises(RuntimeError, match="needs CPU tensors"):
            resolve_path("numba", cuda)
    monkeypatch.setattr(selection_module, "numba_available", lambda: False)
    assert resolve_path("auto", cpu) == "torch"
    with pytest.raises(RuntimeError, match=r"seqtopk\[fast\]"):
        resolve_path("numba", cpu)
    probs = torch.rand(1, 5, 4, generator=torch.Generator().manual_seed(2))
    with pytest.raises(RuntimeError, match=r"seqtopk\[fast\]"):
        select_experts(probs, 2, impl="numba")
    with pytest.raises(RuntimeError, match=r"seqtopk\[fast\]"):
        online_select(probs, 2, impl="numba")
    # Without numba, "auto" is the torch path on the CPU, for both entry points.
    assert torch.equal(select_experts(probs, 2), select_experts(probs, 2, impl="torch"))
    assert torch.equal(online_select(probs, 2)[0], online_select(probs, 2, impl="torch")[0])


def test_online_impl_is_checked_and_belongs_to_the_state():
    probs = torch.rand(1, 5, 4, generator=torch.Generator().manual_seed(2))
    with pytest.raises(ValueError, match="impl must be one of"):
        online_select(probs, 2, impl="triton")
    with pytest.raises(ValueError, match="impl must be one of"):
        OnlineRoutingState.empty(1, 4, 2, impl="reference")
    _, state = online_select(probs, 2, impl="torch")
    with pytest.raises(ValueError, match="differs from the state's"):
        online_select(probs, 2, state=state, impl="numba")
    online_select(probs, 2, state=state, impl="torch")  # the state's own impl is accepted


def test_online_long_decode_grows_storage_and_equals_reference():
    gen = torch.Generator().manual_seed(3)
    # Scores on a coarse grid (many ties) over 40 steps: the buffers regrow several times.
    probs = torch.randint(0, 5, (2, 40, 8), generator=gen).float() / 5
    mask = torch.ones(2, 40, dtype=torch.bool)
    mask[1, :7] = False
    expected = online_select_reference(probs, 3, mask, 1, 5)
    state = None
    pieces = []
    for start in range(0, 40, 9):
        piece, state = online_select(
            probs[:, start : start + 9], 3, mask[:, start : start + 9], 1, 5, state=state
        )
        pieces.append(piece)
    assert torch.equal(torch.cat(pieces, 1), expected)
    assert state.length == 40 and torch.equal(state.num_valid, mask.sum(1))
    state.crop(21)
    again, _ = online_select(probs[:, 21:], 3, mask[:, 21:], 1, 5, state=state)
    assert torch.equal(again, expected[:, 21:])


def test_online_state_continues_crops_and_reorders():
    gen = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(3, 8, 6, generator=gen), -1)
    whole, _ = online_select(probs, 2, min_per_token=0, max_per_token=4)
    first, state = online_select(probs[:, :5], 2, min_per_token=0, max_per_token=4)
    rest, state = online_select(probs[:, 5:], 2, min_per_token=0, max_per_token=4, state=state)
    assert torch.equal(torch.cat([first, rest], 1), whole)
    state.crop(5)
    again, _ = online_select(probs[:, 5:], 2, min_per_token=0, max_per_token=4, state=state)
    assert torch.equal(again, rest)
    state.crop(5)
    state.reorder(torch.tensor([2, 2, 0]))
    moved, _ = online_select(probs[[2, 2, 0], 5:], 2, min_per_token=0, max_per_token=4, state=state)
    assert torch.equal(moved, rest[[2, 2, 0]])


def test_weights_and_indices_round_trip_and_gradients():
    gen = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(2, 5, 6, generator=gen), -1).requires_grad_()
    selected = select_experts(probs.detach(), 2, min_per_token=0, max_per_token=4)
    weights = routing_weights(probs, selected, renormalize=True)
    weights.sum().backward()
    assert bool((probs.grad[~selected] == 0).all())
    per_token = weights.detach().sum(-1)
    has = selected.any(-1)
    assert torch.allclose(per_token[has], torch.ones_like(per_token[has]))
    assert bool((per_token[~has] == 0).all())
    indices, slot_weights = selection_to_indices(selected, weights.detach(), 4)
    dense = torch.zeros(10, 6).scatter_add_(-1, indices, slot_weights)
    assert torch.allclose(dense, weights.detach().view(10, 6))
    assert bool((indices >= 0).all()) and bool((indices < 6).all())


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"k": 0}, ValueError, "k must be in"),
        ({"k": 7}, ValueError, "k must be in"),
        ({"k": 2, "min_per_token": 3}, ValueError, "infeasible"),
        ({"k": 3, "max_per_token": 2}, ValueError, "infeasible"),
        ({"k": 2, "max_per_token": 9}, ValueError, "max_per_token must be <= num_experts"),
        ({"k": 2.0}, TypeError, "k must be an int"),
    ],
)
def test_bad_bounds_raise(kwargs, error, match):
    with pytest.raises(error, match=match):
        select_experts(torch.rand(1, 3, 6), **kwargs)


def test_bad_inputs_raise():
    probs = torch.rand(2, 3, 4)
    nan = probs.clone()
    nan[1, 2, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        select_experts(nan, 1)
    with pytest.raises(ValueError, match="3 dimensions"):
        select_experts(probs[0], 1)
    with pytest.raises(ValueError, match="attention_mask must have shape"):
        select_experts(probs, 1, torch.ones(2, 4))
    with pytest.raises(ValueError, match="only 0 and 1"):
        select_experts(probs, 1, torch.full((2, 3), 2))
    with pytest.raises(ValueError, match="impl must be one of"):
        select_experts(probs, 1, impl="cuda")
    with pytest.raises(ValueError, match="num_slots"):
        selection_to_indices(select_experts(probs, 2, max_per_token=4), probs, 1)


def test_online_run_merge_keeps_every_score_in_order():
    from seqtopk.online import _merge

    gen = torch.Generator().manual_seed(4)
    for size in (3, 3000):  # below and above the size from which runs merge by scatter
        a = torch.sort(torch.randint(0, 9, (2, size), generator=gen).float(), dim=-1).values
        b = torch.sort(torch.randint(0, 9, (2, size + 5), generator=gen).float(), dim=-1).values
        b[:, :4] = -torch.inf  # padding positions
        expected = torch.sort(torch.cat([a, b], 1), dim=-1).values
        assert torch.equal(_merge(a, b), expected)
