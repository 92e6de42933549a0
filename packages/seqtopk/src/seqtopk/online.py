"""Online (causal) SeqTopK for decoding, with a per-layer score cache.

At the m-th valid token of a sequence the router scores of all m valid tokens so far (the cache
plus the current row) compete for a virtual top-(m*k) set; the current token gets ``c`` experts,
where ``c`` is how many of its own scores fall inside that set (ties go to earlier tokens, then
lower expert indices), clamped to ``[L, U]`` and to the budget left, ``m*k - used``. Earlier
allocations are never revised, so the cumulative use after m valid tokens never exceeds m*k and
a token's routing depends only on past and current scores.

How it is computed. With the current token's scores ranked ``s_1 >= ... >= s_E`` (ties by
expert), ``s_j`` is inside the top m*k exactly when ``#(past scores >= s_j) + j <= m*k``, and only
``j <= U`` matters after the clamp. So a token needs U counts "how many past scores are >= x":

- **decode step** (one new token): the past scores of each row live in a few sorted runs of
  sizes that halve, like the digits of a binary counter (a log-structured merge): the counts are
  ``U`` binary searches per run, ``O(U log(mE))`` each run and ``O(log m)`` runs; the step's own
  ranking is a top-U of E scores. Appending the E new scores makes a new run and merges equal
  sizes, amortised ``O(E log(mE))`` per step (a merge of size n happens every n/E steps) instead
  of rewriting the whole sorted cache.
- **a prompt** (the first call of a state, many tokens at once) needs only each prefix's
  threshold ``tau_t``, the ``m_t k``-th best score among tokens ``<= t``: ``c_t`` is how many of
  the token's own scores rank at or above it. Scores below a floor that every prefix's threshold
  provably clears are dropped (all but about ``1.5k/E`` of them), the rest sorted once, and each
  ``tau_t`` located from per-block counts of the sorted list (see :func:`_inside_counts`). The
  sorted runs that decode steps search are built from the history at the first later call.
- **a prompt on the CPU with numba installed** (``impl="auto"`` or ``"numba"``) takes the numba
  kernel :func:`seqtopk._numba_routing.prompt_route` instead: the same thresholds, located in
  a running histogram of the kept scores by score bucket as the tokens arrive (no tables).
- **a later call with many tokens** (chunked prefill, speculative decoding) is routed in chunks
  of ``_CHUNK`` tokens against the runs: a token's past is the runs plus the earlier tokens of
  its own chunk (binary searches in each earlier token's sorted row).

Either way the budget clamp ``used_t = min(used_{t-1} + clamp(c_t, L, U), m_t k)`` is a capped
running sum with the closed form ``used_t = A_t + min(used_0, min_{s<=t}(m_s k - A_s))`` (``A``
the running sum of the clamped counts): one ``cumsum`` and one ``cummin``. The result equals
token-by-token routing exactly (tested against :func:`online_select_reference`).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from seqtopk.selection import (
    _checked_inputs,
    _numba_kernels,
    _ranked_top,
    resolve_bounds,
    resolve_path,
)

__all__ = ["ONLINE_IMPLS", "OnlineRoutingState", "online_select", "online_select_reference"]

# What routes a prompt (a state's first call): see ``OnlineRoutingState.empty``.
ONLINE_IMPLS = ("auto", "torch", "numba")

# Tokens per vectorised block of a prompt: the within-chunk work grows with the chunk (C^2 U
# binary searches over E), the per-chunk overhead with the number of chunks. 8, 16, 32 and 64
# cost about the same for 2048-token prompts on a 2-core CPU (the run merges dominate); 128 was
# twice as slow.
_CHUNK = 16


# The first call keeps each sequence's scores above a floor placed at this multiple of the share
# k/E that a prefix's top-(m k) holds (tokens of a prefix that the floor would leave short get
# a lower floor of their own; see `_prompt_floors`).
_KEEP_MULTIPLE = 1.5
# Bound on the prompt pass's two [B, T, ~sqrt(kept)] float32 tensors (256 MB each); longer
# prompts (with B=8 and E=64, beyond about 10k tokens) take the chunked pass.
_PROMPT_TABLE_ENTRIES = 2**26
# Scores per sequence sampled to place the floor.
_FLOOR_SAMPLE = 4096

# Merged run size from which ``_merge`` scatters instead of sorting.
_MERGE_BY_SCATTER = 4096


def _grown(storage: torch.Tensor, needed: int) -> torch.Tensor:
    """``storage`` with room for ``needed`` entries along dim 1 (capacity doubles; the new room
    is uninitialised: nothing past the state's length is read before it is written)."""
    capacity = storage.shape[1]
    if needed <= capacity:
        return storage
    shape = list(storage.shape)
    shape[1] = max(needed, 2 * capacity, 16)
    bigger = storage.new_empty(shape)
    bigger[:, :capacity] = storage
    return bigger


def _count_at_least(run: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
    """How many entries of each ascending row of ``run`` [..., n] are >= each query [..., Q]."""
    return run.shape[-1] - torch.searchsorted(run, queries, right=False)


def _merge(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Merge two ascending [B, n] runs into one.

    Small runs are re-sorted; from a few thousand entries on, each entry's place in the merged
    run (its index plus how many of the other run precede it) is scattered directly: measured
    1.5x faster than a sort of the concatenation at 8k-64k entries per row on this CPU.
    """
    if first.shape[1] + second.shape[1] < _MERGE_BY_SCATTER:
        return torch.sort(torch.cat([first, second], dim=1), dim=-1).values
    # Ties: entries of ``first`` go before equal entries of ``second`` (any order of equal floats
    # is a valid ascending run; this one makes the two position sets disjoint).
    at_first = torch.arange(first.shape[1], device=first.device) + torch.searchsorted(
        second, first, right=False
    )
    at_second = torch.arange(second.shape[1], device=second.device) + torch.searchsorted(
        first, second, right=True
    )
    merged = first.new_empty(first.shape[0], first.shape[1] + second.shape[1])
    return merged.scatter_(1, at_first, first).scatter_(1, at_second, second)


class OnlineRoutingState:
    """The score cache of one MoE layer for a batch of sequences being decoded.

    ``history`` [B, S, E] holds the scores of every position seen (padding included, so it lines
    up with the generation cache), ``valid`` [B, S] which positions were real tokens and
    ``counts`` [B, S] how many experts each got. ``runs`` are ascending sorted [B, n] tensors
    that together hold every past score once (padding positions as -inf, which never counts as
    >= a real score).
    """

    def __init__(
        self,
        batch: int,
        num_experts: int,
        k: int,
        min_per_token: int,
        max_per_token: int,
        device,
        impl: str = "auto",
    ):
        if impl not in ONLINE_IMPLS:
            raise ValueError(f"impl must be one of {ONLINE_IMPLS}, got {impl!r}")
        self.k, self.min_per_token, self.max_per_token = k, min_per_token, max_per_token
        self.num_experts = num_experts
        self.impl = impl
        self._length = 0
        self._history = torch.empty(batch, 0, num_experts, device=device)
        self._valid = torch.empty(batch, 0, dtype=torch.bool, device=device)
        self._counts = torch.empty(batch, 0, dtype=torch.long, device=device)
        self._runs: list[torch.Tensor] = []
        self._num_valid = torch.zeros(batch, dtype=torch.long, device=device)
        self._used = torch.zeros(batch, dtype=torch.long, device=device)
        self._runs_built = True

    @classmethod
    def empty(
        cls,
        batch: int,
        num_experts: int,
        k: int,
        min_per_token: int = 1,
        max_per_token: int | None = None,
        device: torch.device | str | None = None,
        impl: str = "auto",
    ) -> OnlineRoutingState:
        """A state before any token. ``impl`` picks what routes the first call's prompt:
        ``"numba"`` (CPU tensors, ``pip install 'seqtopk[fast]'``), ``"torch"`` (any device) or
        ``"auto"`` (numba for CPU tensors when it imports); decode steps and later calls are
        torch on every path."""
        k, low, high = resolve_bounds(k, num_experts, min_per_token, max_per_token)
        return cls(batch, num_experts, k, low, high, device, impl)

    @property
    def batch(self) -> int:
        return self._history.shape[0]

    @property
    def length(self) -> int:
        """Positions seen so far (valid or padding)."""
        return self._length

    @property
    def history(self) -> torch.Tensor:
        return self._history[:, : self._length]

    @property
    def valid(self) -> torch.Tensor:
        return self._valid[:, : self._length]

    @property
    def counts(self) -> torch.Tensor:
        return self._counts[:, : self._length]

    @property
    def runs(self) -> tuple[torch.Tensor, ...]:
        """The sorted runs of past scores, largest first (their sizes at least halve)."""
        self._build_runs()
        return tuple(self._runs)

    @property
    def used(self) -> torch.Tensor:
        """Experts spent so far per sequence [B]."""
        return self._used.clone()

    @property
    def num_valid(self) -> torch.Tensor:
        """Valid tokens seen so far per sequence [B]."""
        return self._num_valid.clone()

    def step(self, scores: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Route one position: scores [B, E] (float32), valid [B] bool -> selected [B, E]."""
        return self.route(scores.unsqueeze(1), valid.unsqueeze(1)).squeeze(1)

    def step_ranked(
        self, scores: torch.Tensor, valid: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Like :meth:`step`, as ``(experts [B, U], count [B])``: the token's top-U experts by
        (score desc, expert asc), of which it gets the first ``count``."""
        experts, counts = self.route_ranked(scores.unsqueeze(1), valid.unsqueeze(1))
        return experts.squeeze(1), counts.squeeze(1)

    def route(self, scores: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Route positions in order: scores [B, T, E] float32, valid [B, T] -> selected [B, T, E]."""
        if self._prompt_by_numba(scores):
            return self._route_prompt_numba(scores, valid)[2]
        experts, counts = self.route_ranked(scores, valid)
        by_rank = torch.arange(experts.shape[-1], device=scores.device) < counts.unsqueeze(-1)
        selected = torch.zeros(scores.shape, dtype=torch.bool, device=scores.device)
        return selected.scatter_(-1, experts, by_rank)

    def route_ranked(
        self, scores: torch.Tensor, valid: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Like :meth:`route`, as ``(experts [B, T, U], counts [B, T])``."""
        batch, length, num_experts = scores.shape
        if self._prompt_by_numba(scores):
            return self._route_prompt_numba(scores, valid)[:2]
        table = batch * length * math.isqrt(length * num_experts)  # worst case, every score kept
        if self._length == 0 and length > 1 and table <= _PROMPT_TABLE_ENTRIES:
            return self._route_prompt(scores, valid)
        self._build_runs()
        pieces = [
            self._route_chunk(scores[:, start : start + _CHUNK], valid[:, start : start + _CHUNK])
            for start in range(0, scores.shape[1], _CHUNK)
        ]
        if not pieces:
            batch, high = scores.shape[0], self.max_per_token
            experts = torch.zeros(batch, 0, high, dtype=torch.long, device=scores.device)
            return experts, torch.zeros(batch, 0, dtype=torch.long, device=scores.device)
        return torch.cat([e for e, _ in pieces], 1), torch.cat([c for _, c in pieces], 1)

    def _prompt_by_numba(self, scores: torch.Tensor) -> bool:
        """Whether this call is a prompt for the numba kernel (which holds a score's place in
        its sequence, ``t E + e``, as an int32)."""
        _, length, num_experts = scores.shape
        return (
            self._length == 0
            and length > 1
            and resolve_path(self.impl, scores.device) == "numba"
            and length * num_experts < 2**31
        )

    def _route_prompt_numba(
        self, scores: torch.Tensor, valid: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The first call by :func:`seqtopk._numba_routing.prompt_route`: ``(experts, counts,
        selected)``; the sorted runs are built when a later call needs them."""
        array = scores.detach().contiguous().numpy()
        experts, counts, selected, used, num_valid = (
            torch.from_numpy(out)
            for out in _numba_kernels().prompt_route(
                array,
                array.view(np.int32),
                valid.contiguous().numpy(),
                self.k,
                self.min_per_token,
                self.max_per_token,
            )
        )
        self._append(scores, valid, counts)
        self._num_valid, self._used = num_valid, used
        self._runs, self._runs_built = [], False
        return experts, counts, selected

    def _route_prompt(
        self, scores: torch.Tensor, valid: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Route the first call's tokens from the running thresholds ``tau_t`` (see the module
        docstring); the sorted runs the decode steps search are built only when a later call
        needs them."""
        high, k = self.max_per_token, self.k
        values, experts = _ranked_top(scores, high)
        seen = valid.long().cumsum(dim=1)  # m_t: [B, T]
        share = _KEEP_MULTIPLE * k / self.num_experts
        floors = _prompt_floors(scores, valid, values[..., k - 1], seen * k, share)
        inside = _inside_counts(scores, valid, seen * k, floors, high)
        counts = self._spend(scores, valid, seen, inside)
        self._runs, self._runs_built = [], False
        return experts, counts

    def _build_runs(self) -> None:
        """Sort the whole history into one run if the prompt pass or a crop left none."""
        if not self._runs_built:
            past = self.history.masked_fill(~self.valid.unsqueeze(-1), -torch.inf)
            sorted_past = torch.sort(past.reshape(self.batch, -1), dim=-1).values
            self._runs = [sorted_past] if self._length else []
            self._runs_built = True

    def _route_chunk(
        self, scores: torch.Tensor, valid: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        batch, length, num_experts = scores.shape
        high, k = self.max_per_token, self.k
        device = scores.device
        values, experts = _ranked_top(scores, high)  # the queries: [B, T, U]
        queries = values.reshape(batch, length * high).contiguous()
        # Past scores >= each query: the runs' total length minus their entries below it, the
        # searches summed at once (a subtraction and an add per run made each run three kernel
        # launches, and a long decode keeps about log2(m) runs).
        below = [torch.searchsorted(run, queries, right=False) for run in self._runs]
        stored = sum(run.shape[-1] for run in self._runs)
        past = (
            stored - torch.stack(below).sum(dim=0)
            if below
            else torch.zeros_like(queries, dtype=torch.long)
        )
        masked = scores.masked_fill(~valid.unsqueeze(-1), -torch.inf)
        if length > 1:
            # Earlier tokens of this chunk: for query token t and each token t' < t, binary
            # searches in t''s sorted row.
            rows = torch.sort(masked, dim=-1).values  # [B, T', E]
            rows = rows.unsqueeze(1).expand(batch, length, length, num_experts).contiguous()
            per_token = _count_at_least(
                rows, values.unsqueeze(2).expand(batch, length, length, high).contiguous()
            )  # [B, T, T', U]
            earlier = torch.ones(length, length, dtype=torch.bool, device=device).tril(-1)
            past += (per_token * earlier[None, :, :, None]).sum(dim=2).reshape(batch, -1)
        seen = self._num_valid.unsqueeze(1) + valid.long().cumsum(dim=1)  # m_t: [B, T]
        allowance = seen * k
        rank = torch.arange(1, high + 1, device=device)
        inside = (past.view(batch, length, high) + rank <= allowance.unsqueeze(-1)).sum(dim=-1)
        counts = self._spend(scores, valid, seen, inside)
        self._push_run(torch.sort(masked.reshape(batch, -1), dim=-1).values)
        return experts, counts

    def _spend(
        self, scores: torch.Tensor, valid: torch.Tensor, seen: torch.Tensor, inside: torch.Tensor
    ) -> torch.Tensor:
        """Clamp each token's ``inside`` count to [L, U] and to the budget left (the capped
        running sum's closed form, see the module docstring), record the positions, and return
        the expert counts [B, T]. ``seen``: valid tokens so far, this call's included."""
        wanted = inside.clamp(self.min_per_token, self.max_per_token) * valid  # 0 for padding
        total = wanted.cumsum(dim=1)
        slack = torch.cummin(seen * self.k - total, dim=1).values
        used = total + torch.minimum(self._used.unsqueeze(1), slack)
        counts = used - torch.cat([self._used.unsqueeze(1), used[:, :-1]], dim=1)
        self._append(scores, valid, counts)
        self._num_valid = seen[:, -1]
        self._used = used[:, -1]
        return counts

    def _push_run(self, run: torch.Tensor) -> None:
        """Add an ascending run; merge while the previous run is no larger (binary counter)."""
        runs = self._runs
        runs.append(run)
        while len(runs) > 1 and runs[-2].shape[1] <= runs[-1].shape[1]:
            last = runs.pop()
            runs[-1] = _merge(runs[-1], last)

    def _append(self, scores: torch.Tensor, valid: torch.Tensor, counts: torch.Tensor) -> None:
        at, length = self._length, scores.shape[1]
        if at == 0:
            # Copies become the storage (a later write into the caller's tensors must not reach
            # the state): a third of the cost of growing empty storage and writing into it, which
            # was 5% of a 512-token prompt's routing on the CPU.
            self._history = scores.clone(memory_format=torch.contiguous_format)
            self._valid = valid.clone(memory_format=torch.contiguous_format)
            self._counts = counts.clone(memory_format=torch.contiguous_format)
            self._length = length
            return
        self._history = _grown(self._history, at + length)
        self._valid = _grown(self._valid, at + length)
        self._counts = _grown(self._counts, at + length)
        self._history[:, at : at + length] = scores
        self._valid[:, at : at + length] = valid
        self._counts[:, at : at + length] = counts
        self._length = at + length

    def crop(self, length: int) -> None:
        """Forget every position from ``length`` on (the generation cache was cropped)."""
        if not 0 <= length <= self._length:
            raise ValueError(f"length must be in [0, {self._length}], got {length}")
        self._length = length
        valid, counts = self.valid, self.counts
        self._num_valid = valid.sum(dim=1)
        self._used = counts.sum(dim=1)
        self._runs, self._runs_built = [], False  # rebuilt from the history when next needed

    def reorder(self, index: torch.Tensor) -> None:
        """Select and reorder batch rows (beam search); ``index`` [B'] of row numbers."""
        index = index.to(self._history.device)
        for name in ("_history", "_valid", "_counts", "_num_valid", "_used"):
            setattr(self, name, getattr(self, name).index_select(0, index))
        self._runs = [run.index_select(0, index) for run in self._runs]


def _prompt_floors(
    scores: torch.Tensor,
    valid: torch.Tensor,
    kth_best: torch.Tensor,
    allowance: torch.Tensor,
    share: float,
) -> torch.Tensor:
    """A score floor per token [B, T] below which no score can be in any prefix's top-(m_t k).

    The floor of a sequence is the ``share`` quantile of a strided sample of its scores. Every
    prefix ``t`` whose tokens keep at least ``m_t k`` scores above it has its ``m_t k``-th best
    score ``tau_t`` at or above the floor, so nothing it drops can be in that prefix's top set.
    Where some prefix keeps fewer (its scores sit low against the rest), the tokens up to the
    last such prefix ``t0`` get the floor ``min_{s <= t0} kth_best_s`` instead (``kth_best``:
    each token's k-th best score): every prefix ``t`` has ``m_t`` tokens with k scores at or
    above its own k-th best, so ``tau_t >= min_{s <= t} kth_best_s``, and the later prefixes
    passed with the sequence's floor.
    """
    batch, length = valid.shape
    flat = scores.masked_fill(~valid.unsqueeze(-1), -torch.inf).reshape(batch, -1)
    sample = flat[:, :: max(1, flat.shape[1] // _FLOOR_SAMPLE)]
    rank = max(1, sample.shape[1] - int(share * sample.shape[1]))
    floor = torch.kthvalue(sample, rank, dim=1).values.unsqueeze(1)  # [B, 1]
    kept = ((scores >= floor.unsqueeze(-1)) & valid.unsqueeze(-1)).sum(dim=-1)
    short = (kept.cumsum(dim=1) < allowance) & valid
    floors = floor.expand(batch, length)
    if bool(short.any()):
        positions = torch.arange(length, device=scores.device)
        last_short = torch.where(short, positions, -1).amax(dim=1, keepdim=True)  # t0, or -1
        early = positions <= last_short
        lowest = kth_best.masked_fill(~(early & valid), torch.inf).amin(dim=1, keepdim=True)
        floors = torch.where(early, torch.minimum(floor, lowest), floor)
    return floors


def _inside_counts(
    scores: torch.Tensor,
    valid: torch.Tensor,
    allowance: torch.Tensor,
    floors: torch.Tensor,
    high: int,
) -> torch.Tensor:
    """``min(U, #{token t's scores inside its prefix's top-(m_t k)})`` for every token [B, T].

    Only scores at or above their token's floor (``floors`` [B, T], from :func:`_prompt_floors`:
    no prefix's top-(m_t k) holds a score below it) enter the computation.

    The kept scores are sorted once (value descending, ties to the earlier token then the lower
    expert: a stable sort of the (token, expert)-ordered list); ``tau_t``'s position is the first
    sorted position by which ``m_t k`` kept scores of tokens ``<= t`` have appeared. It is found
    per token from a table of those counts at block boundaries of the sorted list (blocks of
    about ``sqrt(kept)`` scores) and one scan inside the block.
    """
    batch, length, num_experts = scores.shape
    device = scores.device
    keep = valid.unsqueeze(-1) & (scores >= floors.unsqueeze(-1))
    # Compact each sequence's kept scores, in (token, expert) order, into [B, W]; the slots past
    # a sequence's own count hold -inf and the token number `length` (after every real token).
    flat_keep = keep.reshape(batch, -1)
    slot = flat_keep.long().cumsum(dim=1) - 1
    width = max(int(slot[:, -1].max()) + 1, 1)
    blocks = max(1, math.isqrt(width))
    block_size = -(-width // blocks)
    width = blocks * block_size
    slot = torch.where(flat_keep, slot, width)  # unkept scores land in a dropped extra slot
    kept_values = torch.full((batch, width + 1), -torch.inf, device=device)
    kept_values.scatter_(1, slot, scores.reshape(batch, -1))
    token_of = torch.arange(length, device=device).repeat_interleave(num_experts)
    kept_tokens = torch.full((batch, width + 1), length, dtype=torch.long, device=device)
    kept_tokens.scatter_(1, slot, token_of.expand(batch, -1))
    kept_values, kept_tokens = kept_values[:, :width], kept_tokens[:, :width]
    order = torch.sort(kept_values, dim=1, descending=True, stable=True).indices
    sorted_tokens = kept_tokens.gather(1, order)
    # counts[b, t, j]: kept scores of tokens <= t in sorted blocks 0..j (float32 counts are exact
    # far beyond any sequence's score count, and float cumsums ran several times faster here).
    counts = torch.zeros(batch, length + 1, blocks, device=device)
    block_of = torch.arange(width, device=device) // block_size
    counts.view(batch, -1).scatter_add_(
        1, sorted_tokens * blocks + block_of, torch.ones(batch, width, device=device)
    )
    counts = counts[:, :length].cumsum(dim=2).cumsum(dim=1)
    need = allowance.to(counts.dtype).unsqueeze(-1)  # [B, T, 1]
    block = torch.searchsorted(counts, need).clamp(max=blocks - 1)  # tau_t's block
    before = torch.where(block > 0, counts.gather(2, (block - 1).clamp(min=0)), 0.0)
    rows = (block.squeeze(-1) + blocks * torch.arange(batch, device=device).unsqueeze(1)).view(-1)
    in_block = sorted_tokens.view(batch * blocks, block_size).index_select(0, rows).view(
        batch, length, block_size
    ) <= torch.arange(length, device=device).view(1, length, 1)
    offset = (in_block.to(counts.dtype).cumsum(dim=2) < need - before).sum(dim=2)
    threshold_at = block.squeeze(-1) * block_size + offset  # tau_t's sorted position [B, T]
    position = torch.empty_like(order).scatter_(
        1, order, torch.arange(width, device=device).expand(batch, -1)
    )
    owner = kept_tokens.clamp(max=length - 1)
    inside_top = (position <= threshold_at.gather(1, owner)) & (kept_tokens < length)
    inside = torch.zeros(batch, length, dtype=torch.long, device=device)
    inside.scatter_add_(1, owner, inside_top.long())
    return inside.clamp(max=high)


def online_select(
    probs: torch.Tensor,
    k: int,
    attention_mask: torch.Tensor | None = None,
    min_per_token: int = 1,
    max_per_token: int | None = None,
    *,
    state: OnlineRoutingState | None = None,
    impl: str = "auto",
) -> tuple[torch.Tensor, OnlineRoutingState]:
    """Causal SeqTopK over [B, T, E] probabilities; returns (mask, state).

    The result is token-by-token routing (each token decided on its prefix only), computed for
    the whole call in one vectorised pass.

    Pass the returned ``state`` back in to continue the same sequences (decoding). With a state,
    ``k`` and the bounds must match the state's, and ``impl`` is the state's. ``impl`` routes a new
    state's prompt (see :meth:`OnlineRoutingState.empty`). Same argument checks as
    ``select_experts``.
    """
    if impl not in ONLINE_IMPLS:
        raise ValueError(f"impl must be one of {ONLINE_IMPLS}, got {impl!r}")
    scores, valid, k, low, high = _checked_inputs(
        probs, k, attention_mask, min_per_token, max_per_token
    )
    batch, _, num_experts = scores.shape
    if state is not None and impl not in ("auto", state.impl):
        raise ValueError(f"impl={impl!r} differs from the state's impl={state.impl!r}")
    if state is None:
        state = OnlineRoutingState.empty(
            batch, num_experts, k, low, high, device=scores.device, impl=impl
        )
    elif (state.k, state.min_per_token, state.max_per_token) != (k, low, high):
        raise ValueError(
            "state was built with (k, min_per_token, max_per_token) = "
            f"{(state.k, state.min_per_token, state.max_per_token)}, got {(k, low, high)}"
        )
    elif state.batch != batch or state.num_experts != num_experts:
        raise ValueError(
            f"state holds {state.batch} sequences of {state.num_experts} experts; "
            f"probs has shape {tuple(probs.shape)}"
        )
    return state.route(scores, valid), state


def online_select_reference(
    probs: torch.Tensor,
    k: int,
    attention_mask: torch.Tensor | None = None,
    min_per_token: int = 1,
    max_per_token: int | None = None,
) -> torch.Tensor:
    """The online rule with a full re-ranking of the prefix at every step (slow; the spec)."""
    scores, valid, k, low, high = _checked_inputs(
        probs, k, attention_mask, min_per_token, max_per_token
    )
    batch, length, num_experts = scores.shape
    selected = torch.zeros(batch, length, num_experts, dtype=torch.bool)
    for b in range(batch):
        values = scores[b].tolist()
        seen: list[int] = []
        used = 0
        for t in range(length):
            if not bool(valid[b, t]):
                continue
            seen.append(t)
            pairs = [(s, e) for s in seen for e in range(num_experts)]
            pairs.sort(key=lambda pair: (-values[pair[0]][pair[1]], pair[0], pair[1]))
            inside = sum(1 for s, _ in pairs[: len(seen) * k] if s == t)
            count = min(max(inside, low), high, len(seen) * k - used)
            used += count
            by_score = sorted(range(num_experts), key=lambda e, row=values[t]: (-row[e], e))
            for e in by_score[:count]:
                selected[b, t, e] = True
    return selected.to(probs.device)
