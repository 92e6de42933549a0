"""Triton kernel behind ``select_experts(..., impl="triton")``: the per-sequence budgeted pick.

Imported lazily by :mod:`seqtopk.selection`: Triton decides at decoration time whether the
kernel is compiled or interpreted, so this module must load only after ``TRITON_INTERPRET`` is
final.

The host side (torch) ranks each token's experts with one stable sort over ``E`` (score
descending, expert ascending), forces the top ``L`` ranks of every valid token, and hands the
kernel the candidate ranks ``[L, U)`` as a ``[B, T * W]`` score matrix (``W = U - L``). Only those
ranks can be added after the forced ones, and within a token they are already in greedy order,
so the per-token cap ``U`` is built in: the greedy reduces to "take the ``n`` best candidates of
the sequence in the order (score descending, token ascending, rank ascending)", with
``n = (k - L) * valid_tokens``.

The kernel finds those ``n`` without sorting the ``T * W`` candidates. One program owns one
sequence and:

1. maps each float32 score to an int32 key with the same order (sign-magnitude to two's
   complement; ``-0.0`` is folded into ``+0.0`` first, since the greedy treats them as equal);
2. bisects over the 2**32 keys for the largest threshold ``v`` with at least ``n`` candidates
   ``>= v`` (32 counting passes; padding tokens never count);
3. takes every candidate ``> v`` and, of those ``== v``, the first ``n - count(> v)`` in
   (token, rank) order, found with a running prefix count (``tl.cumsum`` per tile plus a carried
   total) — exactly the greedy's tie rule.

Work is ``33 * T * W`` loads and compares per sequence with no sort and no extra memory; reads
are coalesced tiles of ``BLOCK`` candidates.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

__all__ = ["select_candidates_triton"]


@triton.jit
def _score_key(x):
    # -0.0 and +0.0 compare equal in the greedy; give them one key.
    x = tl.where(x == 0.0, 0.0, x)
    bits = x.to(tl.int32, bitcast=True)
    # Negative floats order backwards in their bit pattern: flip their magnitude bits.
    return bits ^ ((bits >> 31) & 0x7FFFFFFF)


@triton.jit
def _select_candidates_kernel(
    cand_ptr,
    valid_ptr,
    need_ptr,
    out_ptr,
    T,
    W,
    BLOCK: tl.constexpr,
):
    pid = tl.program_id(0).to(tl.int64)
    n_cand = T * W
    base = pid * n_cand
    need = tl.load(need_ptr + pid).to(tl.int64)
    offs = tl.arange(0, BLOCK)

    # Bisection invariant: count(key >= lo) >= need and count(key >= hi) < need (hi is past the
    # largest int32 key, so it holds for need >= 1; need == 0 ends at lo = 2**31 - 1 and takes
    # nothing below).
    lo = tl.full([], -2147483648, tl.int64)
    hi = tl.full([], 2147483648, tl.int64)
    for _ in range(32):
        mid = lo + (hi - lo) // 2
        count = tl.zeros([], dtype=tl.int64)
        for start in range(0, n_cand, BLOCK):
            idx = start + offs
            inside = idx < n_cand
            ok = inside & (tl.load(valid_ptr + pid * T + idx // W, mask=inside, other=0) != 0)
            key = _score_key(tl.load(cand_ptr + base + idx, mask=inside, other=0.0))
            count += tl.sum((ok & (key.to(tl.int64) >= mid)).to(tl.int64), axis=0)
        enough = count >= need
        lo = tl.where(enough, mid, lo)
        hi = tl.where(enough, hi, mid)

    # Everything above the threshold, then the first ties in (token, rank) order.
    greater = tl.zeros([], dtype=tl.int64)
    for start in range(0, n_cand, BLOCK):
        idx = start + offs
        inside = idx < n_cand
        ok = inside & (tl.load(valid_ptr + pid * T + idx // W, mask=inside, other=0) != 0)
        key = _score_key(tl.load(cand_ptr + base + idx, mask=inside, other=0.0))
        greater += tl.sum((ok & (key.to(tl.int64) > lo)).to(tl.int64), axis=0)
    ties_wanted = need - greater
    ties_seen = tl.zeros([], dtype=tl.int64)
    for start in range(0, n_cand, BLOCK):
        idx = start + offs
        inside = idx < n_cand
        ok = inside & (tl.load(valid_ptr + pid * T + idx // W, mask=inside, other=0) != 0)
        key = _score_key(tl.load(cand_ptr + base + idx, mask=inside, other=0.0)).to(tl.int64)
        tie = ok & (key == lo)
        rank_in_ties = ties_seen + tl.cumsum(tie.to(tl.int64), axis=0)  # inclusive, 1-based
        take = ok & ((key > lo) | (tie & (rank_in_ties <= ties_wanted)))
        tl.store(out_ptr + base + idx, take.to(tl.int8), mask=inside)
        ties_seen += tl.sum(tie.to(tl.int64), axis=0)


def select_candidates_triton(
    candidates: torch.Tensor, valid: torch.Tensor, need: torch.Tensor
) -> torch.Tensor:
    """Which candidates each sequence takes: a boolean ``[B, T, W]``.

    ``candidates`` is ``[B, T, W]`` float32 (each token's scores at ranks ``[L, U)``, descending
    along ``W``), ``valid`` is ``[B, T]`` bool and ``need`` is ``[B]`` integer (how many to take,
    at most ``W`` times the valid tokens). Per sequence the result holds the ``need`` best valid
    candidates in the order (score descending, token ascending, rank ascending).
    """
    batch, length, width = candidates.shape
    out = torch.empty(batch, length, width, dtype=torch.int8, device=candidates.device)
    if out.numel() == 0:
        return out.bool()
    cand = candidates.detach().float().contiguous()
    valid8 = valid.to(torch.int8).contiguous()
    need64 = need.to(device=candidates.device, dtype=torch.int64).contiguous()
    # 1024 candidates per tile (4 warps x 8 each on a GPU); small sequences use a smaller tile.
    block = min(1024, triton.next_power_of_2(length * width))
    _select_candidates_kernel[(batch,)](cand, valid8, need64, out, length, width, BLOCK=block)
    return out.bool()
