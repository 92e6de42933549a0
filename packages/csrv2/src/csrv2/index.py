"""An inverted index over sparse-code latents, with exact top-k search.

For every latent the index keeps a posting list: the ids of the stored codes in which it is
non-zero (int32) and their values (float32 or float16, chosen when the index is made), in id
order; that is all it stores, ``4 + 4`` or ``4 + 2`` bytes per non-zero plus one int64 offset per
latent. A query ``q`` with entries ``(j, v)`` scores document ``n`` as ``sum_j v * value(n, j)``,
the inner product of the decoded (dense) codes, touching only the documents that share a latent
with the query: about ``N k^2 sum_j p_j^2`` postings for usage frequencies ``p``
(:func:`csrv2.metrics.expected_postings_per_query`) instead of ``N`` dense dot products.

Results are ranked by score descending, ties by the lower document id, exactly as brute-force
scoring of the stored codes (:meth:`SparseIndex.codes`) followed by a stable sort, including
documents that share no latent with the query (score 0) and all-zero queries. Scores are
float64 sums of the products (query entries in ascending latent order), returned as float32;
when the values are exact in float64 sums (e.g. small integers) they equal the dense dot
product bit for bit, otherwise to rounding.

Two kernels compute the same scores in the same order, so they rank identically:

- ``"numba"`` (``pip install csrv2[fast]``): one query at a time (its entries merged in the
  kernel) into a per-document accumulator, the best ``top_k`` kept in a heap, untouched
  documents merged in at score 0; work proportional to the postings touched, nothing sorted,
  nothing allocated per call (float16 values decoded through a 65536-entry table).
- ``"torch"`` (always there): a block of queries at once, the touched postings sorted by
  (query, document) and summed; several times slower, no dependency beyond torch.

``pruning=True`` (opt-in, made when the index is built) orders each posting list by value
descending (ties by id) and keeps the forward codes beside them: every document's latents
(``latent_dtype``) and values (``value_dtype``), ``[N, k_max]``, so that a document can be scored
exactly on its own. The numba kernel then searches by Fagin's threshold algorithm: it walks the
query's lists from their largest contributions down, scores each document it meets from its
forward row, and stops once the ``top_k``-th score is strictly above what any unmet document could
reach (:func:`csrv2._numba_search.search_pruned` has the argument). The results are the same,
ids, scores and ties, as the exhaustive search's; a query with a negative weight, or whose lists
hold a negative value, falls back to the exhaustive kernel (the bound needs non-negative terms).
It costs ``(size(latent_dtype) + size(value_dtype))`` more bytes per non-zero (4 at uint16 +
float16: 20 B per vector at k = 2 instead of 12); :meth:`SparseIndex.postings_walked` counts the
postings each query reads. The torch kernel and the scan work on the impact-ordered lists
unchanged (exhaustively).

``kernel="auto"`` takes numba when it imports. ``method="scan"`` scores every document with
:meth:`kernelkit.topk.SparseCodes.dot` (a Triton kernel on CUDA, a vectorised gather elsewhere)
in chunks: the right choice on a GPU, where the scan is one big parallel pass.
"""

from __future__ import annotations

import functools
import os
import threading
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from kernelkit.io import ArtifactError, load_artifact, save_artifact
from kernelkit.topk import SparseCodes, topk_codes
from kernelkit.validation import check_int_in_range

__all__ = ["INDEX_KIND", "SearchResult", "SparseIndex", "numba_available"]

INDEX_KIND = "csrv2.SparseIndex"
Similarity = Literal["dot", "cosine"]
SearchMethod = Literal["inverted", "scan"]
Kernel = Literal["auto", "numba", "torch"]

# Queries scored together by the torch kernel, codes per chunk of the scan path, and code rows
# per chunk when normalising: each bounds the temporaries to a few tens of MiB.
_QUERY_BLOCK = 256
_SCAN_CHUNK = 1 << 16
# Scores per chunk of the scan path on an accelerator (512 MiB of float32): there each chunk
# costs a dozen kernel launches and a few host syncs whatever its size, so 64k-code chunks
# made a 1M-code search 2-11x slower on an H200 (11-42 ms; one dot over all codes takes
# 0.1-0.3 ms and one top-k 0.6-1.7 ms).
_SCAN_SCORES_ON_ACCELERATOR = 1 << 27
_NORM_CHUNK = 1 << 16
# Document ids are stored as int32.
MAX_DOCUMENTS = 2**31 - 1

_VALUE_DTYPES = {"float32": torch.float32, "float16": torch.float16}
_LATENT_DTYPES = {"uint16": torch.uint16, "int32": torch.int32}


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


class SearchResult(tuple):
    """``(scores[Q, top_k], ids[Q, top_k])``; a named pair."""

    __slots__ = ()

    def __new__(cls, scores: torch.Tensor, ids: torch.Tensor) -> SearchResult:
        return super().__new__(cls, (scores, ids))

    @property
    def scores(self) -> torch.Tensor:
        return self[0]

    @property
    def ids(self) -> torch.Tensor:
        return self[1]


@functools.cache
def _numba_module():
    try:
        from csrv2 import _numba_search
    except ImportError:
        return None
    return _numba_search


@functools.cache
def _float16_table() -> np.ndarray:
    return _numba_module().float16_table()


# The float32 kernel takes the table argument too and never reads it.
_NO_TABLE = np.zeros(0, dtype=np.float32)


def _kernel_values(values: torch.Tensor) -> np.ndarray:
    """Stored values as the numba kernels read them: float16 as raw uint16 bits (decoded
    through the table), float32 as is."""
    if values.dtype == torch.float16:
        return values.view(torch.int16).numpy().view(np.uint16)
    return values.numpy()


def numba_available() -> bool:
    """Whether the numba kernel of the inverted search can run (``pip install csrv2[fast]``)."""
    return _numba_module() is not None


def _all_finite(values: torch.Tensor) -> bool:
    if values.device.type == "cpu" and values.dtype in (torch.float32, torch.float64):
        # numpy's check costs a microsecond on a single query, torch's tens.
        return bool(np.isfinite(values.detach().numpy()).all())
    return bool(torch.isfinite(values).all())


def _check_codes(name: str, codes: object, dim: int | None) -> SparseCodes:
    if not isinstance(codes, SparseCodes):
        raise TypeError(f"{name} must be kernelkit SparseCodes, got {type(codes).__name__}")
    if codes.indices.ndim != 2:
        raise ValueError(f"{name} must be a batch [N, k], got shape {tuple(codes.indices.shape)}")
    if dim is not None and codes.dim != dim:
        raise ValueError(f"{name} must have dim={dim} (the index's latents), got dim={codes.dim}")
    if codes.values.numel() and not _all_finite(codes.values):
        raise ValueError(f"{name} values must be finite")
    return codes


def _l2_normalised(codes: SparseCodes) -> SparseCodes:
    """Codes divided by the norm of their dense form (duplicate indices add up before squaring),
    computed without densifying: ``||x||^2 = sum_t v_t * sum_{u: i_u = i_t} v_u``."""
    norms = []
    for start in range(0, len(codes), _NORM_CHUNK):
        part = codes[start : start + _NORM_CHUNK]
        same = part.indices.unsqueeze(2) == part.indices.unsqueeze(1)
        merged = (same * part.values.unsqueeze(1)).sum(dim=2)
        norms.append((part.values * merged).sum(dim=1, keepdim=True).clamp_min(0).sqrt())
    norm = torch.cat(norms) if norms else codes.values.new_zeros(0, 1)
    return codes.with_values(torch.where(norm > 0, codes.values / norm.clamp_min(1e-30), 0.0))


def _merged_rows(
    codes: SparseCodes, row_offset: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(rows, latents, values)`` of every non-zero entry, one per (row, latent): duplicates summed
    in float32 in entry order (as ``to_dense`` does), sorted by row then latent."""
    n, k = codes.indices.shape
    key = (torch.arange(n).repeat_interleave(k) * codes.dim) + codes.indices.reshape(-1)
    key, order = torch.sort(key, stable=True)
    unique_key, inverse = torch.unique_consecutive(key, return_inverse=True)
    summed = torch.zeros(len(unique_key), dtype=torch.float32).index_add_(
        0, inverse, codes.values.reshape(-1)[order].float()
    )
    keep = summed != 0
    unique_key, summed = unique_key[keep], summed[keep]
    return unique_key // codes.dim + row_offset, unique_key % codes.dim, summed


class SparseIndex:
    """Inverted index over codes of width ``dim``.

    Args:
        dim: number of latents (the head's ``hidden``).
        similarity: ``"dot"`` (inner product of the codes) or ``"cosine"`` (codes L2-normalised
            when added and searched).
        value_dtype: ``torch.float32`` (default, exact) or ``torch.float16`` (half the value
            bytes; values are rounded once when stored and searched as stored).
        latent_dtype: dtype of the latent ids in the saved form (and the forward codes of a
            pruning index): ``torch.uint16`` (default when ``dim <= 65536``) or ``torch.int32``.
        pruning: keep impact-ordered posting lists and the forward codes, and search with the
            threshold algorithm (numba kernel): exact, same results, fewer postings read on
            skewed codes, ``size(latent_dtype) + size(value_dtype)`` more bytes per non-zero.
    """

    def __init__(
        self,
        dim: int,
        similarity: Similarity = "dot",
        *,
        value_dtype: torch.dtype = torch.float32,
        latent_dtype: torch.dtype | None = None,
        pruning: bool = False,
    ) -> None:
        self.dim = check_int_in_range("dim", dim, 1)
        if not isinstance(pruning, bool):
            raise TypeError(f"pruning must be a bool (True or False), got {pruning!r}")
        if similarity not in ("dot", "cosine"):
            raise ValueError(f"similarity must be 'dot' or 'cosine', got {similarity!r}")
        if value_dtype not in _VALUE_DTYPES.values():
            raise ValueError(
                f"value_dtype must be torch.float32 or torch.float16, got {value_dtype}"
            )
        if latent_dtype is None:
            latent_dtype = torch.uint16 if dim <= 2**16 else torch.int32
        if latent_dtype not in _LATENT_DTYPES.values():
            raise ValueError(
                f"latent_dtype must be torch.uint16 or torch.int32, got {latent_dtype}"
            )
        if latent_dtype == torch.uint16 and dim > 2**16:
            raise ValueError(f"latent_dtype=torch.uint16 holds dim <= 65536, got dim={dim}")
        self.similarity: Similarity = similarity
        self.value_dtype = value_dtype
        self.latent_dtype = latent_dtype
        self.pruning = pruning
        self._size = 0
        # Entries added since the last build: (latents, docs, values) of each add() call.
        self._pending: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        # Posting lists: latent j owns positions offsets[j]:offsets[j+1], in document order (with
        # pruning: by value descending, then document).
        self._offsets = torch.zeros(dim + 1, dtype=torch.int64)
        self._doc_ids = torch.zeros(0, dtype=torch.int32)
        self._values = torch.zeros(0, dtype=value_dtype)
        # With pruning: the forward codes [N, k_max] (latents ascending, padding value 0).
        self._forward_codes: tuple[torch.Tensor, torch.Tensor] | None = None
        self._device_codes: tuple[torch.device, SparseCodes] | None = None
        self._kernel_arrays: tuple[np.ndarray, ...] | None = None
        self._forward_arrays: tuple[np.ndarray, np.ndarray, int] | None = None
        self._scratch = threading.local()

    def __len__(self) -> int:
        return self._size

    # -- building ------------------------------------------------------------------------------

    def add(self, codes: SparseCodes) -> torch.Tensor:
        """Append codes ``[N, k]``; returns their ids (consecutive, starting at ``len(self)``).

        Raises ``ValueError`` for a wrong ``dim``, non-finite values, values outside float16's
        range with ``value_dtype=torch.float16``, or more than 2**31 - 1 codes in all.
        """
        codes = _check_codes("codes", codes, self.dim)
        codes = codes.to("cpu", dtype=torch.float32)
        if self.similarity == "cosine":
            codes = _l2_normalised(codes)
        return self._add_stored(codes)

    def _add_stored(self, codes: SparseCodes) -> torch.Tensor:
        if self._size + len(codes) > MAX_DOCUMENTS:
            raise ValueError(
                f"the index holds at most {MAX_DOCUMENTS} codes (int32 ids); it has {self._size} "
                f"and got {len(codes)} more"
            )
        if self.value_dtype == torch.float16 and codes.values.numel():
            largest = float(codes.values.abs().max())
            if largest > torch.finfo(torch.float16).max:
                raise ValueError(
                    f"codes values must fit float16 (|v| <= 65504) with value_dtype=torch.float16, "
                    f"got |v| = {largest}"
                )
        ids = torch.arange(self._size, self._size + len(codes))
        docs, latents, values = _merged_rows(codes, row_offset=self._size)
        self._pending.append((latents, docs, values))
        self._size += len(codes)
        return ids

    def _build(self) -> None:
        if not self._pending:
            return
        latents = [torch.arange(self.dim).repeat_interleave(self._lengths())]
        docs, values = [self._doc_ids.long()], [self._values.float()]
        for pending_latents, pending_docs, pending_values in self._pending:
            latents.append(pending_latents)
            docs.append(pending_docs)
            values.append(pending_values)
        self._pending = []
        self._device_codes = None
        self._kernel_arrays = None
        self._forward_codes = None
        self._forward_arrays = None
        latent, doc = torch.cat(latents), torch.cat(docs)
        # (latent, doc) pairs are unique: each add() merged its own duplicates and ids are new.
        order = torch.argsort(latent * self._size + doc)
        stored = torch.cat(values)[order].to(self.value_dtype)
        # A value that rounds to 0 in float16 is no posting.
        keep = stored != 0
        self._doc_ids = doc[order][keep].to(torch.int32)
        self._values = stored[keep]
        latent = latent[order][keep]
        counts = torch.bincount(latent, minlength=self.dim)
        self._offsets = torch.zeros(self.dim + 1, dtype=torch.int64)
        self._offsets[1:] = torch.cumsum(counts, 0)
        if self.pruning:
            # Stable sorts: value descending, then latent, keep the id order among equal values.
            by_value = torch.sort(self._values.float(), descending=True, stable=True).indices
            impact = by_value[torch.sort(latent[by_value], stable=True).indices]
            self._doc_ids = self._doc_ids[impact]
            self._values = self._values[impact]
            self._forward_codes = self._forward_of_lists(self.latent_dtype, self.value_dtype)

    def _lengths(self) -> torch.Tensor:
        return self._offsets[1:] - self._offsets[:-1]

    def posting_lengths(self) -> torch.Tensor:
        """``[dim]`` number of stored codes in which each latent is non-zero."""
        self._build()
        return self._lengths()

    def _forward(self, latent_dtype: torch.dtype, value_dtype: torch.dtype):
        """The stored codes as fixed-width rows ``[N, k_max]`` (padding: latent 0, value 0)."""
        self._build()
        if self._forward_codes is not None:
            return self._forward_codes[0].to(latent_dtype), self._forward_codes[1].to(value_dtype)
        return self._forward_of_lists(latent_dtype, value_dtype)

    def _forward_of_lists(self, latent_dtype: torch.dtype, value_dtype: torch.dtype):
        docs = self._doc_ids.long()
        latents = torch.arange(self.dim).repeat_interleave(self.posting_lengths())
        # Postings are latent-major, so a stable sort by document keeps each row's latents ascending.
        docs, order = torch.sort(docs, stable=True)
        counts = torch.bincount(docs, minlength=self._size)
        width = max(1, int(counts.max())) if self._size else 1
        column = torch.arange(len(docs)) - (torch.cumsum(counts, 0) - counts)[docs]
        indices = torch.zeros(self._size, width, dtype=torch.int64)
        values = torch.zeros(self._size, width, dtype=value_dtype)
        indices[docs, column] = latents[order]
        values[docs, column] = self._values[order].to(value_dtype)
        return indices.to(latent_dtype), values

    def codes(self) -> SparseCodes:
        """Every stored code in id order, as searched: one entry per non-zero latent (duplicates
        summed, zeros dropped, L2-normalised for ``"cosine"``, rounded to ``value_dtype``), latents
        ascending, rows padded with (latent 0, value 0) entries to the widest row."""
        if self._size == 0:
            raise ValueError("the index is empty; add codes first")
        indices, values = self._forward(torch.int64, torch.float32)
        return SparseCodes(indices, values, self.dim)

    def memory_bytes(self) -> int:
        """Bytes held by the posting lists (int32 id + ``value_dtype`` value each), the
        ``dim + 1`` int64 offsets and, with ``pruning``, the forward codes (``[N, k_max]``
        ``latent_dtype`` latents + ``value_dtype`` values)."""
        self._build()
        held = [self._doc_ids, self._values, self._offsets]
        if self._forward_codes is not None:
            held += self._forward_codes
        return sum(t.numel() * t.element_size() for t in held)

    def bytes_per_vector(self) -> float:
        """:meth:`memory_bytes` per stored code."""
        if self._size == 0:
            raise ValueError("the index is empty; add codes first")
        return self.memory_bytes() / self._size

    # -- searching -----------------------------------------------------------------------------

    def search(
        self,
        queries: SparseCodes,
        top_k: int = 10,
        *,
        method: SearchMethod = "inverted",
        kernel: Kernel = "auto",
    ) -> SearchResult:
        """The ``top_k`` best stored codes for each query: ``(scores, ids)``, each ``[Q, top_k]``.

        Ranked by score descending, then id ascending. ``kernel`` picks the inverted path's
        implementation (``"auto"``: numba when installed, else torch; on a ``pruning`` index
        numba runs the threshold algorithm, torch the exhaustive walk). Raises ``ValueError``
        when ``top_k`` is outside ``[1, len(self)]`` or the queries' ``dim`` differs from the
        index's, and ``ImportError`` for ``kernel="numba"`` without numba.
        """
        return self._search(queries, top_k, method, kernel, count=False)[0]

    def postings_walked(
        self, queries: SparseCodes, top_k: int = 10, *, kernel: Kernel = "auto"
    ) -> torch.Tensor:
        """``[Q]`` postings the inverted search reads for each query: every posting of its
        latents, or with ``pruning`` (numba kernel) those the threshold algorithm reads before it
        stops (each also reads the document's forward row). Validates like :meth:`search`."""
        return self._search(queries, top_k, "inverted", kernel, count=True)[1]

    def _search(
        self, queries: SparseCodes, top_k: int, method: SearchMethod, kernel: Kernel, count: bool
    ) -> tuple[SearchResult, torch.Tensor | None]:
        """The search and, when ``count``, the postings each query read (``None`` otherwise:
        counting costs a sort of the query entries, as much as a small search)."""
        queries = _check_codes("queries", queries, self.dim)
        self._build()
        if self._size == 0:
            raise ValueError("cannot search an empty index; add codes first")
        top_k = check_int_in_range("top_k", top_k, 1, self._size)
        if method not in ("inverted", "scan"):
            raise ValueError(f"method must be 'inverted' or 'scan', got {method!r}")
        if kernel not in ("auto", "numba", "torch"):
            raise ValueError(f"kernel must be 'auto', 'numba' or 'torch', got {kernel!r}")
        if kernel == "numba" and not numba_available():
            raise ImportError("kernel='numba' needs numba: pip install 'csrv2[fast]'")
        if method == "scan":
            return self._search_scan(queries, top_k), None
        if queries.device.type != "cpu" or queries.values.dtype != torch.float32:
            queries = queries.to("cpu", dtype=torch.float32)
        if self.similarity == "cosine":
            queries = _l2_normalised(queries)
        if len(queries) == 0:
            empty = torch.zeros(0, top_k)
            return SearchResult(empty, empty.long()), torch.zeros(0, dtype=torch.int64)
        if kernel == "torch" or (kernel == "auto" and not numba_available()):
            rows, latents, values = _merged_rows(queries)
            q_ptr = torch.zeros(len(queries) + 1, dtype=torch.int64)
            q_ptr[1:] = torch.cumsum(torch.bincount(rows, minlength=len(queries)), 0)
            scores, ids = self._search_torch(q_ptr, latents, values.double(), top_k)
            return SearchResult(scores.float(), ids), self._all_postings(queries) if count else None
        if self.pruning:
            return self._search_pruned(queries, top_k)
        return self._search_numba(queries, top_k), self._all_postings(queries) if count else None

    def _all_postings(self, queries: SparseCodes) -> torch.Tensor:
        rows, latents, _ = _merged_rows(queries)
        return torch.zeros(len(queries), dtype=torch.int64).index_add_(
            0, rows, self._lengths()[latents]
        )

    def _search_pruned(self, queries: SparseCodes, top_k: int) -> tuple[SearchResult, torch.Tensor]:
        arrays = self._numba_arrays()
        if self._forward_arrays is None:
            latents, values = self._forward_codes
            values = _kernel_values(values)
            self._forward_arrays = (latents.numpy().ravel(), values.ravel(), latents.shape[1])
        out_scores = np.empty((len(queries), top_k), dtype=np.float32)
        out_ids = np.empty((len(queries), top_k), dtype=np.int64)
        walked = np.empty(len(queries), dtype=np.int64)
        _numba_module().search_pruned(
            *arrays,
            *self._forward_arrays,
            queries.indices.contiguous().numpy(),
            queries.values.contiguous().numpy(),
            top_k,
            out_scores,
            out_ids,
            walked,
        )
        scores, ids = torch.from_numpy(out_scores), torch.from_numpy(out_ids)
        # numpy's test: torch's costs more than the kernel on a single query.
        if (walked < 0).any():
            fallback = torch.from_numpy(np.flatnonzero(walked < 0))
            rest = SparseCodes(queries.indices[fallback], queries.values[fallback], self.dim)
            exhaustive = self._search_numba(rest, top_k)
            scores[fallback], ids[fallback] = exhaustive.scores, exhaustive.ids
            walked[fallback.numpy()] = self._all_postings(rest).numpy()
        return SearchResult(scores, ids), torch.from_numpy(walked)

    def _numba_arrays(self) -> tuple[np.ndarray, ...]:
        if self._kernel_arrays is None:
            # numpy views made once per build: at batch 1 they cost more than the kernel.
            table = _float16_table() if self.value_dtype == torch.float16 else _NO_TABLE
            stored = _kernel_values(self._values)
            self._kernel_arrays = (self._offsets.numpy(), self._doc_ids.numpy(), stored, table)
        return self._kernel_arrays

    def _search_numba(self, queries: SparseCodes, top_k: int) -> SearchResult:
        scratch = self._scratch
        if getattr(scratch, "size", None) != self._size:
            # All NaN between calls: the kernel resets what it touched.
            scratch.acc = np.full(self._size, np.nan)
            scratch.touched = np.empty(self._size, dtype=np.int32)
            scratch.size = self._size
        out_scores = np.empty((len(queries), top_k), dtype=np.float32)
        out_ids = np.empty((len(queries), top_k), dtype=np.int64)
        _numba_module().search_inverted(
            *self._numba_arrays(),
            queries.indices.contiguous().numpy(),
            queries.values.contiguous().numpy(),
            top_k,
            scratch.acc,
            scratch.touched,
            out_scores,
            out_ids,
        )
        return SearchResult(torch.from_numpy(out_scores), torch.from_numpy(out_ids))

    def _search_torch(
        self, q_ptr: torch.Tensor, latents: torch.Tensor, values: torch.Tensor, top_k: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        parts = []
        entries_per_query = q_ptr.diff()
        for start in range(0, len(q_ptr) - 1, _QUERY_BLOCK):
            stop = min(start + _QUERY_BLOCK, len(q_ptr) - 1)
            a, b = int(q_ptr[start]), int(q_ptr[stop])
            rows = torch.arange(stop - start).repeat_interleave(entries_per_query[start:stop])
            parts.append(self._torch_block(rows, latents[a:b], values[a:b], stop - start, top_k))
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    def _torch_block(
        self,
        query_rows: torch.Tensor,
        query_latents: torch.Tensor,
        query_values: torch.Tensor,
        n_queries: int,
        top_k: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        starts = self._offsets[query_latents]
        lengths = self._offsets[query_latents + 1] - starts
        # Expand each query entry into its posting list: position = start + offset.
        total = int(lengths.sum())
        entry = torch.arange(len(lengths)).repeat_interleave(lengths, output_size=total)
        first = torch.cumsum(lengths, 0) - lengths
        positions = starts[entry] + torch.arange(total) - first[entry]
        docs = self._doc_ids[positions].long()
        contributions = query_values[entry] * self._values[positions].double()
        rows = query_rows[entry]
        # One score per (query, candidate doc), candidates sorted by doc within each query; the
        # stable sort keeps a candidate's contributions in query-entry (ascending latent) order.
        key, order = torch.sort(rows * self._size + docs, stable=True)
        unique_key, inverse = torch.unique_consecutive(key, return_inverse=True)
        scores = torch.zeros(len(unique_key), dtype=torch.float64).index_add_(
            0, inverse, contributions[order]
        )
        cand_rows = unique_key // self._size
        cand_docs = unique_key % self._size

        out_scores = torch.empty(n_queries, top_k, dtype=torch.float64)
        out_ids = torch.empty(n_queries, top_k, dtype=torch.int64)
        # A document outside the candidates scores exactly 0, so the candidates alone decide the
        # ranking when a query has at least top_k candidates scoring above 0.
        positive_per_row = torch.bincount(cand_rows[scores > 0], minlength=n_queries)
        fast = positive_per_row >= top_k
        if bool(fast.any()):
            per_row = torch.bincount(cand_rows, minlength=n_queries)
            width = int(per_row.max())
            offsets = (
                torch.arange(len(unique_key)) - (torch.cumsum(per_row, 0) - per_row)[cand_rows]
            )
            table = torch.full((n_queries, width), float("-inf"), dtype=torch.float64)
            doc_table = torch.zeros(n_queries, width, dtype=torch.int64)
            table[cand_rows, offsets] = scores
            doc_table[cand_rows, offsets] = cand_docs
            # Columns are in doc order, so topk's lower-position tie rule is lower-doc-id.
            top = topk_codes(table[fast], top_k)
            out_scores[fast] = top.values
            out_ids[fast] = doc_table[fast].gather(1, top.indices)
        for row in (~fast).nonzero().flatten().tolist():
            in_row = cand_rows == row
            out_scores[row], out_ids[row] = self._rank_with_zeros(
                cand_docs[in_row], scores[in_row], top_k
            )
        return out_scores, out_ids

    def _rank_with_zeros(
        self, docs: torch.Tensor, scores: torch.Tensor, top_k: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Top ``top_k`` of all documents when only ``docs`` (ascending) have scores; every other
        document scores exactly 0."""
        nonzero = docs[scores != 0]
        # The smallest ids that score 0: at most top_k of them sit below top_k + len(nonzero).
        span = torch.arange(min(self._size, top_k + len(nonzero)))
        zeros = span[~torch.isin(span, nonzero)][:top_k]
        merged_docs = torch.cat([docs[scores != 0], zeros])
        merged_scores = torch.cat(
            [scores[scores != 0], torch.zeros(len(zeros), dtype=scores.dtype)]
        )
        # Lexicographic (score descending, id ascending): sort by id, then stably by score.
        by_id = torch.argsort(merged_docs)
        merged_docs, merged_scores = merged_docs[by_id], merged_scores[by_id]
        by_score = torch.sort(merged_scores, descending=True, stable=True).indices[:top_k]
        return merged_scores[by_score], merged_docs[by_score]

    def _search_scan(self, queries: SparseCodes, top_k: int) -> SearchResult:
        device = queries.device
        if self._device_codes is not None and self._device_codes[0] == device:
            stored = self._device_codes[1]
        else:
            stored = self.codes().to(device)
            if device.type != "cpu":
                # Kept on the accelerator: re-sending N codes per search would dominate the scan.
                self._device_codes = (device, stored)
        queries = queries.to(device, dtype=torch.float32)
        if self.similarity == "cosine":
            queries = _l2_normalised(queries)
        if len(queries) == 0:
            empty = torch.zeros(0, top_k)
            return SearchResult(empty, empty.long())
        parts = [
            self._scan_block(queries[start : start + _QUERY_BLOCK], stored, top_k)
            for start in range(0, len(queries), _QUERY_BLOCK)
        ]
        return SearchResult(torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]))

    def _scan_block(
        self, queries: SparseCodes, stored: SparseCodes, top_k: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        best_scores, best_ids = [], []
        chunk = _SCAN_CHUNK
        if stored.indices.device.type != "cpu":
            chunk = max(_SCAN_CHUNK, _SCAN_SCORES_ON_ACCELERATOR // max(1, len(queries)))
        with torch.no_grad():
            for start in range(0, self._size, chunk):
                scores = queries.dot(stored[start : start + chunk])
                top = topk_codes(scores, min(top_k, scores.shape[1]))
                # Re-sorted by id so that, merged in chunk order, position order is id order.
                ids, order = torch.sort(top.indices + start, dim=1)
                best_ids.append(ids)
                best_scores.append(top.values.gather(1, order))
            merged_ids = torch.cat(best_ids, dim=1)
            merged = topk_codes(torch.cat(best_scores, dim=1), top_k)
        return merged.values.cpu(), merged_ids.gather(1, merged.indices).cpu()

    # -- persistence ---------------------------------------------------------------------------

    def save(self, directory: str | os.PathLike) -> Path:
        """Write the stored codes in their compact form (``latent_dtype`` ids and ``value_dtype``
        values, ``[N, k_max]``; safetensors + JSON manifest, atomically). The posting lists (and
        a pruning index's impact order) are rebuilt from them by :meth:`load`."""
        if self._size == 0:
            raise ValueError("the index is empty; add codes first")
        indices, values = self._forward(self.latent_dtype, self.value_dtype)
        return save_artifact(
            directory,
            {"indices": indices, "values": values},
            {
                "dim": self.dim,
                "similarity": self.similarity,
                "size": self._size,
                "value_dtype": _dtype_name(self.value_dtype),
                "latent_dtype": _dtype_name(self.latent_dtype),
                "pruning": self.pruning,
                # The stored codes of a cosine index are already normalised.
                "normalised": True,
            },
            kind=INDEX_KIND,
        )

    @classmethod
    def load(cls, directory: str | os.PathLike, *, pruning: bool | None = None) -> SparseIndex:
        """Load an index written by :meth:`save` (also the int64/float32 form of csrv2 0.1).

        ``pruning`` overrides the saved index's choice (``None``: as saved; indexes saved before
        it existed had none)."""
        tensors, config = load_artifact(directory, kind=INDEX_KIND)
        if {"indices", "values"} - tensors.keys():
            raise ArtifactError(f"index {str(directory)!r} lacks 'indices' or 'values'")
        try:
            value_dtype = _VALUE_DTYPES[config.get("value_dtype", "float32")]
            latent_dtype = (
                _LATENT_DTYPES[config["latent_dtype"]] if "latent_dtype" in config else None
            )
        except KeyError as err:
            raise ArtifactError(f"index {str(directory)!r} has an unknown dtype {err}") from None
        saved_pruning = config.get("pruning", False)
        if not isinstance(saved_pruning, bool):
            raise ArtifactError(f"index {str(directory)!r} has a non-bool 'pruning' setting")
        index = cls(
            int(config["dim"]),
            config["similarity"],
            value_dtype=value_dtype,
            latent_dtype=latent_dtype,
            pruning=saved_pruning if pruning is None else pruning,
        )
        if (
            not tensors["values"].dtype.is_floating_point
            or tensors["indices"].dtype.is_floating_point
        ):
            raise ArtifactError(f"index {str(directory)!r} holds tensors of the wrong dtypes")
        codes = SparseCodes(
            tensors["indices"].to(torch.int64), tensors["values"].to(torch.float32), index.dim
        )
        if len(codes) != int(config["size"]):
            raise ArtifactError(
                f"index {str(directory)!r} declares {config['size']} codes but holds {len(codes)}"
            )
        if config.get("normalised", False):
            index._add_stored(codes)
        else:
            index.add(codes)
        return index
