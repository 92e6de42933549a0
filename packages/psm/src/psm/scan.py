"""Exclusive prefix scans under a possibly non-associative aggregator.

A prefix-scannable model combines chunk states with an aggregator ``agg(older, newer)`` that need
not be associative, so *which* tree of calls is evaluated is part of the model. This module fixes
that tree and evaluates it two ways that produce the same calls with the same operands:

- :func:`exclusive_prefix`, the parallel (training) evaluator: a Blelloch up-sweep and down-sweep,
  one batched aggregator call per tree level, depth ``O(log n)``;
- :class:`OnlineScanner`, the streaming (inference) evaluator: a binary counter of balanced
  blocks with cached partial folds, ``O(log n)`` live states and at most two aggregator calls per
  item amortised.

The tree. Write ``T[a, a + 2^k)`` for the balanced reduction of an aligned dyadic block (``T`` of
one item is the item, ``T`` of a block is ``agg(T(left half), T(right half))``). The exclusive
prefix ``P(i)`` of position ``i`` folds the dyadic blocks that tile ``[0, i)``, the largest (oldest)
first, starting from the identity ``e``::

    P(0) = e
    P(i) = agg(P(i - 2^z), T[i - 2^z, i))       z = number of trailing zero bits of i

so ``P(6) = agg(agg(e, T[0, 4)), T[4, 6))``. The identity is applied, never elided: ``agg(e, x)``
is evaluated even when ``e`` is not neutral for ``agg``. The older operand is always on the left.
The state after the last item, ``P(n)``, is what a stream continues from.

Both evaluators call ``agg`` on exactly the same operand values, so for an aggregator whose result
for one row does not depend on how many rows are batched together they agree bit for bit. Plain
``torch.nn.Linear`` is *not* batch-invariant on the CPU in general (BLAS switches kernels for
matrices with very few rows); :func:`psm.layers.batch_invariant_linear` is.

Shapes: items are ``(B, n, *S)`` (batch, sequence, state), the identity is ``S`` and ``agg``
maps two ``(N, *S)`` tensors to one ``(N, *S)`` tensor, for any ``N``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from kernelkit.validation import check_tensor

__all__ = [
    "Aggregator",
    "OnlineScanner",
    "ScanCounts",
    "exclusive_prefix",
    "left_fold_prefix",
    "online_prefix",
]

Aggregator = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class ScanCounts:
    """Work done by a parallel scan.

    ``pairs`` counts aggregations per sequence (one per combined pair of states), ``calls`` the
    batched invocations of the aggregator (one per non-empty tree level), which bounds the
    depth of the computation.
    """

    pairs: int = 0
    calls: int = 0


def _check_aggregator(agg: object) -> None:
    if not callable(agg):
        raise TypeError(
            f"agg must be a callable aggregator agg(older, newer), got {type(agg).__name__}"
        )


def _check_items(items: object, identity: object) -> tuple[torch.Tensor, torch.Tensor]:
    items = check_tensor("items", items)
    identity = check_tensor("identity", identity)
    if items.ndim < 2:
        raise ValueError(
            f"items must have shape (batch, n, *state) with at least 2 dimensions, "
            f"got shape {tuple(items.shape)}"
        )
    if tuple(identity.shape) != tuple(items.shape[2:]):
        raise ValueError(
            f"identity must have the state shape {tuple(items.shape[2:])} (items' shape "
            f"{tuple(items.shape)} without batch and sequence axes), got {tuple(identity.shape)}"
        )
    if identity.dtype != items.dtype or identity.device != items.device:
        raise TypeError(
            f"identity must match items' dtype and device ({items.dtype}, {items.device}), "
            f"got ({identity.dtype}, {identity.device})"
        )
    return items, identity


def _combine(agg: Aggregator, older: torch.Tensor, newer: torch.Tensor) -> torch.Tensor:
    """``agg(older, newer)`` on ``(N, *S)`` operands, checking that the state shape is kept."""
    result = agg(older, newer)
    if not isinstance(result, torch.Tensor) or result.shape != newer.shape:
        got = tuple(result.shape) if isinstance(result, torch.Tensor) else type(result).__name__
        raise ValueError(
            f"aggregator must return a tensor of its operands' shape {tuple(newer.shape)}, "
            f"got {got}; an aggregator may not change the state shape"
        )
    return result


def _combine_sequences(
    agg: Aggregator, older: torch.Tensor, newer: torch.Tensor, counts: ScanCounts
) -> torch.Tensor:
    """One batched aggregator call over ``(B, m, *S)`` pairs, flattened to ``(B * m, *S)``."""
    batch, m = newer.shape[:2]
    counts.pairs += m
    counts.calls += 1
    merged = _combine(agg, older.flatten(0, 1), newer.flatten(0, 1))
    return merged.unflatten(0, (batch, m))


def exclusive_prefix(
    agg: Aggregator,
    items: torch.Tensor,
    identity: torch.Tensor,
    *,
    return_final: bool = False,
    counts: ScanCounts | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Exclusive prefixes ``P(0), ..., P(n-1)`` of ``items`` by the static Blelloch tree.

    Args:
        agg: the aggregator ``agg(older, newer)``; see the module docstring for shapes.
        items: ``(B, n, *S)``, ``n >= 0``.
        identity: ``S``; ``P(0)``, and the left operand of the first fold of every prefix.
        return_final: also return ``P(n)``, the state after the last item.
        counts: if given, incremented with the pairs and batched calls made.

    Returns:
        ``(B, n, *S)`` prefixes, and ``(B, *S)`` final states when ``return_final``.

    Up-sweep level ``k`` builds every complete aligned block of ``2^(k+1)`` items from its two
    halves; down-sweep level ``k`` turns the prefixes at multiples of ``2^(k+1)`` into those at
    odd multiples of ``2^k``. Work is ``2n - popcount(n)`` pairs (the same pairs the streaming
    scanner computes), depth ``2 floor(log2 n) + 1`` batched calls. Differentiable.
    """
    _check_aggregator(agg)
    items, identity = _check_items(items, identity)
    counts = counts if counts is not None else ScanCounts()
    batch, n = items.shape[:2]
    # blocks[k][:, j] = T[j 2^k, (j + 1) 2^k): the complete aligned blocks of level k.
    blocks = [items]
    while blocks[-1].shape[1] >= 2:
        level = blocks[-1]
        m = level.shape[1] // 2
        blocks.append(
            _combine_sequences(agg, level[:, 0 : 2 * m : 2], level[:, 1 : 2 * m : 2], counts)
        )
    # prefixes[:, j] = P(j 2^k); above the top level only P(0) = e is left.
    prefixes = identity.expand(batch, 1, *identity.shape)
    for level in reversed(blocks):
        complete = level.shape[1]
        odd = (complete + 1) // 2
        if odd == 0:
            continue
        fresh = _combine_sequences(agg, prefixes[:, :odd], level[:, 0 : 2 * odd : 2], counts)
        interleaved = torch.stack([prefixes[:, :odd], fresh], dim=2).flatten(1, 2)
        prefixes = torch.cat([interleaved, prefixes[:, odd:]], dim=1)
    exclusive = prefixes[:, :n]
    if return_final:
        return exclusive, prefixes[:, n]
    return exclusive


class OnlineScanner:
    """Streaming evaluator of the tree of :func:`exclusive_prefix`: a binary counter.

    ``roots`` holds one balanced block per set bit of the number of items pushed so far (the
    largest, oldest block first) and ``folds[j]`` caches the fold of ``e`` with ``roots[0..j]``,
    so the current state is ``folds[-1]``. Pushing an item merges it with the blocks it
    completes (the carries of a binary increment), drops their cached folds and adds one new
    fold: ``1 + carries`` aggregator calls, ``2 n - popcount(n)`` after ``n`` pushes.

    Counters: ``calls`` (aggregator calls so far), ``last_push_calls`` and ``peak_push_calls``
    (the latency spike, ``log2 n + 1`` at a power of two), ``live_states`` (blocks
    held now, ``popcount(n) <= floor(log2 n) + 1``), ``peak_live_states``; ``stored_states``
    adds the cached folds.
    """

    def __init__(self, agg: Aggregator, identity: torch.Tensor) -> None:
        _check_aggregator(agg)
        self.agg = agg
        self.identity = check_tensor("identity", identity)
        self.roots: list[tuple[int, torch.Tensor]] = []
        self.folds: list[torch.Tensor] = []
        self.items_pushed = 0
        self.calls = 0
        self.last_push_calls = 0
        self.peak_push_calls = 0
        self.peak_live_states = 0
        self._batch: int | None = None

    @property
    def live_states(self) -> int:
        return len(self.roots)

    @property
    def stored_states(self) -> int:
        return len(self.roots) + len(self.folds)

    @property
    def state(self) -> torch.Tensor:
        """``P(n)``: the state after every item pushed so far, ``(B, *S)``."""
        if self.folds:
            return self.folds[-1]
        if self._batch is None:
            raise RuntimeError("the scanner has seen no item yet, so its batch size is unknown")
        return self.identity.expand(self._batch, *self.identity.shape)

    def _check_item(self, item: object) -> torch.Tensor:
        item = check_tensor("item", item)
        if item.ndim < 1 or tuple(item.shape[1:]) != tuple(self.identity.shape):
            raise ValueError(
                f"item must have shape (batch, *{tuple(self.identity.shape)}) to match the "
                f"identity, got {tuple(item.shape)}"
            )
        if item.dtype != self.identity.dtype or item.device != self.identity.device:
            raise TypeError(
                f"item must match the identity's dtype and device ({self.identity.dtype}, "
                f"{self.identity.device}), got ({item.dtype}, {item.device})"
            )
        if self._batch is None:
            self._batch = item.shape[0]
        elif item.shape[0] != self._batch:
            raise ValueError(f"item batch size changed from {self._batch} to {item.shape[0]}")
        return item

    def push(self, item: torch.Tensor) -> torch.Tensor:
        """Add one ``(B, *S)`` item; return the state before it, ``P(n)`` for the ``n``-th item."""
        item = self._check_item(item)
        before = self.state
        calls = 0
        carry, level = item, 0
        while self.roots and self.roots[-1][0] == level:
            _, older = self.roots.pop()
            self.folds.pop()
            carry = _combine(self.agg, older, carry)
            calls += 1
            level += 1
        base = self.state
        self.roots.append((level, carry))
        self.folds.append(_combine(self.agg, base, carry))
        calls += 1
        self.items_pushed += 1
        self.calls += calls
        self.last_push_calls = calls
        self.peak_push_calls = max(self.peak_push_calls, calls)
        self.peak_live_states = max(self.peak_live_states, len(self.roots))
        return before


def online_prefix(
    agg: Aggregator, items: torch.Tensor, identity: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, OnlineScanner]:
    """Push ``(B, n, *S)`` items through an :class:`OnlineScanner` one at a time.

    Returns the exclusive prefixes ``(B, n, *S)``, the final state ``(B, *S)`` and the scanner
    (for its counters); the streaming counterpart of ``exclusive_prefix(..., return_final=True)``.
    """
    _check_aggregator(agg)
    items, identity = _check_items(items, identity)
    scanner = OnlineScanner(agg, identity)
    if items.shape[1] == 0:
        empty = identity.expand(items.shape[0], *identity.shape)
        return items.clone(), empty, scanner
    before = [scanner.push(items[:, i]) for i in range(items.shape[1])]
    return torch.stack(before, dim=1), scanner.state, scanner


def left_fold_prefix(
    agg: Aggregator, items: torch.Tensor, identity: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The sequential left fold ``s_0 = e, s_{i+1} = agg(s_i, x_i)``: exclusive and final states.

    A different parenthesisation from the tree; it equals :func:`exclusive_prefix` only up to
    rounding, and only when ``agg`` is associative with ``e`` neutral.
    """
    _check_aggregator(agg)
    items, identity = _check_items(items, identity)
    state = identity.expand(items.shape[0], *identity.shape)
    before = []
    for i in range(items.shape[1]):
        before.append(state)
        state = _combine(agg, state, items[:, i])
    exclusive = torch.stack(before, dim=1) if before else items.clone()
    return exclusive, state
