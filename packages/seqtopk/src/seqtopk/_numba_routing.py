"""CPU kernels in numba for offline selection and online prompt routing (``seqtopk[fast]``).

Both give exactly what the torch paths give (the tests compare them on random and tied scores):

- :func:`select_offline`: per token, its top-U experts ranked (score desc, expert asc) by an
  insertion into a U-slot buffer; per sequence, the ``n (k - L)`` best candidates at ranks
  ``[L, U)`` in the order (score desc, token asc, rank asc), found with one ``np.partition`` for
  the threshold value and one pass that gives the ties at it to the earliest candidates.
- :func:`prompt_route`: the online rule for every token of a first call, from each
  prefix's threshold ``tau_t`` (the ``m_t k``-th best of the prefix's keys, :func:`_key`). Only
  scores at or above a floor are keys at all (see :func:`_rank_and_keep`): about ``1.2 k`` per
  token instead of E (9.4 at K=8, E=64 on softmax router scores). The keys are grouped by score
  into buckets of equal width (about four keys each), filled in token order, so a prefix's keys
  in a bucket are the bucket's first ones. A histogram of the prefix's keys per bucket locates
  the bucket holding ``tau_t`` (it moves a few buckets per token); a token's score in a higher
  bucket is inside, in a lower one outside, and only one in that bucket is compared with the
  bucket's keys (:func:`_inside_by_buckets`). A sequence on which these comparisons grow too
  many (ties, or scores bunched tighter than the width) is redone by :func:`_inside_by_heaps`,
  whose cost does not depend on how the scores bunch: the keys in three tiers, every key of one
  above every key of the next (a min-heap above a short sorted band, the band, a max-heap
  below), the threshold a position in the band. On softmax scores the kernel measured
  1.04-1.11x offline selection, the heaps alone 1.18-1.37x (B=2, T=512 and 2048; B=8, T=1024).

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
# Keys the band of `_inside_by_heaps` holds between tokens (it grows by at most 2E within one).
_BAND = 64
# Keys per bucket on average in `_inside_by_buckets` (2 and 8 measured the same).
_KEYS_PER_BUCKET = 4
# Keys per token that `_inside_by_buckets` may compare (a score in the threshold's bucket is
# compared with the bucket's keys so far), over the tokens seen plus `_SCAN_GRACE`, before the
# sequence is redone by `_inside_by_heaps`. A compared key costs about 2 ns and the heaps about
# 150 ns per token more than the buckets: within the budget the buckets are no slower, and a
# sequence past it has wasted about what the heaps cost extra.
SCAN_BUDGET = 64
_SCAN_GRACE = 64


@njit(cache=True, inline="always")
def _monotone(bits):
    """A float32's bits (as int32) as an int64 in the float's order (``-0.0`` as ``+0.0``)."""
    value = np.int64(bits)
    if value == -(2**31):
        return np.int64(0)
    if value < 0:
        return value ^ np.int64(0x7FFFFFFF)
    return value


@njit(cache=True, inline="always")
def _key(bits, position):
    """An int64 whose order is (score desc, position asc), from a float32's bits: the bits made
    monotone in the high half, ``2**32 - 1 - position`` in the low half."""
    return (_monotone(bits) << 32) | (np.int64(0xFFFFFFFF) - position)


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
    token, the experts whose scores can be in some prefix's top set: ``(kept, start [T + 1],
    lowest)``, token ``t``'s in ``kept[start[t]:start[t + 1]]``, every kept score at or above the
    float32 ``lowest``.

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
    lowest = floor
    if last_short >= 0:
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
    return kept, start, np.float32(lowest)


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
def _float_bits(value):
    """The bits of the float32 ``value`` as an int32."""
    return np.array([value], dtype=np.float32).view(np.int32)[0]


@njit(cache=True)
def _inside_by_buckets(bits, valid, k, kept, start, lowest, experts, inside, scan_budget):
    """Write ``inside[t]``, how many of token ``t``'s ranked ``experts`` [T, U] have keys at or
    above its prefix's threshold, for one sequence (``bits`` [T, E]); the keys grouped in buckets
    of score (see the module docstring). Returns False, unfinished, once the comparisons with
    bucket keys pass ``scan_budget`` per token (see ``SCAN_BUDGET``): ties, or scores bunched
    tighter than a bucket's width."""
    length, num_experts = bits.shape
    high = experts.shape[1]
    total = start[length]
    if total == 0:
        return True
    low_end = _monotone(_float_bits(lowest))
    high_end = low_end
    for t in range(length):
        if valid[t]:
            high_end = max(high_end, _monotone(bits[t, experts[t, 0]]))
    shift = 0
    while (high_end - low_end) >> shift >= max(1, total // _KEYS_PER_BUCKET):
        shift += 1
    num_buckets = ((high_end - low_end) >> shift) + 1
    bucket = np.empty(total, dtype=np.int32)
    first = np.zeros(num_buckets + 1, dtype=np.int64)
    for t in range(length):
        for i in range(start[t], start[t + 1]):
            q = (_monotone(bits[t, kept[i]]) - low_end) >> shift
            bucket[i] = q
            first[q + 1] += 1
    for q in range(num_buckets):
        first[q + 1] += first[q]
    # A bucket's first `filled[q]` positions (t E + e) are the current prefix's keys in it.
    positions = np.empty(total, dtype=np.int32)
    filled = np.zeros(num_buckets, dtype=np.int64)
    flat = bits.reshape(-1)
    at, above, seen = num_buckets - 1, 0, 0  # `above`: the prefix's keys in buckets above `at`
    compared = 0
    for t in range(length):
        if not valid[t]:
            continue
        seen += 1
        for i in range(start[t], start[t + 1]):
            q = bucket[i]
            positions[first[q] + filled[q]] = t * num_experts + kept[i]
            filled[q] += 1
            above += q > at
        allowance = seen * k
        while above + filled[at] < allowance:
            above += filled[at]
            at -= 1
        while above >= allowance:
            at += 1
            above -= filled[at]
        rank = allowance - above  # the threshold's place from the top of bucket `at`
        count = 0
        for j in range(high):
            e = experts[t, j]
            score = _monotone(bits[t, e])
            if score < low_end:
                break
            q = (score - low_end) >> shift
            if q < at:
                break
            if q == at:
                key = _key(bits[t, e], t * num_experts + e)
                compared += filled[at]
                if compared > scan_budget * (seen + _SCAN_GRACE):
                    return False
                better = 0
                for s in range(first[at], first[at] + filled[at]):
                    better += _key(flat[positions[s]], positions[s]) > key
                if better >= rank:
                    break
            count += 1
        inside[t] = count
    return True


@njit(cache=True)
def _inside_by_heaps(bits, valid, k, kept, start, experts, inside):
    """:func:`_inside_by_buckets` with the keys in a sorted band between two heaps (see the
    module docstring), at a cost that does not depend on how the scores bunch."""
    length, num_experts = bits.shape
    high = experts.shape[1]
    capacity = 2 * (_BAND + 2 * num_experts) + 2
    band = np.empty(capacity, dtype=np.int64)
    above = np.empty(max(1, start[length]), dtype=np.int64)  # min-heap
    below = np.empty(max(1, start[length]), dtype=np.int64)  # negated keys: a max-heap
    n_above, n_below = 0, 0
    # band[bottom:top_end] ascending; band[split:top_end] and `above` hold the prefix's top set.
    bottom = top_end = split = capacity // 2
    seen = 0
    for t in range(length):
        if not valid[t]:
            continue
        seen += 1
        for i in range(start[t], start[t + 1]):
            e = kept[i]
            key = _key(bits[t, e], t * num_experts + e)
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
        count = 0
        for j in range(high):
            e = experts[t, j]
            count += _key(bits[t, e], t * num_experts + e) >= threshold
        inside[t] = count


@njit(cache=True)
def prompt_route(scores, bits, valid, k, low, high, scan_budget=SCAN_BUDGET):
    """Online SeqTopK for a state's first call: ``(experts [B, T, U], counts [B, T], selected
    [B, T, E] bool, used [B], seen [B])`` (the experts spent and the valid tokens per sequence),
    ``bits`` being ``scores`` viewed as int32 (``T E < 2**31``).

    A token's count is how many of its scores are in its prefix's top ``m_t k`` (ties by token,
    then expert), clamped to ``[L, U]`` and to the budget left, ``m_t k - used``; padding gets 0.
    ``scan_budget`` 0 routes every sequence by the heaps.
    """
    batch, length, num_experts = scores.shape
    experts = np.empty((batch, length, high), dtype=np.int64)
    values = np.empty((batch, length, high), dtype=np.float32)
    counts = np.zeros((batch, length), dtype=np.int64)
    selected = np.zeros((batch, length, num_experts), dtype=np.bool_)
    inside = np.empty(length, dtype=np.int64)
    used = np.zeros(batch, dtype=np.int64)
    seen = np.zeros(batch, dtype=np.int64)
    for b in range(batch):
        kept, start, lowest = _rank_and_keep(scores[b], valid[b], k, experts[b], values[b])
        if scan_budget == 0 or not _inside_by_buckets(
            bits[b], valid[b], k, kept, start, lowest, experts[b], inside, scan_budget
        ):
            _inside_by_heaps(bits[b], valid[b], k, kept, start, experts[b], inside)
        spent, tokens = 0, 0
        for t in range(length):
            if not valid[b, t]:
                continue
            tokens += 1
            count = min(max(inside[t], low), tokens * k - spent)
            spent += count
            counts[b, t] = count
            for j in range(count):
                selected[b, t, experts[b, t, j]] = True
        used[b], seen[b] = spent, tokens
    return experts, counts, selected, used, seen
