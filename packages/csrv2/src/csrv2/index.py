"""An inverted index over sparse-code latents, with exact top-k search.

For every latent the index keeps a posting list: the ids of the stored codes in which it is
non-zero, and their values. A query ``q`` with entries ``(j, v)`` scores document ``n`` as
``sum_j v * value(n, j)``, the inner product of the decoded (dense) codes, touching only the
documents that share a latent with the query: about ``N k^2 sum_j p_j^2`` pairs for usage
frequencies ``p`` instead of ``N`` dense dot products.

Results are ranked by score descending, ties by the lower document id, exactly as brute-force
scoring of the dense codes followed by a stable sort, including documents that share no latent
with the query (score 0) and all-zero queries. Scores are sums of the same products as the dense
dot product, added in a different order; when those sums are exact (e.g. dyadic values) the two
agree bit for bit, otherwise to rounding.

``method="scan"`` scores every document with :meth:`kernelkit.topk.SparseCodes.dot` (a Triton
kernel on CUDA, a vectorised gather elsewhere) in chunks: the right choice on a GPU, where the
scan is one big parallel pass, and the reference the inverted lists are tested against.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import torch

from kernelkit.io import ArtifactError, load_artifact, save_artifact
from kernelkit.topk import SparseCodes, topk_codes
from kernelkit.validation import check_int_in_range

__all__ = ["INDEX_KIND", "SearchResult", "SparseIndex"]

INDEX_KIND = "csrv2.SparseIndex"
Similarity = Literal["dot", "cosine"]
SearchMethod = Literal["inverted", "scan"]

# Queries scored together by the inverted path, and codes per chunk of the scan path; both bound
# the temporaries to a few tens of MiB.
_QUERY_BLOCK = 256
_SCAN_CHUNK = 1 << 16


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


def _check_codes(name: str, codes: object, dim: int | None) -> SparseCodes:
    if not isinstance(codes, SparseCodes):
        raise TypeError(f"{name} must be kernelkit SparseCodes, got {type(codes).__name__}")
    if codes.indices.ndim != 2:
        raise ValueError(f"{name} must be a batch [N, k], got shape {tuple(codes.indices.shape)}")
    if dim is not None and codes.dim != dim:
        raise ValueError(f"{name} must have dim={dim} (the index's latents), got dim={codes.dim}")
    if codes.values.numel() and not bool(torch.isfinite(codes.values).all()):
        raise ValueError(f"{name} values must be finite")
    return codes


def _l2_normalised(codes: SparseCodes) -> SparseCodes:
    # The norm of the dense code: duplicate indices add up before squaring.
    norms = codes.to_dense().norm(dim=-1, keepdim=True)
    return codes.with_values(torch.where(norms > 0, codes.values / norms.clamp_min(1e-30), 0.0))


class SparseIndex:
    """Inverted index over codes of width ``dim``.

    Args:
        dim: number of latents (the head's ``hidden``).
        similarity: ``"dot"`` (inner product of the codes) or ``"cosine"`` (codes L2-normalised
            when added and searched).
    """

    def __init__(self, dim: int, similarity: Similarity = "dot") -> None:
        self.dim = check_int_in_range("dim", dim, 1)
        if similarity not in ("dot", "cosine"):
            raise ValueError(f"similarity must be 'dot' or 'cosine', got {similarity!r}")
        self.similarity: Similarity = similarity
        self._pending: list[SparseCodes] = []
        self._size = 0
        # Compressed posting lists: latent j owns positions indptr[j]:indptr[j+1].
        self._indptr = torch.zeros(dim + 1, dtype=torch.int64)
        self._doc_ids = torch.zeros(0, dtype=torch.int64)
        self._values = torch.zeros(0, dtype=torch.float32)
        self._codes: SparseCodes | None = None

    def __len__(self) -> int:
        return self._size

    # -- building ------------------------------------------------------------------------------

    def add(self, codes: SparseCodes) -> torch.Tensor:
        """Append codes ``[N, k]``; returns their ids (consecutive, starting at ``len(self)``)."""
        codes = _check_codes("codes", codes, self.dim)
        codes = codes.to("cpu", dtype=torch.float32)
        ids = torch.arange(self._size, self._size + len(codes))
        self._pending.append(codes)
        self._size += len(codes)
        return ids

    def _build(self) -> None:
        if not self._pending:
            return
        stored = [self._codes] if self._codes is not None else []
        all_codes = SparseCodes.cat(stored + self._pending)
        self._pending = []
        self._codes = all_codes
        if self.similarity == "cosine":
            all_codes = _l2_normalised(all_codes)
        n, k = all_codes.indices.shape
        latents = all_codes.indices.reshape(-1)
        docs = torch.arange(n).repeat_interleave(k)
        values = all_codes.values.reshape(-1)
        keep = values != 0
        latents, docs, values = latents[keep], docs[keep], values[keep]
        # Sorting by (latent, doc) groups each posting list and keeps it in doc order; a doc
        # repeating a latent is summed into one posting.
        key = latents * n + docs
        key, order = torch.sort(key)
        unique_key, inverse = torch.unique_consecutive(key, return_inverse=True)
        summed = torch.zeros(len(unique_key), dtype=torch.float32).index_add_(
            0, inverse, values[order]
        )
        nonzero = summed != 0
        unique_key, summed = unique_key[nonzero], summed[nonzero]
        post_latents = unique_key // n
        self._doc_ids = unique_key % n
        self._values = summed
        counts = torch.bincount(post_latents, minlength=self.dim)
        self._indptr = torch.zeros(self.dim + 1, dtype=torch.int64)
        self._indptr[1:] = torch.cumsum(counts, 0)

    def posting_lengths(self) -> torch.Tensor:
        """``[dim]`` number of stored codes in which each latent is non-zero."""
        self._build()
        return self._indptr[1:] - self._indptr[:-1]

    def codes(self) -> SparseCodes:
        """Every stored code, in id order (as added, not normalised)."""
        self._build()
        if self._codes is None:
            raise ValueError("the index is empty; add codes first")
        return self._codes

    def memory_bytes(self) -> int:
        """Bytes held by the posting lists (int64 ids, fp32 values) and their offsets."""
        self._build()
        return (
            self._doc_ids.numel() * self._doc_ids.element_size()
            + self._values.numel() * self._values.element_size()
            + self._indptr.numel() * self._indptr.element_size()
        )

    # -- searching -----------------------------------------------------------------------------

    def search(
        self, queries: SparseCodes, top_k: int = 10, *, method: SearchMethod = "inverted"
    ) -> SearchResult:
        """The ``top_k`` best stored codes for each query: ``(scores, ids)``, each ``[Q, top_k]``.

        Ranked by score descending, then id ascending. Raises ``ValueError`` when ``top_k`` is
        outside ``[1, len(self)]`` or the queries' ``dim`` differs from the index's.
        """
        queries = _check_codes("queries", queries, self.dim)
        self._build()
        if self._size == 0:
            raise ValueError("cannot search an empty index; add codes first")
        top_k = check_int_in_range("top_k", top_k, 1, self._size)
        if method not in ("inverted", "scan"):
            raise ValueError(f"method must be 'inverted' or 'scan', got {method!r}")
        queries = queries.to("cpu", dtype=torch.float32) if method == "inverted" else queries
        if self.similarity == "cosine":
            queries = _l2_normalised(queries)
        if len(queries) == 0:
            empty = torch.zeros(0, top_k)
            return SearchResult(empty, empty.long())
        search_block = self._search_inverted if method == "inverted" else self._search_scan
        parts = [
            search_block(queries[start : start + _QUERY_BLOCK], top_k)
            for start in range(0, len(queries), _QUERY_BLOCK)
        ]
        return SearchResult(torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]))

    def _search_scan(self, queries: SparseCodes, top_k: int) -> tuple[torch.Tensor, torch.Tensor]:
        assert self._codes is not None
        stored = self._codes.to(queries.device, dtype=queries.dtype)
        if self.similarity == "cosine":
            stored = _l2_normalised(stored)
        best_scores, best_ids = [], []
        with torch.no_grad():
            for start in range(0, self._size, _SCAN_CHUNK):
                scores = queries.dot(stored[start : start + _SCAN_CHUNK])
                top = topk_codes(scores, min(top_k, scores.shape[1]))
                # Re-sorted by id so that, merged in chunk order, position order is id order.
                ids, order = torch.sort(top.indices + start, dim=1)
                best_ids.append(ids)
                best_scores.append(top.values.gather(1, order))
            merged_ids = torch.cat(best_ids, dim=1)
            merged = topk_codes(torch.cat(best_scores, dim=1), top_k)
        return merged.values.cpu(), merged_ids.gather(1, merged.indices).cpu()

    def _search_inverted(
        self, queries: SparseCodes, top_k: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        n_queries, k = queries.indices.shape
        query_latents = queries.indices.reshape(-1)
        query_values = queries.values.reshape(-1)
        query_rows = torch.arange(n_queries).repeat_interleave(k)
        starts = self._indptr[query_latents]
        lengths = self._indptr[query_latents + 1] - starts
        # Expand each (query, latent) entry into its posting list: position = start + offset.
        total = int(lengths.sum())
        entry = torch.arange(len(lengths)).repeat_interleave(lengths, output_size=total)
        first = torch.cumsum(lengths, 0) - lengths
        positions = starts[entry] + torch.arange(total) - first[entry]
        docs = self._doc_ids[positions]
        contributions = query_values[entry] * self._values[positions]
        rows = query_rows[entry]
        # One score per (query, candidate doc), candidates sorted by doc within each query.
        key, order = torch.sort(rows * self._size + docs)
        unique_key, inverse = torch.unique_consecutive(key, return_inverse=True)
        scores = torch.zeros(len(unique_key)).index_add_(0, inverse, contributions[order])
        cand_rows = unique_key // self._size
        cand_docs = unique_key % self._size

        out_scores = torch.empty(n_queries, top_k)
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
            table = torch.full((n_queries, width), float("-inf"))
            doc_table = torch.zeros(n_queries, width, dtype=torch.int64)
            table[cand_rows, offsets] = scores
            doc_table[cand_rows, offsets] = cand_docs
            # Columns are in doc order, so topk's lower-position tie rule is lower-doc-id.
            top = topk_codes(table[fast], top_k)
            out_scores[fast] = top.values
            out_ids[fast] = doc_table[fast].gather(1, top.indices)
        for row in (~fast).nonzero().flatten().tolist():
            # Zero-score documents enter this ranking: score all of them.
            in_row = cand_rows == row
            dense = torch.zeros(self._size).index_put_((cand_docs[in_row],), scores[in_row])
            top = topk_codes(dense, top_k)
            out_scores[row] = top.values
            out_ids[row] = top.indices
        return out_scores, out_ids

    # -- persistence ---------------------------------------------------------------------------

    def save(self, directory: str | os.PathLike) -> Path:
        """Write the stored codes (safetensors + JSON manifest, atomically)."""
        stored = self.codes()
        return save_artifact(
            directory,
            {"indices": stored.indices, "values": stored.values},
            {"dim": self.dim, "similarity": self.similarity, "size": self._size},
            kind=INDEX_KIND,
        )

    @classmethod
    def load(cls, directory: str | os.PathLike) -> SparseIndex:
        """Load an index written by :meth:`save` (posting lists are rebuilt on first search)."""
        tensors, config = load_artifact(directory, kind=INDEX_KIND)
        if {"indices", "values"} - tensors.keys():
            raise ArtifactError(f"index {str(directory)!r} lacks 'indices' or 'values'")
        index = cls(int(config["dim"]), config["similarity"])
        codes = SparseCodes(tensors["indices"], tensors["values"], index.dim)
        if len(codes) != int(config["size"]):
            raise ArtifactError(
                f"index {str(directory)!r} declares {config['size']} codes but holds {len(codes)}"
            )
        index.add(codes)
        return index
