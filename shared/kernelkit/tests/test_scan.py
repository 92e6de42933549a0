"""Tests for kernelkit.scan: torch and Triton paths against the sequential reference."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from kernelkit.backend import triton_available, triton_interpreting
from kernelkit.scan import linear_scan, linear_scan_reference

TRITON_RUNNABLE = triton_available() and (torch.cuda.is_available() or triton_interpreting())
needs_triton = pytest.mark.skipif(
    not TRITON_RUNNABLE,
    reason="Triton path needs CUDA or TRITON_INTERPRET=1 set before kernels are imported",
)
# The Triton tests run on whatever device Triton can use here: CUDA, or CPU via the interpreter.
TRITON_DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def _tols(dtype: torch.dtype) -> tuple[float, float]:
    return {
        torch.float64: (1e-10, 1e-11),
        torch.float32: (1e-4, 1e-5),
        torch.float16: (2e-2, 2e-2),
        torch.bfloat16: (5e-2, 5e-2),
    }[dtype]


def assert_scan_close(
    actual: torch.Tensor, expected: torch.Tensor, tol_dtype: torch.dtype | None = None
) -> None:
    """assert_close with atol scaled by the result's magnitude.

    The parallel paths add the same terms in another order, so their rounding error tracks the
    size of the largest terms, which with |a| up to 1.1 can exceed a single state by far.
    """
    rtol, atol = _tols(tol_dtype or expected.dtype)
    scale = max(1.0, expected.detach().abs().max().item()) if expected.numel() else 1.0
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol * scale)


def make_inputs(shape, dim, with_h0, seed, dtype, device="cpu", a_bound=1.1):
    gen = torch.Generator().manual_seed(seed)
    a = (torch.rand(shape, generator=gen, dtype=dtype) * 2 - 1) * a_bound
    b = torch.randn(shape, generator=gen, dtype=dtype)
    h0 = None
    if with_h0:
        d = dim % len(shape)
        h0 = torch.randn(shape[:d] + shape[d + 1 :], generator=gen, dtype=dtype).to(device)
    return a.to(device), b.to(device), h0


@st.composite
def scan_cases(draw, max_t=70, max_size=3, allow_empty_batch=True):
    lead = draw(st.lists(st.integers(0 if allow_empty_batch else 1, max_size), max_size=2))
    trail = draw(st.lists(st.integers(1, max_size), max_size=2))
    steps = draw(st.integers(0, max_t))
    shape = (*lead, steps, *trail)
    dim = len(lead)
    if draw(st.booleans()):
        dim -= len(shape)
    return shape, dim, draw(st.booleans()), draw(st.integers(0, 2**31 - 1))


def grads_of(fn, a, b, h0, dim, weight):
    leaves = [
        x.detach().clone().requires_grad_(True) for x in (a, b) + ((h0,) if h0 is not None else ())
    ]
    h = fn(*leaves[:2], leaves[2] if h0 is not None else None, dim)
    loss = (weight * h).sum()
    grads = torch.autograd.grad(loss, leaves, allow_unused=True, materialize_grads=True)
    return h, grads


# ---------------------------------------------------------------- torch path vs reference


@given(case=scan_cases(), dtype=st.sampled_from([torch.float32, torch.float64]))
@example(case=((3, 67, 2), 1, True, 0), dtype=torch.float32)
@example(case=((2, 3, 45), -1, False, 1), dtype=torch.float64)
def test_torch_matches_reference(case, dtype):
    shape, dim, with_h0, seed = case
    a, b, h0 = make_inputs(shape, dim, with_h0, seed, dtype)
    expected = linear_scan_reference(a, b, h0, dim)
    actual = linear_scan(a, b, h0, dim, impl="torch")
    assert actual.shape == b.shape and actual.dtype == dtype
    assert_scan_close(actual, expected)


@given(case=scan_cases(max_t=40))
@example(case=((2, 37, 3), 1, True, 0))
@example(case=((19, 2), 0, False, 1))
def test_torch_gradients_match_reference(case):
    shape, dim, with_h0, seed = case
    a, b, h0 = make_inputs(shape, dim, with_h0, seed, torch.float64)
    weight = torch.randn(
        shape, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64
    )
    ref_h, ref_grads = grads_of(linear_scan_reference, a, b, h0, dim, weight)
    h, grads = grads_of(lambda *x: linear_scan(*x, impl="torch"), a, b, h0, dim, weight)
    assert_scan_close(h, ref_h)
    for got, want in zip(grads, ref_grads, strict=True):
        assert_scan_close(got, want)


def test_torch_gradcheck():
    a, b, h0 = make_inputs((2, 5, 3), 1, True, 0, torch.float64)
    inputs = tuple(x.requires_grad_(True) for x in (a, b, h0))
    assert torch.autograd.gradcheck(lambda a, b, h0: linear_scan(a, b, h0, 1, impl="torch"), inputs)
    assert torch.autograd.gradgradcheck(
        lambda a, b, h0: linear_scan(a, b, h0, 1, impl="torch"), inputs
    )


def test_auto_on_cpu_is_torch_path():
    a, b, h0 = make_inputs((3, 33, 4), 1, True, 1, torch.float32)
    auto = linear_scan(a, b, h0)
    assert torch.equal(auto, linear_scan(a, b, h0, impl="torch"))
    assert_scan_close(auto, linear_scan_reference(a, b, h0))


def test_reference_impl_routes_to_reference():
    a, b, _ = make_inputs((2, 9), 1, False, 2, torch.float64)
    assert torch.equal(linear_scan(a, b, impl="reference"), linear_scan_reference(a, b))


def test_reference_small_case_by_hand():
    a = torch.tensor([[0.5, 2.0, -1.0]], dtype=torch.float64)
    b = torch.tensor([[1.0, 1.0, 3.0]], dtype=torch.float64)
    h0 = torch.tensor([4.0], dtype=torch.float64)
    # h0'=0.5*4+1=3, h1=2*3+1=7, h2=-7+3=-4; without h0: 1, 3, 0.
    expected = torch.tensor([[3.0, 7.0, -4.0]], dtype=torch.float64)
    for impl in ("reference", "torch"):
        torch.testing.assert_close(linear_scan(a, b, h0, impl=impl), expected, rtol=0, atol=1e-12)
        torch.testing.assert_close(
            linear_scan(a, b, impl=impl),
            torch.tensor([[1.0, 3.0, 0.0]], dtype=torch.float64),
            rtol=0,
            atol=1e-12,
        )


# ---------------------------------------------------------------- edge cases (cpu paths)

CPU_IMPLS = ["reference", "torch"]


@pytest.mark.parametrize("impl", CPU_IMPLS)
def test_single_step_is_b_or_one_step_from_h0(impl):
    a, b, h0 = make_inputs((3, 1, 2), 1, True, 3, torch.float64)
    torch.testing.assert_close(linear_scan(a, b, dim=1, impl=impl), b, rtol=0, atol=0)
    torch.testing.assert_close(
        linear_scan(a, b, h0, dim=1, impl=impl), a * h0[:, None] + b, rtol=1e-15, atol=1e-15
    )


@pytest.mark.parametrize("impl", CPU_IMPLS)
@pytest.mark.parametrize("shape,dim", [((3, 0, 2), 1), ((0,), 0), ((0, 5, 2), 1), ((4, 6, 0), -2)])
def test_empty_inputs_keep_shape(impl, shape, dim):
    a, b, h0 = make_inputs(shape, dim, True, 4, torch.float32)
    for init in (None, h0):
        out = linear_scan(a, b, init, dim, impl=impl)
        assert out.shape == b.shape
        assert out.dtype == b.dtype
        assert out.numel() == 0


@pytest.mark.parametrize("impl", CPU_IMPLS)
def test_first_coefficient_unused_without_h0(impl):
    a, b, _ = make_inputs((2, 7, 3), 1, False, 5, torch.float64)
    a[:, 0] = math.inf
    out = linear_scan(a, b, dim=1, impl=impl)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[:, 0], b[:, 0], rtol=0, atol=0)


@pytest.mark.parametrize("impl", CPU_IMPLS)
def test_nan_propagates_forward_only(impl):
    gen = torch.Generator().manual_seed(6)
    a = torch.rand(2, 10, generator=gen, dtype=torch.float64) * 0.5 + 0.5  # no zeros
    b = torch.randn(2, 10, generator=gen, dtype=torch.float64)
    b[0, 4] = math.nan
    out = linear_scan(a, b, dim=1, impl=impl)
    assert torch.isnan(out[0, 4:]).all()
    assert torch.isfinite(out[0, :4]).all() and torch.isfinite(out[1]).all()


@pytest.mark.parametrize("impl", CPU_IMPLS)
def test_non_contiguous_inputs(impl):
    a, b, h0 = make_inputs((5, 3, 17), 2, True, 7, torch.float32)
    at, bt = a.transpose(0, 1), b.transpose(0, 1)  # shape (3, 5, 17), time still last
    out = linear_scan(at, bt, h0.t(), -1, impl=impl)
    expected = linear_scan_reference(at.contiguous(), bt.contiguous(), h0.t().contiguous(), -1)
    assert_scan_close(out, expected)


# ---------------------------------------------------------------- bad inputs

A = torch.zeros(2, 3, 4)
B = torch.zeros(2, 3, 4)


@pytest.mark.parametrize("impl", ["reference", "torch", "auto"])
@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"a": [1.0, 2.0]}, TypeError, "a must be a torch.Tensor"),
        ({"b": torch.zeros(2, 3, 4, dtype=torch.int64)}, TypeError, "b must have a floating-point"),
        ({"a": torch.zeros(2, 3, 4, dtype=torch.complex64)}, TypeError, "a must have a floating"),
        ({"b": torch.zeros(2, 3, 1)}, ValueError, r"same shape \(broadcasting is not supported\)"),
        (
            {"b": torch.zeros(2, 3, 4, dtype=torch.float64)},
            TypeError,
            "a and b must have the same dtype",
        ),
        (
            {"b": torch.zeros(2, 3, 4, device="meta")},
            ValueError,
            "a and b must be on the same device",
        ),
        ({"h0": torch.zeros(2, 3)}, ValueError, r"h0 must have shape \(2, 4\)"),
        ({"h0": torch.zeros(2, 4, dtype=torch.float64)}, TypeError, "h0 must have the dtype of a"),
        ({"h0": torch.zeros(2, 4, device="meta")}, ValueError, "h0 must be on the device of a"),
        ({"h0": 0.0}, TypeError, "h0 must be a torch.Tensor"),
        ({"dim": 3}, ValueError, r"dim must be in \[-3, 2\].*got 3"),
        ({"dim": -4}, ValueError, r"dim must be in \[-3, 2\].*got -4"),
        ({"dim": 1.0}, TypeError, "dim must be an int"),
        ({"a": torch.tensor(1.0), "b": torch.tensor(1.0)}, ValueError, "at least 1 dimension"),
    ],
)
def test_bad_inputs_raise(impl, kwargs, error, match):
    args = {"a": A, "b": B, "h0": None, "dim": 1} | kwargs
    with pytest.raises(error, match=match):
        linear_scan(**args, impl=impl)
    with pytest.raises(error, match=match):
        linear_scan_reference(**args)


def test_unknown_impl_raises():
    with pytest.raises(ValueError, match="impl must be one of"):
        linear_scan(A, B, impl="cuda")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU refusal without CUDA")
def test_triton_on_cpu_without_interpreter_raises(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match="needs CUDA tensors"):
        linear_scan(A, B, impl="triton")


@needs_triton
def test_triton_rejects_unsupported_dtype():
    x = torch.zeros(2, 3, device=TRITON_DEVICE).to(torch.float8_e4m3fn)
    with pytest.raises(TypeError, match="impl='triton' needs a dtype in"):
        linear_scan(x, x, impl="triton")


# ---------------------------------------------------------------- Triton path


@needs_triton
@settings(max_examples=12)
@given(
    case=scan_cases(max_t=40, max_size=2),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
@example(case=((2, 37, 3), 1, True, 0), dtype=torch.float32)
@example(case=((3, 40), -1, True, 1), dtype=torch.float64)
def test_triton_matches_reference(case, dtype):
    shape, dim, with_h0, seed = case
    a, b, h0 = make_inputs(shape, dim, with_h0, seed, dtype, TRITON_DEVICE)
    actual = linear_scan(a, b, h0, dim, impl="triton")
    assert actual.shape == b.shape and actual.dtype == dtype
    assert_scan_close(actual, linear_scan_reference(a, b, h0, dim))


@needs_triton
@settings(max_examples=8)
@given(case=scan_cases(max_t=24, max_size=2), dtype=st.sampled_from([torch.float32, torch.float64]))
@example(case=((2, 21, 3), 1, True, 0), dtype=torch.float64)
@example(case=((2, 3, 17), -1, False, 1), dtype=torch.float32)
def test_triton_gradients_match_reference(case, dtype):
    shape, dim, with_h0, seed = case
    a, b, h0 = make_inputs(shape, dim, with_h0, seed, dtype, TRITON_DEVICE)
    gen = torch.Generator().manual_seed(seed + 1)
    weight = torch.randn(shape, generator=gen, dtype=dtype).to(TRITON_DEVICE)
    ref_h, ref_grads = grads_of(linear_scan_reference, a, b, h0, dim, weight)
    h, grads = grads_of(lambda *x: linear_scan(*x, impl="triton"), a, b, h0, dim, weight)
    assert_scan_close(h, ref_h)
    for got, want in zip(grads, ref_grads, strict=True):
        assert_scan_close(got, want)


def _sequential(a, b, h0, reverse):
    """Loop over (rows, T, cols) for the raw launcher, including its reverse mode."""
    out = torch.empty_like(b)
    steps = b.shape[1]
    h = torch.zeros_like(b[:, 0]) if h0 is None else h0
    order = range(steps - 1, -1, -1) if reverse else range(steps)
    for i, t in enumerate(order):
        coeff = a[:, t + 1] if reverse and t + 1 < steps else a[:, t]
        h = b[:, t] if i == 0 and h0 is None else coeff * h + b[:, t]
        out[:, t] = h
    return out


@needs_triton
@pytest.mark.parametrize("cols", [1, 3])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_triton_carry_across_time_tiles(cols, reverse, dtype):
    from kernelkit._triton_scan import scan_launch

    with_h0 = not reverse  # the reverse (gradient) scan never has an initial state
    a, b, h0 = make_inputs((2, 23, cols), 1, with_h0, 8, dtype, TRITON_DEVICE)
    out = scan_launch(a, b, h0, 1, reverse=reverse, block_t=4)  # 6 tiles, 5 carries
    assert_scan_close(out, _sequential(a, b, h0, reverse))


@needs_triton
def test_triton_gradcheck():
    a, b, h0 = make_inputs((2, 4, 2), 1, True, 9, torch.float64, TRITON_DEVICE)
    inputs = tuple(x.requires_grad_(True) for x in (a, b, h0))
    assert torch.autograd.gradcheck(
        lambda a, b, h0: linear_scan(a, b, h0, 1, impl="triton"), inputs
    )


@needs_triton
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_triton_half_precision_accumulates_in_float32(dtype):
    a, b, h0 = make_inputs((2, 30, 3), 1, True, 10, torch.float32, TRITON_DEVICE, a_bound=1.0)
    out = linear_scan(a.to(dtype), b.to(dtype), h0.to(dtype), 1, impl="triton")
    assert out.dtype == dtype
    expected = linear_scan_reference(a.to(dtype).float(), b.to(dtype).float(), h0.to(dtype).float())
    # Only the final rounding to the half dtype should separate it from a float32 loop.
    assert_scan_close(out.float(), expected, tol_dtype=dtype)


@needs_triton
def test_triton_edge_cases():
    a, b, h0 = make_inputs((3, 1, 2), 1, True, 11, torch.float64, TRITON_DEVICE)
    torch.testing.assert_close(linear_scan(a, b, dim=1, impl="triton"), b, rtol=0, atol=0)
    torch.testing.assert_close(
        linear_scan(a, b, h0, dim=1, impl="triton"), a * h0[:, None] + b, rtol=1e-15, atol=1e-15
    )
    a[:, 0] = math.inf
    torch.testing.assert_close(linear_scan(a, b, dim=1, impl="triton"), b, rtol=0, atol=0)
    for shape in [(3, 0, 2), (0, 5, 2)]:
        a, b, h0 = make_inputs(shape, 1, True, 12, torch.float32, TRITON_DEVICE)
        a.requires_grad_(True)
        h0.requires_grad_(True)
        out = linear_scan(a, b, h0, 1, impl="triton")
        assert out.shape == b.shape
        ga, gh = torch.autograd.grad(out.sum(), (a, h0))
        assert ga.shape == a.shape and gh.shape == h0.shape
        assert not gh.any()


@needs_triton
def test_triton_non_contiguous_inputs():
    a, b, h0 = make_inputs((5, 3, 17), 2, True, 13, torch.float32, TRITON_DEVICE)
    at, bt = a.transpose(0, 1), b.transpose(0, 1)
    out = linear_scan(at, bt, h0.t(), -1, impl="triton")
    assert_scan_close(out, linear_scan_reference(at, bt, h0.t(), -1))


# ---------------------------------------------------------------- native CUDA (skipped on CPU)


@pytest.mark.gpu
@pytest.mark.parametrize(
    "shape,dim", [((4, 3000, 96), 1), ((64, 5000), -1), ((2000, 3, 5), 0), ((2, 3, 700, 1), 2)]
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_triton_matches_torch_large(shape, dim, dtype):
    a, b, h0 = make_inputs(shape, dim, True, 14, dtype, "cuda", a_bound=1.0)
    for init in (None, h0):
        expected = linear_scan(a, b, init, dim, impl="torch")
        actual = linear_scan(a, b, init, dim, impl="triton")
        assert_scan_close(actual, expected)
    assert torch.equal(linear_scan(a, b, h0, dim), linear_scan(a, b, h0, dim, impl="triton"))


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_triton_gradients_match_torch(dtype):
    a, b, h0 = make_inputs((3, 1500, 40), 1, True, 15, dtype, "cuda", a_bound=1.0)
    weight = torch.randn(a.shape, dtype=dtype, device="cuda")
    _, want = grads_of(lambda *x: linear_scan(*x, impl="torch"), a, b, h0, 1, weight)
    _, got = grads_of(lambda *x: linear_scan(*x, impl="triton"), a, b, h0, 1, weight)
    for g, w in zip(got, want, strict=True):
        assert_scan_close(g, w)
