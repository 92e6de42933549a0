"""Online (causal) SeqTopK for decoding, with a per-layer score cache.

At the m-th valid token of a sequence the router scores of all m valid tokens so far (the cache
plus the current row) compete for a virtual top-(m*k) set; the current token gets ``c`` experts,
where ``c`` is how many of its own scores fall inside that set (ties go to earlier tokens, then
lower expert indices), clamped to ``[L, U]`` and to the budget left, ``m*k - used``. Earlier
allocations are never revised, so the cumulative use after m valid tokens never exceeds m*k and
a token's routing depends only on past and current scores.

The fast path never re-sorts the cache. Each row keeps the scores of its past valid tokens as one
ascending sorted buffer; for the current token's scores sorted in descending order,
``s_1 >= ... >= s_E``, the rank of ``s_j`` in the union is ``#(past >= s_j) + j``, one binary
search each, so the decision costs O(E log E + E log(mE)) per row and step. Inserting the E new
scores is a merge (two binary searches and a scatter, no comparisons between cached scores), a
linear copy like the one transformers' DynamicCache makes when it appends keys and values.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from seqtopk.selection import _checked_inputs, resolve_bounds

__all__ = ["OnlineRoutingState", "online_select", "online_select_reference"]


def _merge_ascending(buffer: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
    """Merge two row-wise ascending tensors [B, n] and [B, E] into one ascending [B, n + E]."""
    batch, length = buffer.shape
    width = new.shape[1]
    device = buffer.device
    new_positions = torch.searchsorted(buffer, new, right=True) + torch.arange(width, device=device)
    old_positions = torch.searchsorted(new, buffer, right=False) + torch.arange(
        length, device=device
    )
    merged = torch.empty(batch, length + width, dtype=buffer.dtype, device=device)
    merged.scatter_(1, old_positions, buffer)
    merged.scatter_(1, new_positions, new)
    return merged


@dataclass
class OnlineRoutingState:
    """The score cache of one MoE layer for a batch of sequences being decoded.

    ``history`` [B, S, E] holds the scores of every position seen (padding included, so it lines
    up with the generation cache), ``valid`` [B, S] which positions were real tokens and
    ``counts`` [B, S] how many experts each got. ``sorted_past`` [B, S*E] is the ascending buffer
    of past scores (padding positions contribute -inf, which never outranks a real score).
    """

    k: int
    min_per_token: int
    max_per_token: int
    history: torch.Tensor
    valid: torch.Tensor
    counts: torch.Tensor
    sorted_past: torch.Tensor

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
        return cls(
            k,
            low,
            high,
            torch.empty(batch, 0, num_experts, device=device),
            torch.empty(batch, 0, dtype=torch.bool, device=device),
            torch.empty(batch, 0, dtype=torch.long, device=device),
            torch.empty(batch, 0, device=device),
        )

    @property
    def length(self) -> int:
        """Positions seen so far (valid or padding)."""
        return self.history.shape[1]

    @property
    def used(self) -> torch.Tensor:
        """Experts spent so far per sequence [B]."""
        return self.counts.sum(dim=1)

    @property
    def num_valid(self) -> torch.Tensor:
        """Valid tokens seen so far per sequence [B]."""
        return self.valid.sum(dim=1)

    def step(self, scores: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Route one position: scores [B, E] (float32), valid [B] bool -> selected [B, E]."""
        num_experts = scores.shape[-1]
        device = scores.device
        ranked, experts = torch.sort(scores, dim=-1, descending=True, stable=True)
        position = torch.arange(1, num_experts + 1, device=device)
        total_past = self.sorted_past.shape[1]
        past_at_least = total_past - torch.searchsorted(
            self.sorted_past, ranked.contiguous(), right=False
        )
        seen = self.num_valid + valid.long()
        allowance = (seen * self.k).unsqueeze(-1)
        inside = ((past_at_least + position) <= allowance).sum(dim=-1)
        count = inside.clamp(self.min_per_token, self.max_per_token)
        count = torch.minimum(count, seen * self.k - self.used)
        count = torch.where(valid, count, torch.zeros_like(count))
        by_rank = position.unsqueeze(0) <= count.unsqueeze(-1)
        selected = torch.zeros_like(by_rank).scatter_(-1, experts, by_rank)

        new_scores = ranked.flip(-1).masked_fill(~valid.unsqueeze(-1), -torch.inf)
        self.sorted_past = _merge_ascending(self.sorted_past, new_scores.contiguous())
        self.history = torch.cat([self.history, scores.unsqueeze(1)], dim=1)
        self.valid = torch.cat([self.valid, valid.unsqueeze(1)], dim=1)
        self.counts = torch.cat([self.counts, count.unsqueeze(1)], dim=1)
        return selected

    def crop(self, length: int) -> None:
        """Forget every position from ``length`` on (the generation cache was cropped)."""
        if not 0 <= length <= self.length:
            raise ValueError(f"length must be in [0, {self.length}], got {length}")
        self.history = self.history[:, :length]
        self.valid = self.valid[:, :length]
        self.counts = self.counts[:, :length]
        past = self.history.masked_fill(~self.valid.unsqueeze(-1), -torch.inf)
        self.sorted_past = torch.sort(past.reshape(past.shape[0], -1), dim=-1).values

    def reorder(self, index: torch.Tensor) -> None:
        """Select and reorder batch rows (beam search); ``index`` [B'] of row numbers."""
        index = index.to(self.history.device)
        self.history = self.history.index_select(0, index)
        self.valid = self.valid.index_select(0, index)
        self.counts = self.counts.index_select(0, index)
        self.sorted_past = self.sorted_past.index_select(0, index)


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
    elif state.history.shape[0] != batch or state.history.shape[2] != num_experts:
        raise ValueError(
            f"state holds {state.history.shape[0]} sequences of {state.history.shape[2]} experts; "
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
