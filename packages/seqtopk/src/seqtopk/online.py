"""Online (causal) SeqTopK for decoding, with a per-layer score cache.

At the m-th valid token of a sequence the router scores of all m valid tokens so far (the cache
plus the current row) compete for a virtual top-(m*k) set; the current token gets ``c`` experts,
where ``c`` is how many of its own scores fall inside that set (ties go to earlier tokens, then
lower expert indices), clamped to ``[L, U]`` and to the budget left, ``m*k - used``. Earlier
allocations are never revised, so the cumulative use after m valid tokens never exceeds m*k and
a token's routing depends only on past and current scores.

The fast path never re-sorts the cache and never searches it to decide. Each row keeps the scores
of its past valid tokens as one ascending sorted buffer ``P`` of ``n`` entries. With the current
scores sorted descending (stable), ``s_1 >= ... >= s_E``, the rank of ``s_j`` in the union is
``#(past >= s_j) + j``, so ``s_j`` is inside the top ``m*k`` exactly when at most
``q_j = m*k - j`` past scores are ``>= s_j``, i.e. when the ``(q_j + 1)``-th largest past score,
one indexed read ``P[n - 1 - q_j]``, is ``< s_j`` (or does not exist). Per row and step:

- decision: one sort of E scores and E indexed reads, O(E log E) (the issue's bound);
- insertion: E binary searches into the buffer, O(E log(mE)) comparisons, and O(mE) element
  moves, because the new scores land anywhere in a contiguous sorted array (the same order of
  data movement as transformers' ``DynamicCache`` appending keys and values with ``torch.cat``,
  over E scores per position instead of the key/value width). The history and counts are
  appended into storage that doubles its capacity, amortised O(E).

A pointer-based order-statistics tree would make insertion O(E log(mE)) without the moves, but it
does not vectorise over the batch in torch; at decode lengths the memory-bound move is cheaper.
"""

from __future__ import annotations

import torch

from seqtopk.selection import _checked_inputs, resolve_bounds

__all__ = ["OnlineRoutingState", "online_select", "online_select_reference"]


def _grown(storage: torch.Tensor, needed: int) -> torch.Tensor:
    """``storage`` with room for ``needed`` entries along dim 1 (capacity doubles)."""
    capacity = storage.shape[1]
    if needed <= capacity:
        return storage
    shape = list(storage.shape)
    shape[1] = max(needed, 2 * capacity, 16)
    bigger = storage.new_zeros(shape)
    bigger[:, :capacity] = storage
    return bigger


class OnlineRoutingState:
    """The score cache of one MoE layer for a batch of sequences being decoded.

    ``history`` [B, S, E] holds the scores of every position seen (padding included, so it lines
    up with the generation cache), ``valid`` [B, S] which positions were real tokens and
    ``counts`` [B, S] how many experts each got. ``sorted_past`` [B, S*E] is the ascending buffer
    of past scores (padding positions contribute -inf, which never outranks a real score).
    """

    def __init__(
        self, batch: int, num_experts: int, k: int, min_per_token: int, max_per_token: int, device
    ):
        self.k, self.min_per_token, self.max_per_token = k, min_per_token, max_per_token
        self.num_experts = num_experts
        self._length = 0
        self._history = torch.empty(batch, 0, num_experts, device=device)
        self._valid = torch.empty(batch, 0, dtype=torch.bool, device=device)
        self._counts = torch.empty(batch, 0, dtype=torch.long, device=device)
        self._sorted = torch.empty(batch, 0, device=device)
        self._num_valid = torch.zeros(batch, dtype=torch.long, device=device)
        self._used = torch.zeros(batch, dtype=torch.long, device=device)

    @classmethod
    def empty(
        cls,
        batch: int,
        num_experts: int,
        k: int,
        min_per_token: int = 1,
        max_per_token: int | None = None,
        device: torch.device | str | None = None,
    ) -> OnlineRoutingState:
        k, low, high = resolve_bounds(k, num_experts, min_per_token, max_per_token)
        return cls(batch, num_experts, k, low, high, device)

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
    def sorted_past(self) -> torch.Tensor:
        return self._sorted

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
        experts, count = self.step_ranked(scores, valid)
        position = torch.arange(self.num_experts, device=scores.device)
        by_rank = position.unsqueeze(0) < count.unsqueeze(-1)
        return torch.zeros_like(by_rank).scatter_(-1, experts, by_rank)

    def step_ranked(
        self, scores: torch.Tensor, valid: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Like :meth:`step`, as ``(experts ranked by score [B, E], count [B])``: the token's
        selected experts are the first ``count`` of its ranking."""
        num_experts = self.num_experts
        device = scores.device
        filled = self._length * num_experts
        ranked, experts = torch.sort(scores, dim=-1, descending=True, stable=True)
        position = torch.arange(1, num_experts + 1, device=device)
        seen = self._num_valid + valid.long()
        allowance = seen * self.k
        # s_j is inside the top m*k iff at most q_j = m*k - j past scores are >= s_j, i.e. iff
        # the (q_j + 1)-th largest past score (ascending index filled - 1 - q_j) is < s_j.
        allowed_past = allowance.unsqueeze(-1) - position
        index = filled - 1 - allowed_past
        if filled:
            threshold = self._sorted.gather(-1, index.clamp(0, filled - 1))
            beaten = (index < 0) | (ranked > threshold)
        else:
            beaten = torch.ones_like(ranked, dtype=torch.bool)
        inside = ((allowed_past >= 0) & beaten).sum(dim=-1)
        count = inside.clamp(self.min_per_token, self.max_per_token)
        count = torch.minimum(count, allowance - self._used)
        count = torch.where(valid, count, torch.zeros_like(count))
        new_scores = ranked.flip(-1).masked_fill(~valid.unsqueeze(-1), -torch.inf)
        self._insert_sorted(new_scores.contiguous(), filled)
        self._append(scores, valid, count)
        self._num_valid = seen
        self._used = self._used + count
        return experts, count

    def _insert_sorted(self, new: torch.Tensor, filled: int) -> None:
        """Merge the ascending rows ``new`` [B, E] into the first ``filled`` buffer entries."""
        width = new.shape[1]
        device = new.device
        past = self._sorted
        slot = torch.searchsorted(past, new, right=True)  # how many past entries precede each
        new_positions = slot + torch.arange(width, device=device)
        # An old entry moves up by the number of new entries inserted at or before its slot.
        inserted_before = torch.zeros(self.batch, filled + 1, dtype=torch.long, device=device)
        inserted_before.scatter_add_(1, slot, torch.ones_like(slot))
        old_positions = torch.arange(filled, device=device) + inserted_before.cumsum(1)[:, :filled]
        merged = torch.empty(self.batch, filled + width, dtype=past.dtype, device=device)
        merged.scatter_(1, old_positions, past)
        merged.scatter_(1, new_positions, new)
        self._sorted = merged

    def _append(self, scores: torch.Tensor, valid: torch.Tensor, count: torch.Tensor) -> None:
        at = self._length
        self._history = _grown(self._history, at + 1)
        self._valid = _grown(self._valid, at + 1)
        self._counts = _grown(self._counts, at + 1)
        self._history[:, at] = scores
        self._valid[:, at] = valid
        self._counts[:, at] = count
        self._length = at + 1

    def crop(self, length: int) -> None:
        """Forget every position from ``length`` on (the generation cache was cropped)."""
        if not 0 <= length <= self._length:
            raise ValueError(f"length must be in [0, {self._length}], got {length}")
        self._length = length
        valid, counts = self.valid, self.counts
        self._num_valid = valid.sum(dim=1)
        self._used = counts.sum(dim=1)
        past = self.history.masked_fill(~valid.unsqueeze(-1), -torch.inf)
        self._sorted = torch.sort(past.reshape(self.batch, -1), dim=-1).values

    def reorder(self, index: torch.Tensor) -> None:
        """Select and reorder batch rows (beam search); ``index`` [B'] of row numbers."""
        index = index.to(self._history.device)
        for name in ("_history", "_valid", "_counts", "_sorted", "_num_valid", "_used"):
            setattr(self, name, getattr(self, name).index_select(0, index))


def online_select(
    probs: torch.Tensor,
    k: int,
    attention_mask: torch.Tensor | None = None,
    min_per_token: int = 1,
    max_per_token: int | None = None,
    *,
    state: OnlineRoutingState | None = None,
) -> tuple[torch.Tensor, OnlineRoutingState]:
    """Causal SeqTopK over [B, T, E] probabilities, token by token; returns (mask, state).

    Pass the returned ``state`` back in to continue the same sequences (decoding). With a state,
    ``k`` and the bounds must match the state's. Same argument checks as ``select_experts``.
    """
    scores, valid, k, low, high = _checked_inputs(
        probs, k, attention_mask, min_per_token, max_per_token
    )
    batch, length, num_experts = scores.shape
    if state is None:
        state = OnlineRoutingState.empty(batch, num_experts, k, low, high, device=scores.device)
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
    steps = [state.step(scores[:, t], valid[:, t]) for t in range(length)]
    selected = (
        torch.stack(steps, dim=1)
        if steps
        else torch.zeros(batch, 0, num_experts, dtype=torch.bool, device=scores.device)
    )
    return selected, state


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
