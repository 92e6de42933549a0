"""Triton kernel behind ``linear_scan(..., impl="triton")``.

Imported lazily by :mod:`kernelkit.scan`: Triton decides at decoration time whether the kernel
is compiled or interpreted, so this module must load only after ``TRITON_INTERPRET`` is final.

Layout: a contiguous tensor with time axis ``dim`` is viewed, without copying, as
``(rows, T, cols)`` where ``rows``/``cols`` are the products of the sizes before/after ``dim``.
One program owns ``BLOCK_Q`` adjacent columns of one row, so its loads along a time step are
contiguous (coalesced), and walks time in tiles of ``BLOCK_T`` steps: ``tl.associative_scan``
composes the affine maps inside a tile, and the state after the tile's last step is carried
into the next one. Work is ``O(N)``; parallelism is ``rows * cdiv(cols, BLOCK_Q)`` programs
times the tile width.

The backward pass runs the same kernel with ``REVERSE``: ``g_t = a_{t+1} g_{t+1} + dL/dh_t``
is a linear scan backwards in time whose coefficient is ``a`` shifted by one, which the kernel
reads through index arithmetic instead of flipped copies.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch.autograd.function import once_differentiable

__all__ = ["SUPPORTED_DTYPES", "linear_scan_triton", "scan_launch"]

SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)

# Largest tile (BLOCK_T * BLOCK_Q); keeps the two fp64 scan operands within registers.
_MAX_TILE = 2048
_MAX_BLOCK_Q = 64


@triton.jit
def _compose(a_left, b_left, a_right, b_right):
    # (a_left, b_left) is the earlier step: x -> a_right * (a_left * x + b_left) + b_right.
    return a_right * a_left, a_right * b_left + b_right


@triton.jit
def _linear_scan_kernel(
    a_ptr,
    b_ptr,
    h0_ptr,
    out_ptr,
    T,
    Q,
    n_qblocks,
    HAS_H0: tl.constexpr,
    REVERSE: tl.constexpr,
    ACC: tl.constexpr,
    BLOCK_T: tl.constexpr,
    BLOCK_Q: tl.constexpr,
):
    pid = tl.program_id(0)
    row = pid // n_qblocks
    q = (pid % n_qblocks) * BLOCK_Q + tl.arange(0, BLOCK_Q)
    q_ok = q < Q
    # int64 so offsets past 2**31 elements still address correctly.
    base = row.to(tl.int64) * T * Q
    if HAS_H0:
        carry = tl.load(h0_ptr + row.to(tl.int64) * Q + q, mask=q_ok, other=0.0).to(ACC)
    else:
        carry = tl.zeros([BLOCK_Q], dtype=ACC)
    steps = tl.arange(0, BLOCK_T)
    for t0 in range(0, T, BLOCK_T):
        # Position in scan order; int64 so t * Q cannot wrap for rows over 2**31 elements.
        s = (t0 + steps).to(tl.int64)
        if REVERSE:
            t_b = T - 1 - s
            t_a = T - s  # step s multiplies the later state g_{t+1} by a_{t+1}
        else:
            t_b = s
            t_a = s
        ok = (s < T)[:, None] & q_ok[None, :]
        # Without an initial state the first coefficient multiplies zero; loading it as 0
        # keeps an inf there from turning 0 * inf into NaN (and t_a = T is out of bounds).
        a_ok = ok if HAS_H0 else ok & (s > 0)[:, None]
        # Padding past T comes after every real step, so its value never reaches a real state.
        a = tl.load(a_ptr + base + t_a[:, None] * Q + q[None, :], mask=a_ok, other=0.0).to(ACC)
        b = tl.load(b_ptr + base + t_b[:, None] * Q + q[None, :], mask=ok, other=0.0).to(ACC)
        a_cum, b_cum = tl.associative_scan((a, b), 0, _compose)
        h = a_cum * carry[None, :] + b_cum
        tl.store(
            out_ptr + base + t_b[:, None] * Q + q[None, :],
            h.to(out_ptr.dtype.element_ty),
            mask=ok,
        )
        # Tiles cannot be indexed by row, so select the last state with where + sum (exact:
        # one term survives).
        carry = tl.sum(tl.where((steps == BLOCK_T - 1)[:, None], h, 0.0), axis=0)


def _blocks(steps: int, cols: int) -> tuple[int, int]:
    block_q = min(triton.next_power_of_2(max(cols, 1)), _MAX_BLOCK_Q)
    block_t = min(triton.next_power_of_2(max(steps, 1)), max(_MAX_TILE // block_q, 1))
    return block_t, block_q


def scan_launch(
    a: torch.Tensor,
    b: torch.Tensor,
    h0: torch.Tensor | None,
    dim: int,
    *,
    reverse: bool = False,
    block_t: int | None = None,
) -> torch.Tensor:
    """Run the kernel once (no autograd). ``dim`` must be non-negative; inputs pre-validated.

    With ``reverse=False`` returns ``h_t = a_t h_{t-1} + b_t``; with ``reverse=True`` (``h0``
    must be ``None``) returns ``g_t = a_{t+1} g_{t+1} + b_t`` with ``g_T = 0``. ``block_t``
    overrides the time tile (a power of two), which tests use to exercise the carry.
    """
    shape = b.shape
    steps = shape[dim]
    rows = shape[:dim].numel()
    cols = shape[dim + 1 :].numel()
    out = torch.empty(shape, dtype=b.dtype, device=b.device)
    if out.numel() == 0:
        return out
    a = a.contiguous()
    b = b.contiguous()
    bt, bq = _blocks(steps, cols)
    if block_t is not None:
        bt = block_t
    n_qblocks = triton.cdiv(cols, bq)
    acc = tl.float64 if b.dtype == torch.float64 else tl.float32
    _linear_scan_kernel[(rows * n_qblocks,)](
        a,
        b,
        h0.contiguous() if h0 is not None else b,  # dummy pointer, never read without HAS_H0
        out,
        steps,
        cols,
        n_qblocks,
        HAS_H0=h0 is not None,
        REVERSE=reverse,
        ACC=acc,
        BLOCK_T=bt,
        BLOCK_Q=bq,
    )
    return out


class _LinearScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, b, h0, dim):
        h = scan_launch(a, b, h0, dim)
        ctx.save_for_backward(a, h, h0)
        ctx.dim = dim
        return h

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_h):
        a, h, h0 = ctx.saved_tensors
        dim = ctx.dim
        # g_t = dL/dh_t including the paths through later states; it is also dL/db_t.
        g = scan_launch(a, grad_h, None, dim, reverse=True)
        grad_a = grad_h0 = None
        steps = h.shape[dim]
        if ctx.needs_input_grad[0]:
            if steps == 0:
                grad_a = torch.zeros_like(a)
            else:
                # dL/da_t = g_t * h_{t-1}, with h_{-1} = h0 or 0.
                first = (
                    h0.unsqueeze(dim) if h0 is not None else torch.zeros_like(g.narrow(dim, 0, 1))
                )
                grad_a = g * torch.cat([first, h.narrow(dim, 0, steps - 1)], dim)
        if h0 is not None and ctx.needs_input_grad[2]:
            grad_h0 = torch.zeros_like(h0) if steps == 0 else a.select(dim, 0) * g.select(dim, 0)
        grad_b = g if ctx.needs_input_grad[1] else None
        return grad_a, grad_b, grad_h0, None


def linear_scan_triton(
    a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None, dim: int
) -> torch.Tensor:
    """Differentiable Triton linear scan; arguments already validated, ``dim`` non-negative."""
    if a.dtype not in SUPPORTED_DTYPES:
        allowed = ", ".join(str(d) for d in SUPPORTED_DTYPES)
        raise TypeError(f"impl='triton' needs a dtype in ({allowed}), got {a.dtype}")
    return _LinearScan.apply(a, b, h0, dim)
