"""CPU kernels in numba for offline selection and online prompt routing (``seqtopk[fast]``).

Both give exactly what the torch paths give (the tests compare them on random and tied scores):

- :func:`select_offline`: per token, its top-U experts ranked (score desc, expert asc) by an
  insertion into a U-slot buffer; per sequence, the ``n (k - L)`` best candidates at ranks
  ``[L, U)`` in the order (score desc, token asc, rank asc), found with one ``np.partition`` for
  the threshold value and one pass that gives the ties at it to the earliest candidates.
- :func:`prompt_route`: the online rule for every token of a first call, from each
  prefix's threshold ``tau_t`` (the ``m_t k``-th best of the prefix's keys, :func:`_key`). The
  keys live in three places, every key of one above every key of the next: a min-heap of the
  keys above a short sorted band, the band, and a max-heap of the keys below it. The threshold
  is a position in the band; it moves a few places per token, so almost every key costs one heap
  push (expected O(1)) and heaps are popped only when the threshold leaves the band. Only scores
  at or above a floor are keys at all (see :func:`_rank_and_keep`): about ``1.2 k`` per token
  instead of E (9.4 at K=8, E=64 on softmax router scores).

Imported only when numba is installed; :mod:`seqtopk.selection` and :mod:`seqtopk.online` use
the torch paths otherwise.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# Sampled scores per sequence to place the floor of `_sample_floor`, and the multiple of the share
# k/E of a prefix's scores that its top set holds at which the floor is placed.
_FLOOR_SAMPLE = 1024
_KEEP_MULTIPLE = 1.25
# Keys the band holds between tokens (it grows by at most 2E within one).
_BAND = 64


@njit(cache=True, inline="always")
def _key(bits, position):
    """An int64 whose order is (score desc, position asc), from a float32's bits: the bits made
    monotone in the high half (``-0.0`` as ``+0.0``), ``2**32 - 1 - position`` in the low half."""
    high = np.int64(bits)
    if high == -(2**31):
        high = np.int64(0)
    elif high < 0:
        high = high ^ np.int64(0x7FFFFFFF)
    return (high << 32) | (np.int64(0xFFFFFFFF) - position)


@njit(cache=True, inline="always")
def _rank_row(row, high, experts, values, floor, kept, at):
    """The ``high`` best entries of ``row`` (value desc, index asc) into ``experts``/``values``.

    Also appends to ``kept`` from ``at`` the indices of the entries at or above ``floor`` and
    returns the new end (written unconditionally, advanced by the comparison: no branch to
    mispredict). In the ranking's own pass this costs nothing measurable; a pass of its own
    cost 60-140 ns per 64-expert token. ``floor = inf`` keeps nothing (``kept`` then needs one
    slot).
    """
    filled = 0
    for e in range(row.shape[0]):
        v = row[e]
        kept[at] = e
        at += v >= floor
        if filled == high and not v > values[high - 1]:
            continue
        place = filled if filled < high else high - 1
        while place > 0 and v > values[place - 1]:
            values[place] = values[place - 1]
            experts[place] = experts[place - 1]
            place -= 1
        values[place] = v
        experts[place] = e
        if filled < high:
            filled += 1
    return at


@njit(cache=True)
def rank_tokens(scores, high):
    """Every token's top-U experts: ``(experts [B, T, U] int64, values [B, T, U] float32)``."""
    batch, length, _ = scores.shape
    experts = np.empty((batch, length, high), dtype=np.int64)
    values = np.empty((batch, length, high), dtype=np.float32)
    nothing_kept = np.empty(1, dtype=np.int32)
    for b in range(batch):
        for t in range(length):
            _rank_row(scores[b, t], high, experts[b, t], values[b, t], np.inf, nothing_kept, 0)
    return experts, values


@njit(cache=True)
def select_offline(scores, valid, k, low, high):
    """Offline SeqTopK: ``(experts [B, T, U], counts [B, T], selected [B, T, E] bool)``."""
    batch, length, num_experts = scores.shape
    experts, values = rank_tokens(scores, high)
    counts = np.zeros((batch, length), dtype=np.int64)
    selected = np.zeros((batch, length, num_experts), dtype=np.bool_)
    width, extra = high - low, k - low
    for b in range(batch):
        n = 0
        for t in range(length):
            if valid[b, t]:
                counts[b, t] = low
                n += 1
        need = n * extra
        if need > 0 and extra < width:
            candidates = np.empty(n * width, dtype=np.float32)
            at = 0
            for t in range(length):
                if valid[b, t]:
                    candidates[at : at + width] = values[b, t, low:high]
                    at += width
            threshold = np.partition(candidates, candidates.shape[0] - need)[
                candidates.shape[0] - need
            ]
            above = 0
            for v in candidates:
                if v > threshold:
                    above += 1
            ties_left = need - above
            for t in range(length):
                if not valid[b, t]:
                    continue
                for r in range(low, high):
                    v = values[b, t, r]
                    if v > threshold:
                        counts[b, t] += 1
                    elif v == threshold and ties_left > 0:
                        counts[b, t] += 1
                        ties_left -= 1
        elif need > 0:
            for t in range(length):
                if valid[b, t]:
                    counts[b, t] = k
        for t in range(length):
            for r in range(counts[b, t]):
                selected[b, t, experts[b, t, r]] = True
    return experts, counts, selected


@njit(cache=True)
def _sample_floor(scores, valid, k):
    """The ``1.25 k / E`` upper quantile of a strided sample of one sequence's scores [T, E]
    (at 1.5 the prompt ran 4% slower at B=2, T=1024 on softmax scores; a floor much closer to
    the k/E share leaves more prefixes short, and their tokens keep keys down to the repair's
    lower floor)."""
    length, num_experts = scores.shape
    total = length * num_experts
    stride = max(1, total // _FLOOR_SAMPLE)
    sample = np.empty((total + stride - 1) // stride, dtype=np.float32)
    for i in range(sample.shape[0]):
        t, e = divmod(i * stride, num_experts)
        sample[i] = scores[t, e] if valid[t] else -np.inf
    keep = int(_KEEP_MULTIPLE * k / num_experts * sample.shape[0])
    rank = max(0, sample.shape[0] - 1 - keep)
    return np.partition(sample, rank)[rank]


@njit(cache=True)
def _compact(row, floor, kept, at):
    """Append the indices of ``row``'s entries at or above ``floor`` to ``kept`` from ``at``;
    returns the new end (as :func:`_rank_row` does, without the ranking)."""
    for e in range(row.shape[0]):
        kept[at] = e
        at += row[e] >= floor
    return at


@njit(cache=True)
def _rank_and_keep(scores, valid, k, experts, values):
    """Rank every token of one sequence (into ``experts``/``values`` [T, U]) and collect, by
    token, the experts whose scores can be in some prefix's top set: ``(kept, start [T + 1])``,
    token ``t``'s in ``kept[start[t]:start[t + 1]]``.

    A score below its token's floor is in no prefix's top ``m_t k``. The sequence's floor is
    :func:`_sample_floor`; a prefix ``t`` keeping at least ``m_t k`` scores at or above it has
    its threshold there or higher. Tokens up to the last prefix that keeps fewer (``t0``) get
    ``min(floor, min_{s <= t0} kth_best_s)`` instead: every prefix's threshold is at least its
    tokens' lowest k-th best score, since each of its ``m_t`` tokens has k scores at or above it.
    """
    length, num_experts = scores.shape
    high = experts.shape[1]
    floor = _sample_floor(scores, valid, k)
    kept = np.empty(length * num_experts + 1, dtype=np.int32)
    start = np.zeros(length + 1, dtype=np.int64)
    last_short, seen = -1, 0
    for t in range(length):
        # A padding token ranks too (its experts are returned) but keeps nothing.
        end = _rank_row(
            scores[t], high, experts[t], values[t], floor if valid[t] else np.inf, kept, start[t]
        )
        start[t + 1] = end
        if valid[t]:
            seen += 1
            if end < seen * k:
                last_short = t
    if last_short >= 0:
        lowest = floor
        for t in range(last_short + 1):
            if valid[t] and values[t, k - 1] < lowest:
                lowest = values[t, k - 1]
        for t in range(length):
            if valid[t]:
                start[t + 1] = _compact(
                    scores[t], lowest if t <= last_short else floor, kept, start[t]
                )
            else:
                start[t + 1] = start[t]
    return kept, start


@njit(cache=True, inline="always")
def _heap_push(heap, size, key):
    """Push onto the min-heap ``heap[:size]``; returns the new size."""
    at = size
    while at > 0:
        parent = (at - 1) >> 1
        if heap[parent] <= key:
            break
        heap[at] = heap[parent]
        at = parent
    heap[at] = key
    return size + 1


@njit(cache=True, inline="always")
def _heap_pop(heap, size):
    """Pop the least key of the min-heap ``heap[:size]``: ``(key, new size)``."""
    least = heap[0]
    size -= 1
    last = heap[size]
    at = 0
    while True:
        child = 2 * at + 1
        if child >= size:
            break
        if child + 1 < size and heap[child + 1] < heap[child]:
            child += 1
        if heap[child] >= last:
            break
        heap[at] = heap[child]
        at = child
    heap[at] = last
    return least, size


@njit(cache=True)
def _recentred(band, bottom, top_end, split):
    """Move ``band[bottom:top_end]`` to the middle of ``band``: the new ``(bottom, top_end,
    split)``."""
    size = top_end - bottom
    new_bottom = (band.shape[0] - size) // 2
    if new_bottom < bottom:
        for i in range(size):
            band[new_bottom + i] = band[bottom + i]
    else:
        for i in range(size - 1, -1, -1):
            band[new_bottom + i] = band[bottom + i]
    return new_bottom, new_bottom + size, split + new_bottom - bottom


@njit(cache=True)
def prompt_route(scores, bits, valid, k, low, high):
    """Online SeqTopK for a state's first call: ``(experts [B, T, U], counts [B, T], selected
    [B, T, E] bool)``, ``bits`` being ``scores`` viewed as int32.

    A token's count is how many of its scores are in its prefix's top ``m_t k`` (ties by token,
    then expert), clamped to ``[L, U]`` and to the budget left, ``m_t k - used``; padding gets 0.
    """
    batch, length, num_experts = scores.shape
    experts = np.empty((batch, length, high), dtype=np.int64)
    values = np.empty((batch, length, high), dtype=np.float32)
    counts = np.zeros((batch, length), dtype=np.int64)
    selected = np.zeros((batch, length, num_experts), dtype=np.bool_)
    capacity = 2 * (_BAND + 2 * num_experts) + 2
    band = np.empty(capacity, dtype=np.int64)
    above = np.empty(length * num_experts, dtype=np.int64)  # min-heap
    below = np.empty(length * num_experts, dtype=np.int64)  # negated keys: a max-heap
    for b in range(batch):
        kept, start = _rank_and_keep(scores[b], valid[b], k, experts[b], values[b])
        n_above, n_below, used = 0, 0, 0
        # band[bottom:top_end] ascending; band[split:top_end] and `above` hold the prefix's top set.
        bottom = top_end = split = capacity // 2
        seen = 0
        for t in range(length):
            if not valid[b, t]:
                continue
            seen += 1
            for i in range(start[t], start[t + 1]):
                e = kept[i]
                key = _key(bits[b, t, e], t * num_experts + e)
                if top_end == bottom:
                    band[bottom] = key
                    top_end = bottom + 1
                elif key > band[top_end - 1]:
                    n_above = _heap_push(above, n_above, key)
                elif key < band[bottom]:
                    n_below = _heap_push(below, n_below, -key)
                else:
                    if top_end == capacity:
                        bottom, top_end, split = _recentred(band, bottom, top_end, split)
                    at = top_end
                    while band[at - 1] > key:
                        band[at] = band[at - 1]
                        at -= 1
                    band[at] = key
                    top_end += 1
                    if at < split:
                        split += 1
            allowance = seen * k
            size = n_above + top_end - split
            while size > allowance:
                if split == top_end:
                    if top_end == capacity:
                        bottom, top_end, split = _recentred(band, bottom, top_end, split)
                    band[top_end], n_above = _heap_pop(above, n_above)
                    top_end += 1
                split += 1
                size -= 1
            while size < allowance:
                if split == bottom:
                    if bottom == 0:
                        bottom, top_end, split = _recentred(band, bottom, top_end, split)
                    key, n_below = _heap_pop(below, n_below)
                    bottom -= 1
                    band[bottom] = -key
                split -= 1
                size += 1
            while top_end - bottom > _BAND:
                if split - bottom > top_end - split:
                    n_below = _heap_push(below, n_below, -band[bottom])
                    bottom += 1
                else:
                    top_end -= 1
                    n_above = _heap_push(above, n_above, band[top_end])
            threshold = band[split] if split < top_end else above[0]
            inside = 0
            for j in range(high):
                e = experts[b, t, j]
                inside += _key(bits[b, t, e], t * num_experts + e) >= threshold
            count = min(max(inside, low), allowance - used)
            used += count
            counts[b, t] = count
            for j in range(count):
                selected[b, t, experts[b, t, j]] = True
    return experts, counts, selected
