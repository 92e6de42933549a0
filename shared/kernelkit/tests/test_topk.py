"""Tests for kernelkit.topk: deterministic top-k against a brute-force sort, and every dot path
against the dense reference (which is itself checked against an explicit sum over index pairs)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st

from kernelkit import topk as topk_module
from kernelkit.backend import triton_available, triton_interpreting
from kernelkit.topk import SparseCodes, topk_codes, topk_mask

TRITON_RUNNABLE = triton_available() and (torch.cuda.is_available() or triton_interpreting())
needs_triton = pytest.mark.skipif(
    not TRITON_RUNNABLE,
    reason="Triton path needs CUDA or TRITON_INTERPRET=1 set before kernels are imported",
)
# The Triton tests run on whatever device Triton can use here: CUDA, or CPU via the interpreter.
TRITON_DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

# A few distinct values (with both signed zeros) so ties, including -0.0 vs +0.0, are common.
TIE_POOL = torch.tensor([-2.0, -1.0, -0.0, 0.0, 1.0, 3.0], dtype=torch.float64)


def _tols(dtype: torch.dtype) -> dict[str, float]:
    return {
        torch.float64: {"rtol": 1e-12, "atol": 1e-12},
        torch.float32: {"rtol": 1e-5, "atol": 1e-5},
        torch.float16: {"rtol": 1e-2, "atol": 1e-2},
        torch.bfloat16: {"rtol": 2e-2, "atol": 2e-2},
    }[dtype]


def make_x(shape, seed: int, dtype=torch.float32, ties: bool = True) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    if ties:
        pick = torch.randint(0, len(TIE_POOL), shape, generator=gen)
        return TIE_POOL[pick].to(dtype)
    return torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype)


def ref_topk_rows(x: torch.Tensor, k: int) -> torch.Tensor:
    """Brute force: full Python sort of each row by (value descending, index ascending)."""
    rows = x.reshape(-1, x.shape[-1]).tolist()
    # -0.0 == 0.0 in Python too, so signed zeros tie and fall through to the index.
    out = [sorted(range(len(r)), key=lambda j, r=r: (-r[j], j))[:k] for r in rows]
    return torch.tensor(out, dtype=torch.int64).reshape(*x.shape[:-1], k)


def ref_mask(scores: torch.Tensor, k: int, dim: int) -> torch.Tensor:
    moved = scores.movedim(dim, -1)
    mask = torch.zeros(moved.shape, dtype=torch.bool)
    mask.scatter_(-1, ref_topk_rows(moved, k), True)
    return mask.movedim(-1, dim)


def make_codes(n: int, k: int, dim: int, seed: int, dtype=torch.float32, device="cpu"):
    """Random codes that may repeat an index within a row, with tie-prone and zero values."""
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, dim, (n, k), generator=gen)
    vals = TIE_POOL[torch.randint(0, len(TIE_POOL), (n, k), generator=gen)]
    vals = vals * torch.rand(n, k, generator=gen, dtype=torch.float64).add(0.5)
    return SparseCodes(idx.to(device), vals.to(dtype=dtype, device=device), dim)


def pairwise_scores(q: SparseCodes, c: SparseCodes) -> torch.Tensor:
    """Spec of dot written out: sum of products over all pairs of equal indices (float64)."""
    out = torch.zeros(len(q), len(c), dtype=torch.float64)
    for a in range(len(q)):
        for b in range(len(c)):
            for i, vi in zip(q.indices[a].tolist(), q.values[a].tolist(), strict=True):
                for j, vj in zip(c.indices[b].tolist(), c.values[b].tolist(), strict=True):
                    if i == j:
                        out[a, b] += vi * vj
    return out


# ---------------------------------------------------------------------------------------------
# topk_codes
# ---------------------------------------------------------------------------------------------

shapes = st.tuples(
    st.lists(st.integers(0, 4), min_size=0, max_size=2),  # batch shape, may be empty or hold 0
    st.integers(1, 12),  # width D
)


@given(
    shape=shapes,
    k_frac=st.floats(0, 1),
    seed=st.integers(0, 2**31 - 1),
    ties=st.booleans(),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
@example(shape=([3], 5), k_frac=0.0, seed=0, ties=True, dtype=torch.float32)  # k = 1
@example(shape=([3], 5), k_frac=1.0, seed=1, ties=True, dtype=torch.float64)  # k = D
@example(shape=([0], 5), k_frac=0.5, seed=2, ties=False, dtype=torch.float32)  # empty batch
def test_topk_codes_matches_bruteforce(shape, k_frac, seed, ties, dtype):
    batch, width = shape
    k = 1 + round(k_frac * (width - 1))
    x = make_x((*batch, width), seed, dtype, ties)
    codes = topk_codes(x, k)
    expected = ref_topk_rows(x, k)
    assert codes.indices.dtype == torch.int64
    assert codes.dim == width and codes.k == k and codes.shape == torch.Size(batch)
    torch.testing.assert_close(codes.indices, expected, rtol=0, atol=0)
    torch.testing.assert_close(codes.values, x.gather(-1, expected), rtol=0, atol=0)


def test_topk_codes_ties_lowest_index_wins():
    x = torch.tensor(
        [[1.0, 3.0, 3.0, 2.0, 3.0], [0.0, 0.0, -0.0, 0.0, 0.0], [5.0, 5.0, 5.0, 5.0, 5.0]]
    )
    codes = topk_codes(x, 2)
    assert codes.indices.tolist() == [[1, 2], [0, 1], [0, 1]]
    # Ties inside the kept set are ordered by index too, even at k = D.
    assert topk_codes(x, 5).indices.tolist() == [[1, 2, 4, 3, 0], [0, 1, 2, 3, 4], [0, 1, 2, 3, 4]]


@pytest.mark.parametrize("n_tied_rows", [1, 7, 8])
def test_topk_codes_ties_at_scale(n_tied_rows):
    # Wide rows where the k-th value is tied across many positions in some rows: exercises both
    # the "redo only ambiguous rows" and the "redo every row" branches.
    gen = torch.Generator().manual_seed(n_tied_rows)
    width, k = 2048, 8
    x = torch.randn(8, width, generator=gen)
    # Fewer than k positives and the rest exactly 0: the k-th value (0) is tied ~2000 times.
    x[:n_tied_rows] = torch.where(x[:n_tied_rows] > 2.4, x[:n_tied_rows], 0.0)
    x[:n_tied_rows, ::7] = 0.0
    codes = topk_codes(x, k)
    torch.testing.assert_close(codes.indices, ref_topk_rows(x, k), rtol=0, atol=0)


def test_topk_codes_infinities_are_ordered():
    inf = float("inf")
    x = torch.tensor([[-inf, 1.0, inf, inf, -1.0]])
    assert topk_codes(x, 3).indices.tolist() == [[2, 3, 1]]
    assert topk_codes(-x, 2).indices.tolist() == [[0, 4]]


def test_topk_codes_float16_and_1d():
    x = make_x((4, 9), seed=3, dtype=torch.float16)
    torch.testing.assert_close(topk_codes(x, 4).indices, ref_topk_rows(x, 4), rtol=0, atol=0)
    single = topk_codes(x[0], 3)
    assert single.shape == torch.Size([]) and single.indices.shape == (3,)
    torch.testing.assert_close(single.indices, ref_topk_rows(x[0], 3), rtol=0, atol=0)


def test_topk_codes_gradient_reaches_kept_entries():
    x = torch.randn(3, 10, dtype=torch.float64, requires_grad=True)
    codes = topk_codes(x, 4)
    (codes.values * torch.arange(1.0, 5.0, dtype=torch.float64)).sum().backward()
    expected = torch.zeros(3, 10, dtype=torch.float64)
    expected.scatter_(1, codes.indices, torch.arange(1.0, 5.0, dtype=torch.float64).expand(3, 4))
    torch.testing.assert_close(x.grad, expected)


@given(shape=shapes, k_frac=st.floats(0, 1), seed=st.integers(0, 2**31 - 1), ties=st.booleans())
def test_to_dense_keeps_exactly_topk(shape, k_frac, seed, ties):
    batch, width = shape
    k = 1 + round(k_frac * (width - 1))
    x = make_x((*batch, width), seed, torch.float64, ties)
    dense = topk_codes(x, k).to_dense()
    mask = ref_mask(x, k, -1)
    torch.testing.assert_close(dense, torch.where(mask, x, 0.0), rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------
# topk_mask
# ---------------------------------------------------------------------------------------------


@given(
    shape=st.lists(st.integers(1, 6), min_size=1, max_size=3),
    data=st.data(),
    seed=st.integers(0, 2**31 - 1),
    ties=st.booleans(),
)
def test_topk_mask_matches_reference_on_any_dim(shape, data, seed, ties):
    x = make_x(tuple(shape), seed, torch.float32, ties)
    dim = data.draw(st.integers(-len(shape), len(shape) - 1), label="dim")
    k = data.draw(st.integers(1, shape[dim]), label="k")
    mask = topk_mask(x, k, dim=dim)
    assert mask.dtype == torch.bool and mask.shape == x.shape
    assert bool((mask.sum(dim=dim) == k).all())
    torch.testing.assert_close(mask, ref_mask(x, k, dim % x.ndim), rtol=0, atol=0)


def test_topk_mask_ties_and_empty():
    x = torch.tensor([[2.0, 1.0], [2.0, 1.0], [2.0, 3.0]])
    # Column 1 is (1, 1, 3): 3 first, then the tie between rows 0 and 1 goes to row 0.
    assert topk_mask(x, 2, dim=0).tolist() == [[True, True], [True, False], [False, True]]
    assert topk_mask(x, 1).tolist() == [[True, False], [True, False], [False, True]]
    empty = topk_mask(torch.zeros(0, 4), 2)
    assert empty.shape == (0, 4) and empty.dtype == torch.bool


# ---------------------------------------------------------------------------------------------
# SparseCodes helpers
# ---------------------------------------------------------------------------------------------


def test_sparse_codes_helpers():
    codes = make_codes(6, 3, 10, seed=0)
    assert codes.k == 3 and len(codes) == 6 and codes.shape == torch.Size([6])
    assert codes.dtype == torch.float32 and codes.device == torch.device("cpu")
    assert "k=3" in repr(codes) and "dim=10" in repr(codes)
    torch.testing.assert_close(codes[1:4].indices, codes.indices[1:4])
    torch.testing.assert_close(codes[torch.tensor([5, 0])].values, codes.values[[5, 0]])
    keep = torch.tensor([True, False, True, False, False, True])
    torch.testing.assert_close(codes[keep].indices, codes.indices[keep])
    assert codes[2].shape == torch.Size([]) and codes[2].to_dense().shape == (10,)
    with pytest.raises(TypeError, match="single code"):
        len(codes[2])
    grid = SparseCodes(codes.indices.view(2, 3, 3), codes.values.view(2, 3, 3), 10)
    torch.testing.assert_close(grid[..., 1].indices, codes.indices.view(2, 3, 3)[:, 1])
    torch.testing.assert_close(grid.to_dense(), codes.to_dense().view(2, 3, 10))
    both = SparseCodes.cat([codes[:2], codes[2:]])
    torch.testing.assert_close(both.values, codes.values)
    as64 = codes.to(dtype=torch.float64)
    assert as64.dtype == torch.float64 and torch.equal(as64.indices, codes.indices)
    torch.testing.assert_close(as64.values, codes.values.double(), rtol=0, atol=0)
    relu = codes.with_values(codes.values.relu())
    torch.testing.assert_close(relu.nnz(), (codes.values > 0).sum(-1))


def test_to_dense_sums_duplicate_indices():
    codes = SparseCodes(torch.tensor([[1, 1, 3]]), torch.tensor([[2.0, 0.5, -1.0]]), 4)
    torch.testing.assert_close(codes.to_dense(), torch.tensor([[0.0, 2.5, 0.0, -1.0]]))


# ---------------------------------------------------------------------------------------------
# dot
# ---------------------------------------------------------------------------------------------

dot_cases = st.fixed_dictionaries(
    {
        "q": st.integers(0, 5),
        "n": st.integers(0, 30),
        "k1": st.integers(0, 5),
        "k2": st.integers(0, 5),
        "dim": st.integers(1, 16),
        "seed": st.integers(0, 2**31 - 1),
        "dtype": st.sampled_from([torch.float32, torch.float64]),
    }
)


def _codes_pair(case, device="cpu"):
    q = make_codes(case["q"], case["k1"], case["dim"], case["seed"], case["dtype"], device)
    c = make_codes(case["n"], case["k2"], case["dim"], case["seed"] + 1, case["dtype"], device)
    return q, c


@given(case=dot_cases)
def test_reference_dot_is_the_pairwise_sum(case):
    q, c = _codes_pair({**case, "q": min(case["q"], 3), "n": min(case["n"], 6)})
    got = q.dot(c, impl="reference")
    assert got.shape == (len(q), len(c)) and got.dtype == case["dtype"]
    torch.testing.assert_close(got.double(), pairwise_scores(q, c), **_tols(case["dtype"]))


@given(case=dot_cases)
@example(case={"q": 0, "n": 4, "k1": 2, "k2": 2, "dim": 5, "seed": 0, "dtype": torch.float32})
@example(case={"q": 3, "n": 0, "k1": 2, "k2": 2, "dim": 5, "seed": 0, "dtype": torch.float64})
@example(case={"q": 3, "n": 4, "k1": 0, "k2": 2, "dim": 5, "seed": 0, "dtype": torch.float32})
def test_torch_dot_matches_reference(case):
    q, c = _codes_pair(case)
    got = q.dot(c, impl="torch")
    assert got.shape == (len(q), len(c)) and got.dtype == case["dtype"]
    torch.testing.assert_close(got, q.dot(c, impl="reference"), **_tols(case["dtype"]))
    # On CPU "auto" is the torch path.
    torch.testing.assert_close(q.dot(c), got, rtol=0, atol=0)


@pytest.mark.parametrize(("n_q", "n_c"), [(5, 37), (37, 5)])
def test_torch_dot_chunks(monkeypatch, n_q, n_c):
    # Tiny budgets force several table and row chunks, in both orientations (Q <= N densifies
    # the queries, Q > N the codes).
    monkeypatch.setattr(topk_module, "_TABLE_ELEMS", 40)
    monkeypatch.setattr(topk_module, "_OUT_ELEMS", 6)
    q = make_codes(n_q, 3, 16, seed=4, dtype=torch.float64)
    c = make_codes(n_c, 4, 16, seed=5, dtype=torch.float64)
    torch.testing.assert_close(q.dot(c, impl="torch"), q.dot(c, impl="reference"))


def test_dot_of_topk_codes_and_all_zero_values():
    x = make_x((7, 40), seed=6, dtype=torch.float32)
    y = make_x((50, 40), seed=7, dtype=torch.float32)
    q, c = topk_codes(x, 3), topk_codes(y, 8)
    ref = q.dot(c, impl="reference")
    torch.testing.assert_close(ref, q.to_dense() @ c.to_dense().T)
    torch.testing.assert_close(q.dot(c, impl="torch"), ref)
    zero = c.with_values(torch.zeros_like(c.values))
    torch.testing.assert_close(q.dot(zero, impl="torch"), torch.zeros(7, 50))


def test_torch_dot_gradients_match_reference():
    q = make_codes(4, 3, 12, seed=8, dtype=torch.float64)
    c = make_codes(9, 2, 12, seed=9, dtype=torch.float64)
    weight = torch.randn(4, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    grads = {}
    for impl in ("reference", "torch"):
        qv = q.values.clone().requires_grad_()
        cv = c.values.clone().requires_grad_()
        (q.with_values(qv).dot(c.with_values(cv), impl=impl) * weight).sum().backward()
        grads[impl] = (qv.grad, cv.grad)
    torch.testing.assert_close(grads["torch"], grads["reference"])


@needs_triton
@given(case=dot_cases)
@example(case={"q": 0, "n": 4, "k1": 2, "k2": 2, "dim": 5, "seed": 0, "dtype": torch.float32})
@example(case={"q": 3, "n": 0, "k1": 2, "k2": 2, "dim": 5, "seed": 0, "dtype": torch.float32})
@example(case={"q": 3, "n": 4, "k1": 2, "k2": 0, "dim": 5, "seed": 0, "dtype": torch.float64})
def test_triton_dot_matches_reference(case):
    q, c = _codes_pair(case, TRITON_DEVICE)
    got = q.dot(c, impl="triton")
    assert got.shape == (len(q), len(c)) and got.dtype == case["dtype"]
    torch.testing.assert_close(got, q.dot(c, impl="reference"), **_tols(case["dtype"]))


@needs_triton
def test_triton_dot_multi_block_and_half():
    # More rows than one 16 x 128 tile in both directions; float16 accumulates in float32.
    q = make_codes(20, 4, 64, seed=10, dtype=torch.float32, device=TRITON_DEVICE)
    c = make_codes(150, 3, 64, seed=11, dtype=torch.float32, device=TRITON_DEVICE)
    torch.testing.assert_close(q.dot(c, impl="triton"), q.dot(c, impl="reference"))
    q16, c16 = q.to(dtype=torch.float16), c.to(dtype=torch.float16)
    expected = q.dot(c, impl="reference").to(torch.float16)
    torch.testing.assert_close(q16.dot(c16, impl="triton"), expected, **_tols(torch.float16))


@needs_triton
def test_triton_dot_refuses_autograd():
    q = make_codes(2, 2, 8, seed=12, device=TRITON_DEVICE)
    c = make_codes(3, 2, 8, seed=13, device=TRITON_DEVICE)
    with pytest.raises(RuntimeError, match="no autograd"):
        q.with_values(q.values.clone().requires_grad_()).dot(c, impl="triton")


# ---------------------------------------------------------------------------------------------
# Bad inputs
# ---------------------------------------------------------------------------------------------

X = torch.randn(3, 5)
NAN_X = torch.tensor([[1.0, float("nan"), 2.0]])
GOOD = make_codes(3, 2, 8, seed=0)


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (lambda: topk_codes(X, 2.0), TypeError, r"k must be an int, got float"),
        (lambda: topk_codes(X, True), TypeError, r"k must be an int, got bool"),
        (lambda: topk_codes(X, 0), ValueError, r"k must be >= 1 and <= 5, got 0"),
        (lambda: topk_codes(X, 6), ValueError, r"k must be >= 1 and <= 5, got 6"),
        (
            lambda: topk_codes(torch.zeros(2, 0), 1),
            ValueError,
            r"has size 0 in x of shape \(2, 0\)",
        ),
        (
            lambda: topk_codes(X.long(), 2),
            TypeError,
            r"x must have a floating-point dtype, got torch.int64",
        ),
        (lambda: topk_codes([1.0, 2.0], 1), TypeError, r"x must be a torch.Tensor, got list"),
        (lambda: topk_codes(torch.tensor(1.0), 1), ValueError, r"at least 1 dimension"),
        (lambda: topk_codes(NAN_X, 1), ValueError, r"x must not contain NaN.*index \(0, 1\)"),
        (lambda: topk_mask(NAN_X, 1), ValueError, r"scores must not contain NaN"),
        (
            lambda: topk_mask(X, 2, dim=2),
            ValueError,
            r"dim must be in \[-2, 1\] for scores of shape \(3, 5\), got 2",
        ),
        (lambda: topk_mask(X, 2, dim=-3), ValueError, r"dim must be in \[-2, 1\]"),
        (lambda: topk_mask(X, 2, dim=0.5), TypeError, r"dim must be an int"),
        (lambda: topk_mask(X, 4, dim=0), ValueError, r"k must be >= 1 and <= 3, got 4"),
        (lambda: topk_mask(X.int(), 1), TypeError, r"scores must have a floating-point dtype"),
        (lambda: topk_mask(torch.tensor(1.0), 1), ValueError, r"at least 1 dimension"),
        (
            lambda: SparseCodes(torch.tensor([[1, 2]], dtype=torch.int32), torch.ones(1, 2), 4),
            TypeError,
            r"indices must have dtype torch.int64, got torch.int32",
        ),
        (
            lambda: SparseCodes(torch.tensor([[1, 2]]), torch.ones(1, 2, dtype=torch.int64), 4),
            TypeError,
            r"values must have a floating-point dtype",
        ),
        (
            lambda: SparseCodes(torch.tensor([[1, 2]]), torch.ones(1, 3), 4),
            ValueError,
            r"indices and values must have the same shape, got \(1, 2\) and \(1, 3\)",
        ),
        (
            lambda: SparseCodes(torch.tensor([[1, 4]]), torch.ones(1, 2), 4),
            ValueError,
            r"indices must lie in \[0, dim=4\), found 4 at index \(0, 1\)",
        ),
        (
            lambda: SparseCodes(torch.tensor([[-1, 2]]), torch.ones(1, 2), 4),
            ValueError,
            r"found -1 at index \(0, 0\)",
        ),
        (
            lambda: SparseCodes(torch.tensor([[1, 2]]), torch.ones(1, 2), 0),
            ValueError,
            r"dim must be >= 1, got 0",
        ),
        (
            lambda: SparseCodes(torch.tensor([[1, 2]]), torch.ones(1, 2), 4.0),
            TypeError,
            r"dim must be an int",
        ),
        (
            lambda: SparseCodes(torch.tensor(1), torch.tensor(1.0), 4),
            ValueError,
            r"indices must have at least 1 dimension",
        ),
        (
            lambda: SparseCodes(torch.tensor([[1, 2]]), torch.ones(1, 2, device="meta"), 4),
            ValueError,
            r"same device",
        ),
        (
            lambda: GOOD.dot(make_codes(2, 2, 9, seed=1)),
            ValueError,
            r"same dim, got self.dim=8 and other.dim=9",
        ),
        (
            lambda: GOOD.dot(GOOD.to(dtype=torch.float64)),
            TypeError,
            r"same values dtype, got torch.float32 and torch.float64",
        ),
        (lambda: GOOD.dot(GOOD.to("meta")), ValueError, r"same device, got cpu and meta"),
        (lambda: GOOD.dot(GOOD.indices), TypeError, r"other must be SparseCodes, got Tensor"),
        (
            lambda: GOOD[0].dot(GOOD),
            ValueError,
            r"dot needs 2-D codes \(self as \[Q, k1\]\), got self.indices of shape \(2,\)",
        ),
        (
            lambda: GOOD.dot(SparseCodes(GOOD.indices[None], GOOD.values[None], 8)),
            ValueError,
            r"other as \[N, k2\]",
        ),
        (lambda: GOOD.dot(GOOD, impl="fast"), ValueError, r"impl must be one of"),
        (lambda: GOOD.to(dtype=torch.int32), TypeError, r"dtype must be a floating-point dtype"),
        (lambda: GOOD.with_values(torch.ones(3, 3)), ValueError, r"same shape"),
        (lambda: SparseCodes.cat([]), ValueError, r"non-empty"),
        (
            lambda: SparseCodes.cat([GOOD, make_codes(2, 3, 8, seed=1)]),
            ValueError,
            r"codes\[1\].k must equal codes\[0\].k=2, got 3",
        ),
        (
            lambda: SparseCodes.cat([GOOD, make_codes(2, 2, 9, seed=1)]),
            ValueError,
            r"codes\[1\].dim must equal",
        ),
        (lambda: GOOD[0][0], IndexError, r"cannot index a single code"),
        (lambda: GOOD[0, 1], IndexError, r"too many indices"),
    ],
)
def test_bad_inputs_raise(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only refusal")
@pytest.mark.skipif(triton_interpreting(), reason="the interpreter makes Triton runnable on CPU")
def test_triton_on_cpu_without_interpreter_raises():
    with pytest.raises(RuntimeError, match="needs CUDA tensors"):
        GOOD.dot(GOOD, impl="triton")


# ---------------------------------------------------------------------------------------------
# Native CUDA (skipped without a GPU)
# ---------------------------------------------------------------------------------------------


@pytest.mark.gpu
def test_cuda_topk_codes_match_cpu_with_ties():
    x = make_x((512, 4096), seed=20, dtype=torch.float32)  # heavy ties on every row
    x[:256] = torch.randn(256, 4096, generator=torch.Generator().manual_seed(21))
    for k in (1, 2, 8, 64):
        got = topk_codes(x.cuda(), k)
        torch.testing.assert_close(got.indices.cpu(), topk_codes(x, k).indices, rtol=0, atol=0)
        mask = topk_mask(x.cuda(), k, dim=0).cpu()
        torch.testing.assert_close(mask, topk_mask(x, k, dim=0), rtol=0, atol=0)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("k", [2, 8, 32])
def test_cuda_triton_dot_large(dtype, k):
    q = make_codes(64, k, 4096, seed=22, dtype=dtype, device="cuda")
    c = make_codes(20_000, k, 4096, seed=23, dtype=dtype, device="cuda")
    # The spec is the exact sum of the values as stored (already rounded to dtype), rounded
    # once; comparing against unrounded float64 values failed bfloat16 at k = 32 on an H200
    # (13 of 1.28M scores off by up to 0.055 from the inputs' own rounding).
    exact = q.to(dtype=torch.float64).dot(c.to(dtype=torch.float64), impl="reference")
    expected = exact.to(dtype)
    torch.testing.assert_close(q.dot(c, impl="triton"), expected, **_tols(dtype))
    torch.testing.assert_close(q.dot(c, impl="torch"), expected, **_tols(dtype))
    torch.testing.assert_close(q.dot(c), expected, **_tols(dtype))  # auto -> triton on CUDA


@pytest.mark.gpu
def test_cuda_auto_falls_back_to_torch_for_autograd():
    q = make_codes(4, 3, 32, seed=24, device="cuda")
    c = make_codes(10, 3, 32, seed=25, device="cuda")
    qv = q.values.clone().requires_grad_()
    scores = q.with_values(qv).dot(c)  # auto: triton has no autograd, so torch is used
    scores.sum().backward()
    assert qv.grad is not None
    torch.testing.assert_close(scores.detach(), q.dot(c, impl="reference"))
