"""The numba kernel of :class:`csrv2.SparseIndex`'s inverted search (``pip install csrv2[fast]``).

One query at a time: merge the query's entries (duplicate latents summed in float32 in entry
order, zeros dropped, latents ascending, as :func:`csrv2.index._merged_rows` does), walk their
posting lists into a per-document accumulator (float64, NaN = not touched), keep the best
``top_k`` touched documents in a binary heap, then merge them with the untouched documents
(score exactly 0) in id order. The work per query is proportional to the postings it touches
plus ``top_k log top_k``; nothing is sorted and no temporary is allocated per call. Scores are
the same float64 sums, in the same order (query entries by ascending latent), as the plain-torch
kernel in :mod:`csrv2.index`, so both rank identically.

``search_pruned`` is the threshold-algorithm search of a ``pruning=True`` index (impact-ordered
lists + forward codes); it returns the same results and hands the queries its bound cannot serve
(negative terms) back to ``search_inverted``.

Imported only when numba is installed; ``SparseIndex`` falls back to the torch kernel otherwise.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, types
from numba.extending import overload


def float16_table() -> np.ndarray:
    """float32 value of every float16 bit pattern: numba has no float16 on the CPU, and a 256 KiB
    table lookup is several times cheaper than decoding the bits per posting."""
    return np.arange(2**16, dtype=np.uint16).view(np.float16).astype(np.float32)


def _stored_value(values, table, p):
    raise NotImplementedError("only called from numba-compiled code")


@overload(_stored_value, inline="always")
def _stored_value_impl(values, table, p):
    # float16 values travel as their uint16 bits; float32 ones as they are (table unused).
    if values.dtype == types.uint16:
        return lambda values, table, p: np.float64(table[values[p]])
    return lambda values, table, p: np.float64(values[p])


@njit(cache=True, inline="always")
def _better(score_a, doc_a, score_b, doc_b):
    return score_a > score_b or (score_a == score_b and doc_a < doc_b)


@njit(cache=True)
def _sift_down(heap_s, heap_d, size, i):
    # Min-heap on "worse": the root is the worst of the kept documents.
    while True:
        left = 2 * i + 1
        if left >= size:
            return
        worst = left
        right = left + 1
        if right < size and _better(heap_s[worst], heap_d[worst], heap_s[right], heap_d[right]):
            worst = right
        if not _better(heap_s[i], heap_d[i], heap_s[worst], heap_d[worst]):
            return
        heap_s[i], heap_s[worst] = heap_s[worst], heap_s[i]
        heap_d[i], heap_d[worst] = heap_d[worst], heap_d[i]
        i = worst


@njit(cache=True)
def _sift_up(heap_s, heap_d, i):
    while i > 0:
        parent = (i - 1) // 2
        if not _better(heap_s[parent], heap_d[parent], heap_s[i], heap_d[i]):
            return
        heap_s[i], heap_s[parent] = heap_s[parent], heap_s[i]
        heap_d[i], heap_d[parent] = heap_d[parent], heap_d[i]
        i = parent


@njit(cache=True)
def _merge_query(q_indices, q_values, row, latents, weights):
    """The row's entries into ``latents`` / ``weights``: stably sorted by latent, duplicates
    summed in float32 in entry order, zero sums dropped; returns how many there are."""
    n = 0
    for t in range(q_indices.shape[1]):
        latent = q_indices[row, t]
        value = q_values[row, t]
        i = n
        while i > 0 and latents[i - 1] > latent:
            latents[i] = latents[i - 1]
            weights[i] = weights[i - 1]
            i -= 1
        latents[i] = latent
        weights[i] = value
        n += 1
    kept = 0
    i = 0
    while i < n:
        latent = latents[i]
        total = weights[i]
        j = i + 1
        while j < n and latents[j] == latent:
            total = np.float32(total + weights[j])
            j += 1
        if total != 0:
            latents[kept] = latent
            weights[kept] = total
            kept += 1
        i = j
    return kept


@njit(cache=True)
def search_inverted(
    offsets, doc_ids, values, table, q_indices, q_values, top_k, acc, touched, out_s, out_d
):
    """Fill ``out_s`` (float32) / ``out_d`` ``[Q, top_k]`` with the best documents of each query
    ``q_indices`` / ``q_values`` ``[Q, k]`` (float32 values).

    ``acc`` is a float64 scratch of one NaN per document and is left all NaN again on return;
    ``touched`` an int32 scratch as long.
    """
    n_docs = len(acc)
    heap_s = np.empty(top_k, np.float64)
    heap_d = np.empty(top_k, np.int64)
    latents = np.empty(q_indices.shape[1], np.int64)
    weights = np.empty(q_indices.shape[1], np.float32)
    for row in range(q_indices.shape[0]):
        n_entries = _merge_query(q_indices, q_values, row, latents, weights)
        n_touched = 0
        for e in range(n_entries):
            weight = np.float64(weights[e])
            latent = latents[e]
            for p in range(offsets[latent], offsets[latent + 1]):
                doc = doc_ids[p]
                contribution = weight * _stored_value(values, table, p)
                if math.isnan(acc[doc]):
                    acc[doc] = contribution
                    touched[n_touched] = doc
                    n_touched += 1
                else:
                    acc[doc] += contribution
        size = 0
        for t in range(n_touched):
            doc = touched[t]
            score = acc[doc]
            if size < top_k:
                heap_s[size] = score
                heap_d[size] = doc
                _sift_up(heap_s, heap_d, size)
                size += 1
            elif _better(score, doc, heap_s[0], heap_d[0]):
                heap_s[0] = score
                heap_d[0] = doc
                _sift_down(heap_s, heap_d, size, 0)
        # Popping the worst into the freed last slot leaves the kept documents best-first.
        kept = size
        while size > 0:
            size -= 1
            best_s, best_d = heap_s[0], heap_d[0]
            heap_s[0], heap_d[0] = heap_s[size], heap_d[size]
            _sift_down(heap_s, heap_d, size, 0)
            heap_s[size], heap_d[size] = best_s, best_d
        # Merge them with the untouched documents (score 0) in id order.
        h = 0
        zero = 0
        for rank in range(top_k):
            if h < kept and heap_s[h] > 0:
                out_s[row, rank] = heap_s[h]
                out_d[row, rank] = heap_d[h]
                h += 1
                continue
            while zero < n_docs and not math.isnan(acc[zero]):
                zero += 1
            if h < kept and (zero >= n_docs or _better(heap_s[h], heap_d[h], 0.0, zero)):
                out_s[row, rank] = heap_s[h]
                out_d[row, rank] = heap_d[h]
                h += 1
            else:
                out_s[row, rank] = 0.0
                out_d[row, rank] = zero
                zero += 1
        for t in range(n_touched):
            acc[touched[t]] = np.nan


# Postings read between two checks of the stopping rule. Scored one at a time, each document's
# forward row waited on memory behind the walk's branches (4-6x slower per posting, measured);
# a block scored in one loop loads its rows in parallel, and reads at most BLOCK - 1 postings
# past the point where the rule would have stopped.
BLOCK = 32


@njit(cache=True)
def _score_block(
    doc_ids, start, stop, at, fwd_latents, fwd_values, table, width, latents, weights,
    n_entries, slot, values, cursor, end, heads, scores,
):  # fmt: skip
    """``scores[i]``: the score of the document at position ``start + i`` of query entry
    ``at``'s list, from its forward row; NaN when the walk already met it in another list.

    The query entries the row holds add their products in ascending-latent order: the
    exhaustive kernel's float64 sum, bit for bit. A document sits before the cursor of entry
    ``e``'s list, i.e. was met there, exactly when its (value, id) key precedes the cursor's
    (``heads[e]``, its id): lists are ordered by value descending, then id ascending.
    """
    # Narrow rows and queries (k = 2: two comparisons) compare every other query entry with
    # every row entry, taking the walked entry's value from its list; wider ones look each row
    # latent up in ``slot`` (its query entry, -1 if none): 64 comparisons at k = 8 cost ~3x more.
    compare_all = (n_entries - 1) * width <= 8
    for i in range(stop - start):
        doc = doc_ids[start + i]
        base = doc * width
        score = 0.0
        seen = False
        if compare_all:
            for e in range(n_entries):
                if e == at:
                    score += np.float64(weights[e]) * _stored_value(values, table, start + i)
                    continue
                latent = latents[e]
                # Padding entries (value 0) may carry latent 0; the value test skips them.
                for j in range(base, base + width):
                    if fwd_latents[j] == latent and fwd_values[j] != 0:
                        value = _stored_value(fwd_values, table, j)
                        seen |= _met(value, doc, heads[e], cursor[e], end[e], doc_ids)
                        score += np.float64(weights[e]) * value
        else:
            for j in range(base, base + width):
                if fwd_values[j] == 0:
                    break  # padding
                e = slot[fwd_latents[j]]
                if e < 0:
                    continue
                value = _stored_value(fwd_values, table, j)
                if e != at:
                    seen |= _met(value, doc, heads[e], cursor[e], end[e], doc_ids)
                score += np.float64(weights[e]) * value
        scores[i] = np.nan if seen else score


@njit(cache=True, inline="always")
def _met(value, doc, head, cursor, end, doc_ids):
    """Whether the posting (value, doc) lies before ``cursor`` in its list."""
    return cursor >= end or value > head or (value == head and doc < doc_ids[cursor])


@njit(cache=True)
def _shares_latent(fwd_latents, fwd_values, width, doc, latents, n_entries):
    for j in range(doc * width, doc * width + width):
        if fwd_values[j] == 0:
            return False
        latent = fwd_latents[j]
        for e in range(n_entries):
            if latents[e] == latent:
                return True
    return False


@njit(cache=True)
def search_pruned(
    offsets, doc_ids, values, table, fwd_latents, fwd_values, width, q_indices, q_values, top_k,
    out_s, out_d, walked,
):  # fmt: skip
    """Exact top ``top_k`` by Fagin's threshold algorithm over impact-ordered posting lists.

    ``offsets`` / ``doc_ids`` / ``values``: each latent's postings ordered by value descending,
    then id ascending; ``fwd_latents`` / ``fwd_values``: the stored codes row-major, ``width``
    entries per document (latents ascending, padded with value 0). For each query the lists are
    walked ``BLOCK`` postings at a time, always in the list whose next contribution ``w * v`` is
    the largest; each document is scored exactly from its forward row the first time it is met.
    Between blocks the walk stops once ``top_k`` documents are kept and the worst of them scores
    strictly above the bound: the float64 sum, in ascending-latent order, of each list's next
    contribution (0 for an exhausted list). Every unmet document's score is the same kind of sum
    of terms no larger (0 where it lacks the latent), and rounding to nearest is monotone, so none
    can reach it, tie rule included. Documents sharing no latent with the query score exactly 0
    and fill the ranks the walk leaves empty, in id order.

    The bound needs every term non-negative: a query with a negative weight, or whose lists hold a
    negative value, is not walked; its ``walked`` entry is -1 and the caller runs the exhaustive
    kernel for it. Otherwise ``walked`` holds the postings read.
    """
    heap_s = np.empty(top_k, np.float64)
    heap_d = np.empty(top_k, np.int64)
    k_max = q_indices.shape[1]
    latents = np.empty(k_max, np.int64)
    weights = np.empty(k_max, np.float32)
    cursor = np.empty(k_max, np.int64)
    end = np.empty(k_max, np.int64)
    heads = np.empty(k_max, np.float64)
    scores = np.empty(BLOCK, np.float64)
    slot = np.full(len(offsets) - 1, -1, np.int32)
    for row in range(q_indices.shape[0]):
        n_entries = _merge_query(q_indices, q_values, row, latents, weights)
        positive = True
        for e in range(n_entries):
            cursor[e] = offsets[latents[e]]
            end[e] = offsets[latents[e] + 1]
            if weights[e] < 0 or (
                end[e] > cursor[e] and _stored_value(values, table, end[e] - 1) < 0
            ):
                positive = False
        if not positive:
            walked[row] = -1
            continue
        for e in range(n_entries):
            slot[latents[e]] = e
        size = 0
        n_walked = 0
        while True:
            bound = 0.0
            best = -1
            best_c = 0.0
            for e in range(n_entries):
                if cursor[e] < end[e]:
                    heads[e] = _stored_value(values, table, cursor[e])
                    c = np.float64(weights[e]) * heads[e]
                    bound += c
                    if best < 0 or c > best_c:
                        best = e
                        best_c = c
            if best < 0 or (size == top_k and heap_s[0] > bound):
                break
            start = cursor[best]
            stop = min(start + BLOCK, end[best])
            cursor[best] = stop
            n_walked += stop - start
            _score_block(
                doc_ids, start, stop, best, fwd_latents, fwd_values, table, width, latents,
                weights, n_entries, slot, values, cursor, end, heads, scores,
            )  # fmt: skip
            for i in range(stop - start):
                score = scores[i]
                if math.isnan(score):
                    continue
                doc = doc_ids[start + i]
                # The heap update and the final pop loop repeat search_inverted's by hand: the
                # same code as a shared njit helper made both kernels about 3x slower (measured).
                if size < top_k:
                    heap_s[size] = score
                    heap_d[size] = doc
                    _sift_up(heap_s, heap_d, size)
                    size += 1
                elif _better(score, doc, heap_s[0], heap_d[0]):
                    heap_s[0] = score
                    heap_d[0] = doc
                    _sift_down(heap_s, heap_d, size, 0)
        walked[row] = n_walked
        for e in range(n_entries):
            slot[latents[e]] = -1
        kept = size
        while size > 0:
            size -= 1
            best_s, best_d = heap_s[0], heap_d[0]
            heap_s[0], heap_d[0] = heap_s[size], heap_d[size]
            _sift_down(heap_s, heap_d, size, 0)
            heap_s[size], heap_d[size] = best_s, best_d
        # Kept documents all score > 0. Fewer than top_k of them means every list was walked to
        # its end and every document sharing a latent is kept: the rest score 0, ranked by id.
        zero = 0
        for rank in range(top_k):
            if rank < kept:
                out_s[row, rank] = heap_s[rank]
                out_d[row, rank] = heap_d[rank]
                continue
            while _shares_latent(fwd_latents, fwd_values, width, zero, latents, n_entries):
                zero += 1
            out_s[row, rank] = 0.0
            out_d[row, rank] = zero
            zero += 1
