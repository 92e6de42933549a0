"""First-order linear recurrences (linear scans) along one axis of a tensor.

For inputs ``a`` and ``b`` of the same shape and a time axis ``dim`` of length ``T``::

    h_t = a_t * h_{t-1} + b_t        for t = 0, ..., T - 1   (elementwise)

with ``h_{-1} = h0`` (shape of ``a`` with ``dim`` removed) or ``0`` when ``h0`` is ``None``. The
result stacks every state ``h_t``, so it has the shape of ``b``. Each step is the affine map
``x -> a_t x + b_t``, and affine maps compose associatively::

    (a1, b1) then (a2, b2)  =  (a2 * a1, a2 * b1 + b2)

which is what lets the scan run in logarithmic depth instead of ``T`` sequential steps.

Three paths, picked by ``impl`` (see :mod:`kernelkit.backend`):

``"reference"``
    :func:`linear_scan_reference`, a Python loop over time: the specification. ``O(T)``
    vectorised steps, each one a kernel launch, so slow for long sequences.
``"torch"``
    A work-efficient (Blelloch-style) scan in plain torch: pair up neighbouring steps, recurse on
    the ``T/2`` composed pairs, then fill in the remaining states. ``O(N)`` work for ``N``
    elements, ``O(log T)`` depth (about ``2 log2 T`` rounds of batched tensor ops), vectorised
    over every non-time axis and differentiable through ordinary autograd.
``"triton"``
    A Triton kernel (``kernelkit._triton_scan``): the tensor is viewed as ``(rows, T, cols)``,
    each program owns a block of columns of one row and walks time in tiles, scanning each
    tile with ``tl.associative_scan`` and carrying the last state to the next tile. ``O(N)``
    work, one pass over memory. The backward pass is the same kernel run backwards in time;
    it is first-order only (double backward raises), unlike the torch path.
    float16 and bfloat16 inputs are accumulated in float32 and rounded back on store; float32
    and float64 accumulate in their own dtype.

Finiteness is deliberately not checked: NaN and ±inf propagate as the arithmetic dictates.
The parallel paths multiply the ``a`` values in a different order from the loop, so where
partial products over- or underflow (large ``|a|`` over long spans, or ±inf inputs) they can
give ``inf``/``nan``/``0`` at different positions than the reference does. With ``|a| > 1``
the states themselves grow geometrically and overflow in every path alike.

When ``h0`` is ``None`` the first step is ``h_0 = b_0`` exactly: ``a_0`` is not used, and its
gradient is zero.
"""

from __future__ import annotations

import torch

from kernelkit.backend import resolve_impl
from kernelkit.validation import check_floating

__all__ = ["linear_scan", "linear_scan_reference"]


def _validate(a: object, b: object, h0: object, dim: object) -> int:
    """Check the arguments shared by every path; return ``dim`` made non-negative."""
    check_floating("a", a)  # type: ignore[arg-type]
    check_floating("b", b)  # type: ignore[arg-type]
    assert isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)
    if a.shape != b.shape:
        raise ValueError(
            f"a and b must have the same shape (broadcasting is not supported), got "
            f"{tuple(a.shape)} and {tuple(b.shape)}"
        )
    if a.dtype != b.dtype:
        raise TypeError(f"a and b must have the same dtype, got {a.dtype} and {b.dtype}")
    if a.device != b.device:
        raise ValueError(f"a and b must be on the same device, got {a.device} and {b.device}")
    if a.ndim == 0:
        raise ValueError("a and b must have at least 1 dimension (the time axis), got a 0-d tensor")
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise TypeError(f"dim must be an int, got {type(dim).__name__} ({dim!r})")
    if not -a.ndim <= dim < a.ndim:
        raise ValueError(
            f"dim must be in [{-a.ndim}, {a.ndim - 1}] for inputs of shape {tuple(a.shape)}, "
            f"got {dim}"
        )
    dim %= a.ndim
    if h0 is not None:
        check_floating("h0", h0)  # type: ignore[arg-type]
        assert isinstance(h0, torch.Tensor)
        expected = a.shape[:dim] + a.shape[dim + 1 :]
        if h0.shape != expected:
            raise ValueError(
                f"h0 must have shape {tuple(expected)} (the shape of a, {tuple(a.shape)}, "
                f"without dim {dim}), got {tuple(h0.shape)}"
            )
        if h0.dtype != a.dtype:
            raise TypeError(f"h0 must have the dtype of a ({a.dtype}), got {h0.dtype}")
        if h0.device != a.device:
            raise ValueError(f"h0 must be on the device of a ({a.device}), got {h0.device}")
    return dim


def linear_scan_reference(
    a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None = None, dim: int = 1
) -> torch.Tensor:
    """Sequential specification of :func:`linear_scan`: one step per time index.

    Same arguments, errors and result as :func:`linear_scan`; differentiable through autograd.
    """
    dim = _validate(a, b, h0, dim)
    steps = a.shape[dim]
    if steps == 0:
        return b.clone()
    states = []
    h = h0
    for t in range(steps):
        a_t, b_t = a.select(dim, t), b.select(dim, t)
        # h0=None means h_{-1} = 0, so h_0 = b_0 without touching a_0 (0 * inf would be NaN).
        h = b_t if h is None else a_t * h + b_t
        states.append(h)
    return torch.stack(states, dim)


def _step(x: torch.Tensor, dim: int, start: int, stop: int | None = None) -> torch.Tensor:
    """``x[..., start:stop:2, ...]`` with the slice on axis ``dim``."""
    index = (slice(None),) * dim + (slice(start, stop, 2),)
    return x[index]


def _scan_zero_init(a: torch.Tensor, b: torch.Tensor, dim: int) -> torch.Tensor:
    """Blelloch-style scan with ``h_{-1} = 0``; ``a``'s first step is never read."""
    steps = a.shape[dim]
    if steps == 1:
        return b
    n_odd = steps // 2
    a_even, b_even = _step(a, dim, 0), _step(b, dim, 0)
    a_odd, b_odd = _step(a, dim, 1), _step(b, dim, 1)
    # Each odd step composed with the even step before it: the recursion then sees a sequence
    # of half the length whose states are exactly h_1, h_3, h_5, ...
    a_pair = a_odd * a_even.narrow(dim, 0, n_odd)
    b_pair = a_odd * b_even.narrow(dim, 0, n_odd) + b_odd
    h_odd = _scan_zero_init(a_pair, b_pair, dim)
    # Even states h_{2j} (j >= 1) are one step on from h_{2j-1}; h_0 = b_0.
    n_rest = a_even.shape[dim] - 1
    a_rest, b_rest = a_even.narrow(dim, 1, n_rest), b_even.narrow(dim, 1, n_rest)
    h_even_rest = a_rest * h_odd.narrow(dim, 0, n_rest) + b_rest
    h_even = torch.cat([b_even.narrow(dim, 0, 1), h_even_rest], dim)
    # Interleave h_0, h_1, h_2, ... by stacking on a new axis right after dim and merging.
    paired = torch.stack([h_even.narrow(dim, 0, n_odd), h_odd], dim + 1).flatten(dim, dim + 1)
    if n_rest == n_odd:  # odd length: h_{T-1} is even and has no partner
        paired = torch.cat([paired, h_even.narrow(dim, n_rest, 1)], dim)
    return paired


def _linear_scan_torch(
    a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None, dim: int
) -> torch.Tensor:
    if a.shape[dim] == 0:
        return b.clone()
    if h0 is not None:
        # Folding h0 into the first input leaves a zero-initial-state scan.
        first = a.narrow(dim, 0, 1) * h0.unsqueeze(dim) + b.narrow(dim, 0, 1)
        b = torch.cat([first, b.narrow(dim, 1, b.shape[dim] - 1)], dim)
    return _scan_zero_init(a, b, dim)


def linear_scan(
    a: torch.Tensor,
    b: torch.Tensor,
    h0: torch.Tensor | None = None,
    dim: int = 1,
    *,
    impl: str = "auto",
) -> torch.Tensor:
    """All states of ``h_t = a_t * h_{t-1} + b_t`` along axis ``dim``.

    Args:
        a: decay/gate coefficients, any shape with at least one dimension; floating dtype.
        b: inputs, the same shape, dtype and device as ``a`` (no broadcasting).
        h0: initial state ``h_{-1}``, shape of ``a`` with ``dim`` removed; ``None`` means zeros.
        dim: the time axis; negative values count from the end.
        impl: ``"auto"``, ``"reference"``, ``"torch"`` or ``"triton"`` (see the module docstring).

    Returns:
        ``h`` with the shape of ``b``: ``h`` indexed at ``t`` along ``dim`` is ``h_t``.

    Raises:
        TypeError: ``a``/``b``/``h0`` is not a tensor or not floating point, their dtypes
            differ, ``dim`` is not an int, or (``impl="triton"``) the dtype is not float16,
            bfloat16, float32 or float64.
        ValueError: shapes of ``a`` and ``b`` differ, ``h0`` has the wrong shape, tensors are on
            different devices, ``dim`` is out of range, or ``impl`` is unknown.
        RuntimeError: ``impl="triton"`` without Triton, or on a CPU tensor without
            ``TRITON_INTERPRET=1``.

    Inputs are not checked for NaN/inf; they propagate through the arithmetic.
    """
    dim = _validate(a, b, h0, dim)
    path = resolve_impl(impl, a.device)
    if path == "reference":
        return linear_scan_reference(a, b, h0, dim)
    if path == "torch":
        return _linear_scan_torch(a, b, h0, dim)
    # Imported here: Triton fixes interpret-vs-compile when the kernel is decorated, so the
    # module must not load before the caller (or conftest) has set TRITON_INTERPRET.
    from kernelkit._triton_scan import linear_scan_triton

    return linear_scan_triton(a, b, h0, dim)
