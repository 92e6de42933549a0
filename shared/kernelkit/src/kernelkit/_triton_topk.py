"""Triton kernel behind ``SparseCodes.dot(..., impl="triton")``: sparse-sparse scoring.

Imported lazily by :mod:`kernelkit.topk`: Triton decides at decoration time whether the kernel
is compiled or interpreted, so this module must load only after ``TRITON_INTERPRET`` is final.

Each program owns a ``BLOCK_Q x BLOCK_N`` tile of the score matrix. It walks the ``k2`` entries
of its codes and, for each, the ``k1`` entries of its queries, adding ``q_val * c_val`` wherever
the two indices are equal. That is ``k1 * k2`` compare-and-accumulate steps on the tile and no
dense vector anywhere, so the cost depends on ``k``, not on the width ``D``. Query entries are
re-read on every code entry; they are a few hundred bytes per tile and stay in L1.

Summing over all matching pairs is the bilinear form of the scatter-added dense vectors, so
duplicate indices within a row give the same answer as the dense reference.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

__all__ = ["SUPPORTED_DTYPES", "sparse_dot_triton"]

SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


@triton.jit
def _sparse_dot_kernel(
    q_idx_ptr,
    q_val_ptr,
    c_idx_ptr,
    c_val_ptr,
    out_ptr,
    Q,
    N,
    K1,
    K2,
    ACC: tl.constexpr,
    BLOCK_Q: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    pid_q = tl.program_id(0)
    pid_n = tl.program_id(1)
    # int64 offsets: Q * N outputs and N * k2 entries can pass 2**31.
    rq = (pid_q * BLOCK_Q + tl.arange(0, BLOCK_Q)).to(tl.int64)
    rn = (pid_n * BLOCK_N + tl.arange(0, BLOCK_N)).to(tl.int64)
    q_ok = rq < Q
    n_ok = rn < N
    acc = tl.zeros([BLOCK_Q, BLOCK_N], dtype=ACC)
    # Padding rows get different sentinel indices (-1 vs -2) so they never match each other;
    # their values are 0 anyway, this just keeps the intent obvious.
    for j in range(0, K2):
        c_idx = tl.load(c_idx_ptr + rn * K2 + j, mask=n_ok, other=-2)
        c_val = tl.load(c_val_ptr + rn * K2 + j, mask=n_ok, other=0.0).to(ACC)
        for i in range(0, K1):
            q_idx = tl.load(q_idx_ptr + rq * K1 + i, mask=q_ok, other=-1)
            q_val = tl.load(q_val_ptr + rq * K1 + i, mask=q_ok, other=0.0).to(ACC)
            hit = q_idx[:, None] == c_idx[None, :]
            acc += tl.where(hit, q_val[:, None] * c_val[None, :], 0.0)
    out = out_ptr + rq[:, None] * N + rn[None, :]
    tl.store(out, acc.to(out_ptr.dtype.element_ty), mask=q_ok[:, None] & n_ok[None, :])


def _pow2_at_most(n: int, cap: int) -> int:
    return min(cap, triton.next_power_of_2(max(1, n)))


def sparse_dot_triton(
    q_idx: torch.Tensor, q_val: torch.Tensor, c_idx: torch.Tensor, c_val: torch.Tensor
) -> torch.Tensor:
    """Scores ``[Q, N]`` of queries ``(q_idx, q_val) [Q, k1]`` against codes ``[N, k2]``.

    Arguments are assumed validated by :meth:`kernelkit.topk.SparseCodes.dot` (2-D, int64
    indices in range, same floating dtype and device, Q, N, k1, k2 >= 1). float16/bfloat16 and
    float32 accumulate in float32, float64 in float64; the result has the values' dtype.
    """
    if q_val.dtype not in SUPPORTED_DTYPES:
        raise TypeError(
            f"impl='triton' supports values of dtype {SUPPORTED_DTYPES}, got {q_val.dtype}"
        )
    q_idx, q_val = q_idx.contiguous(), q_val.contiguous()
    c_idx, c_val = c_idx.contiguous(), c_val.contiguous()
    n_q, k1 = q_idx.shape
    n_c, k2 = c_idx.shape
    out = torch.empty(n_q, n_c, dtype=q_val.dtype, device=q_val.device)
    acc = tl.float64 if q_val.dtype == torch.float64 else tl.float32
    # Tiles are small enough for registers on a GPU (16 x 128 fp32 accumulators over 4 warps);
    # in the interpreter the same sizes keep each numpy step reasonably wide.
    block_q = _pow2_at_most(n_q, 16)
    block_n = _pow2_at_most(n_c, 128)
    grid = (triton.cdiv(n_q, block_q), triton.cdiv(n_c, block_n))
    _sparse_dot_kernel[grid](
        q_idx,
        q_val,
        c_idx,
        c_val,
        out,
        n_q,
        n_c,
        k1,
        k2,
        ACC=acc,
        BLOCK_Q=block_q,
        BLOCK_N=block_n,
    )
    return out
