"""Deterministic top-k selection and k-sparse codes with sparse-sparse scoring.

Top-k selection
    :func:`topk_mask` marks the ``k`` largest entries along a dimension, :func:`topk_codes` keeps
    the ``k`` largest entries of each row of ``x[..., D]`` as a :class:`SparseCodes` (indices
    plus values, never a dense intermediate). Both break ties the same way on every device: **the
    lower index wins**, and codes list their entries by value descending, then index ascending.
    ``torch.topk`` promises neither (its tie order differs between CPU, CUDA and versions), and
    at k=2..8 over thousands of latents ties decide which latents a code keeps, which changes
    retrieval scores.

    How: ``torch.topk(x, k + 1)`` gives the true top values as a multiset. The top-k *set* is
    ambiguous exactly when the k-th and (k+1)-th largest values ``t`` are equal; only those rows
    are redone: the entries above ``t`` are already known, and the lowest-index entries equal to
    ``t`` come from a second ``torch.topk`` on an integer key. For real-valued data that almost
    never happens; for inputs with fewer than k non-zeros (e.g. after a ReLU) it happens on every
    row and costs about three more passes over the row. The k kept entries are then put in
    canonical order by two k-wide sorts (index ascending, then a stable sort on value
    descending). A full stable sort of each row would be O(D log D) and measured ~20-50x slower
    than ``torch.topk`` for D=4096..16384 on CPU.

    NaN has no place in an order, so NaN inputs are rejected (``ValueError``); ±inf are ordinary
    values. ``-0.0`` and ``+0.0`` compare equal and are treated as a tie.

Sparse codes and scoring
    :meth:`SparseCodes.dot` scores queries ``[Q, k1]`` against codes ``[N, k2]`` of the same
    width ``D``: ``scores[q, n] = <dense(q), dense(n)>``. Three paths, picked by ``impl`` (see
    :mod:`kernelkit.backend`):

    ``"reference"``
        Densify both sides and matmul: the specification. Memory ``(Q + N) * D``.
    ``"torch"``
        Densify only the side with fewer rows, transposed to a ``[D, T]`` table, and let
        ``torch.nn.functional.embedding_bag`` (per-sample weights, ``mode="sum"``) compute, for
        every row of the other side, ``sum_j w[r, j] * table[idx[r, j]]``: one fused
        gather-multiply-add of ``k`` contiguous table rows per code. Work ``O(N * k2 * Q)``
        instead of ``O(N * D * Q)``; both sides are processed in chunks so temporaries stay a
        few MiB whatever ``Q``, ``N``, ``D`` are. Differentiable with respect to both sides'
        values. The result is row-major like the other paths' results; with the queries as the
        table that takes a transposed copy of each ``[rows, Q]`` block, which at k=2 costs more
        than the gathers themselves (still ~100x less than the dense matmul on CPU).
    ``"triton"``
        A Triton kernel (:mod:`kernelkit._triton_topk`): one program per (query block, code
        block) compares every query entry with every code entry and sums the products where the
        indices match. Never touches a dense vector; forward only (no autograd).

    Duplicate indices inside one row are allowed and mean *summation*: :meth:`SparseCodes.to_dense`
    scatter-adds, and every dot path sums over all matching (query entry, code entry) pairs, which
    is the same bilinear form. Codes from :func:`topk_codes` never contain duplicates.

    Values are expected to be finite. With ±inf values the dense reference produces NaN through
    ``inf * 0`` at non-matching positions while the sparse paths only multiply matching entries,
    so the paths can disagree there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from kernelkit.backend import resolve_impl
from kernelkit.validation import (
    check_floating,
    check_int_in_range,
    check_same_shape,
    check_tensor,
)

__all__ = ["SparseCodes", "topk_codes", "topk_mask"]

# Element budgets for the torch dot path's temporaries: the dense [D, T] table (16 MiB at fp32)
# and each [rows, T] embedding_bag result, kept about L2-sized (512 KiB at fp32) because the
# transposed copy into the [Q, N] output dominates at small k and is cache-bound: one
# whole-matrix transpose measured 2-4x slower for Q=32, N=100k on CPU.
_TABLE_ELEMS = 1 << 22
_OUT_ELEMS = 1 << 17


# ---------------------------------------------------------------------------------------------
# Validation helpers
# ---------------------------------------------------------------------------------------------


def _check_no_nan(name: str, x: torch.Tensor) -> None:
    """Raise ``ValueError`` if ``x`` holds a NaN."""
    if x.numel() == 0:
        return
    with torch.no_grad():
        # Any NaN makes the sum NaN, so one cheap reduction clears the common case; the exact
        # elementwise scan (several times slower) only runs to confirm and locate the NaN, since
        # +inf and -inf together also sum to NaN.
        if not bool(torch.isnan(x.sum())):
            return
        nan = torch.isnan(x)
        if bool(nan.any()):
            where = tuple(nan.nonzero()[0].tolist())
            raise ValueError(
                f"{name} must not contain NaN (NaN has no order, so its top-k is undefined); "
                f"found NaN at index {where} of shape {tuple(x.shape)}"
            )


def _check_k(k: object, width: int, name: str, shape: torch.Size) -> int:
    if width == 0 and not isinstance(k, bool) and isinstance(k, int):
        raise ValueError(
            f"k must be >= 1 and <= the width of the selected dimension, but that dimension "
            f"has size 0 in {name} of shape {tuple(shape)}; got k={k}"
        )
    return check_int_in_range("k", k, 1, width)


def _normalize_dim(dim: object, x: torch.Tensor, name: str) -> int:
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise TypeError(f"dim must be an int, got {type(dim).__name__} ({dim!r})")
    if x.ndim == 0:
        raise ValueError(f"{name} must have at least 1 dimension, got a 0-d tensor")
    if not -x.ndim <= dim < x.ndim:
        raise ValueError(
            f"dim must be in [{-x.ndim}, {x.ndim - 1}] for {name} of shape {tuple(x.shape)}, "
            f"got {dim}"
        )
    return dim % x.ndim


def _check_topk_input(name: str, x: object) -> torch.Tensor:
    check_tensor(name, x)
    assert isinstance(x, torch.Tensor)
    check_floating(name, x)
    return x


# ---------------------------------------------------------------------------------------------
# Deterministic top-k
# ---------------------------------------------------------------------------------------------


def _stable_topk_indices(x: torch.Tensor, k: int, *, canonical_order: bool) -> torch.Tensor:
    """Indices ``[..., k]`` of the k largest entries of ``x`` along its last dim, ties to lower index.

    With ``canonical_order`` the indices are ordered by value descending, then index ascending;
    otherwise their order is unspecified (enough for a mask).
    """
    width = x.shape[-1]
    batch = x.shape[:-1]
    with torch.no_grad():
        x2 = x.reshape(-1, width)
        if k == width:
            # Every entry is kept; only the order is left to decide.
            if canonical_order:
                idx = torch.sort(x2 + 0.0, dim=-1, descending=True, stable=True).indices
            else:
                idx = torch.arange(width, device=x.device).expand(x2.shape[0], width)
            return idx.reshape(*batch, k)

        vals, idx = torch.topk(x2, k + 1, dim=-1, largest=True, sorted=True)
        # The k-th and (k+1)-th largest values are equal exactly when the top-k *set* depends on
        # tie-breaking, i.e. when torch.topk may have kept a higher index over a tied lower one.
        threshold = vals[:, k - 1]
        ambiguous = threshold == vals[:, k]
        idx = idx[:, :k]
        n_ambiguous = int(ambiguous.sum())
        if n_ambiguous:
            # Gathering rows copies them; when most rows are ambiguous (e.g. inputs with fewer
            # than k non-zeros) redo every row instead: an unambiguous row comes out unchanged.
            rows: torch.Tensor | slice = (
                slice(None) if 2 * n_ambiguous > x2.shape[0] else ambiguous.nonzero().squeeze(1)
            )
            t = threshold[rows].unsqueeze(1)
            # Entries above t are all among topk's values, and since those are sorted descending
            # they fill its first n_above columns; only the tied tail needs redoing.
            n_above = (vals[rows, :k] > t).sum(dim=1, keepdim=True)
            # Pick the lowest-index tied entries with a second topk on an integer key that is
            # distinct for every tied entry (width - position) and 0 elsewhere. At least
            # k + 1 - n_above entries are tied, so the first k - n_above picks are all tied.
            position = torch.arange(width, 0, -1, device=x.device, dtype=torch.int32)
            key = (x2[rows] == t).to(torch.int32).mul_(position)
            first_tied = torch.topk(key, k, dim=1, sorted=True).indices
            col = torch.arange(k, device=x.device)
            tail = first_tied.gather(1, (col - n_above).clamp_min(0))
            idx = idx.clone()
            idx[rows] = torch.where(col < n_above, idx[rows], tail)

        if canonical_order and k > 1:
            idx = torch.sort(idx, dim=-1).values
            # +0.0 turns -0.0 into +0.0 so sort implementations that order by bit pattern
            # still see the tie that == sees.
            key = x2.gather(-1, idx) + 0.0
            order = torch.sort(key, dim=-1, descending=True, stable=True).indices
            idx = idx.gather(-1, order)
        return idx.reshape(*batch, k)


def topk_mask(scores: torch.Tensor, k: int, dim: int = -1) -> torch.Tensor:
    """Boolean mask of the ``k`` largest entries of ``scores`` along ``dim``.

    Exactly ``k`` entries are ``True`` in every slice along ``dim``; among equal values the lower
    index wins. Raises ``TypeError`` for a non-floating ``scores`` or non-int ``k``/``dim`` and
    ``ValueError`` for ``k`` outside ``[1, scores.shape[dim]]``, ``dim`` out of range or NaN.
    """
    scores = _check_topk_input("scores", scores)
    d = _normalize_dim(dim, scores, "scores")
    k = _check_k(k, scores.shape[d], "scores", scores.shape)
    _check_no_nan("scores", scores)
    moved = scores.movedim(d, -1)
    idx = _stable_topk_indices(moved, k, canonical_order=False)
    mask = torch.zeros(scores.shape, dtype=torch.bool, device=scores.device)
    # Scattering through the moved view writes straight into the contiguous result.
    mask.movedim(d, -1).scatter_(-1, idx, True)
    return mask


def topk_codes(x: torch.Tensor, k: int) -> SparseCodes:
    """k-sparse codes of ``x[..., D]``: the ``k`` largest entries of each row along the last dim.

    ``indices`` are ordered by value descending, ties by lower index (which also decides which
    tied entries are kept). ``values`` are gathered from ``x``, so gradients flow back to ``x``
    at the kept positions. Apply e.g. ReLU afterwards with :meth:`SparseCodes.with_values`.
    """
    x = _check_topk_input("x", x)
    if x.ndim == 0:
        raise ValueError("x must have at least 1 dimension ([..., D]), got a 0-d tensor")
    k = _check_k(k, x.shape[-1], "x", x.shape)
    _check_no_nan("x", x)
    idx = _stable_topk_indices(x, k, canonical_order=True)
    return SparseCodes._trusted(idx, x.gather(-1, idx), x.shape[-1])


# ---------------------------------------------------------------------------------------------
# Sparse codes
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False, repr=False)
class SparseCodes:
    """Fixed-k sparse vectors of width ``dim``: ``indices[..., k]`` (int64) and ``values[..., k]``.

    The batch shape is ``indices.shape[:-1]``. Construction checks dtypes, shapes, devices and
    that every index lies in ``[0, dim)``; duplicate indices in a row are allowed and summed
    (see the module docstring). Instances are immutable; ``==`` is identity (tensors have no
    single truth value).
    """

    indices: torch.Tensor
    values: torch.Tensor
    dim: int

    def __post_init__(self) -> None:
        check_tensor("indices", self.indices)
        check_tensor("values", self.values)
        if self.indices.dtype != torch.int64:
            raise TypeError(f"indices must have dtype torch.int64, got {self.indices.dtype}")
        check_floating("values", self.values)
        if self.indices.ndim == 0:
            raise ValueError("indices must have at least 1 dimension ([..., k]), got a 0-d tensor")
        check_same_shape("indices", self.indices, "values", self.values)
        if self.indices.device != self.values.device:
            raise ValueError(
                f"indices and values must be on the same device, got {self.indices.device} "
                f"and {self.values.device}"
            )
        check_int_in_range("dim", self.dim, 1)
        if self.indices.numel():
            lo, hi = torch.aminmax(self.indices)
            if int(lo) < 0 or int(hi) >= self.dim:
                bad_value = int(lo) if int(lo) < 0 else int(hi)
                where = tuple((self.indices == bad_value).nonzero()[0].tolist())
                raise ValueError(
                    f"indices must lie in [0, dim={self.dim}), found {bad_value} at index {where}"
                )

    @classmethod
    def _trusted(cls, indices: torch.Tensor, values: torch.Tensor, dim: int) -> SparseCodes:
        # Skips the checks (and their device syncs) for results derived from checked codes.
        obj = object.__new__(cls)
        object.__setattr__(obj, "indices", indices)
        object.__setattr__(obj, "values", values)
        object.__setattr__(obj, "dim", dim)
        return obj

    # -- shape and metadata ------------------------------------------------------------------

    @property
    def k(self) -> int:
        """Entries per code (the last dimension of ``indices``)."""
        return self.indices.shape[-1]

    @property
    def shape(self) -> torch.Size:
        """Batch shape: ``indices.shape[:-1]``."""
        return self.indices.shape[:-1]

    @property
    def device(self) -> torch.device:
        return self.values.device

    @property
    def dtype(self) -> torch.dtype:
        """dtype of ``values``."""
        return self.values.dtype

    def __len__(self) -> int:
        if self.indices.ndim < 2:
            raise TypeError("len() of a single code (SparseCodes with empty batch shape)")
        return self.indices.shape[0]

    def __repr__(self) -> str:
        return (
            f"SparseCodes(shape={tuple(self.shape)}, k={self.k}, dim={self.dim}, "
            f"dtype={self.dtype}, device={self.device})"
        )

    def nnz(self) -> torch.Tensor:
        """Number of stored entries with a non-zero value, per code (shape ``self.shape``).

        Counts stored entries, so duplicate indices count once each.
        """
        return (self.values != 0).sum(dim=-1)

    # -- building new codes -------------------------------------------------------------------

    def __getitem__(self, key: Any) -> SparseCodes:
        """Index the batch dimensions (ints, slices, tensors, masks, ``...``); ``k`` stays whole."""
        if self.indices.ndim < 2:
            raise IndexError("cannot index a single code (SparseCodes with empty batch shape)")
        full = (*key, slice(None)) if isinstance(key, tuple) else (key, slice(None))
        return SparseCodes._trusted(self.indices[full], self.values[full], self.dim)

    def to(
        self,
        device: torch.device | str | None = None,
        *,
        dtype: torch.dtype | None = None,
        non_blocking: bool = False,
    ) -> SparseCodes:
        """Move to ``device`` and/or cast ``values`` to the floating ``dtype``."""
        if dtype is not None and not dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating-point dtype, got {dtype}")
        indices = self.indices.to(device=device, non_blocking=non_blocking)
        values = self.values.to(device=device, dtype=dtype, non_blocking=non_blocking)
        return SparseCodes._trusted(indices, values, self.dim)

    def with_values(self, values: torch.Tensor) -> SparseCodes:
        """Same indices with new ``values`` (same shape and device), e.g. ``c.values.relu()``."""
        check_floating("values", values)
        check_same_shape("indices", self.indices, "values", values)
        if values.device != self.indices.device:
            raise ValueError(
                f"values must be on the codes' device {self.indices.device}, got {values.device}"
            )
        return SparseCodes._trusted(self.indices, values, self.dim)

    @classmethod
    def cat(cls, codes: Sequence[SparseCodes]) -> SparseCodes:
        """Concatenate codes along the first batch dimension (same ``dim``, ``k``, dtype, device)."""
        codes = list(codes)
        if not codes:
            raise ValueError("codes must be a non-empty sequence of SparseCodes, got an empty one")
        first = codes[0]
        for i, c in enumerate(codes):
            if not isinstance(c, SparseCodes):
                raise TypeError(f"codes[{i}] must be SparseCodes, got {type(c).__name__}")
            if c.indices.ndim < 2:
                raise ValueError(f"codes[{i}] is a single code (empty batch shape); cannot cat")
            if c.dim != first.dim:
                raise ValueError(f"codes[{i}].dim must equal codes[0].dim={first.dim}, got {c.dim}")
            if c.k != first.k:
                raise ValueError(f"codes[{i}].k must equal codes[0].k={first.k}, got {c.k}")
            if c.dtype != first.dtype:
                raise TypeError(
                    f"codes[{i}] must have values dtype {first.dtype} like codes[0], got {c.dtype}"
                )
            if c.device != first.device:
                raise ValueError(
                    f"codes[{i}] must be on {first.device} like codes[0], got {c.device}"
                )
            if c.shape[1:] != first.shape[1:]:
                raise ValueError(
                    f"codes[{i}] must have batch shape (*, {', '.join(map(str, first.shape[1:]))}) "
                    f"like codes[0], got {tuple(c.shape)}"
                )
        return cls._trusted(
            torch.cat([c.indices for c in codes]),
            torch.cat([c.values for c in codes]),
            first.dim,
        )

    # -- dense view and scoring ---------------------------------------------------------------

    def to_dense(self) -> torch.Tensor:
        """Dense ``[..., dim]`` tensor; duplicate indices in a row are summed."""
        out = torch.zeros(*self.shape, self.dim, dtype=self.dtype, device=self.device)
        # Out-of-place so autograd reaches ``values``.
        return out.scatter_add(-1, self.indices, self.values)

    def dot(self, other: SparseCodes, *, impl: str = "auto") -> torch.Tensor:
        """Scores ``[Q, N]``: inner products of queries ``self [Q, k1]`` with codes ``other [N, k2]``.

        ``impl`` is ``"auto"``, ``"reference"``, ``"torch"`` or ``"triton"`` (module docstring).
        ``"triton"`` has no autograd: with gradients needed, ``"auto"`` uses ``"torch"`` and an
        explicit ``"triton"`` raises ``RuntimeError``.
        """
        if not isinstance(other, SparseCodes):
            raise TypeError(f"other must be SparseCodes, got {type(other).__name__}")
        for name, c in (("self", self), ("other", other)):
            if c.indices.ndim != 2:
                raise ValueError(
                    f"dot needs 2-D codes ({name} as [{'Q, k1' if name == 'self' else 'N, k2'}]), "
                    f"got {name}.indices of shape {tuple(c.indices.shape)}"
                )
        if self.dim != other.dim:
            raise ValueError(
                f"self and other must have the same dim, got self.dim={self.dim} and "
                f"other.dim={other.dim}"
            )
        if self.device != other.device:
            raise ValueError(
                f"self and other must be on the same device, got {self.device} and {other.device}"
            )
        if self.dtype != other.dtype:
            raise TypeError(
                f"self and other must have the same values dtype, got {self.dtype} and "
                f"{other.dtype}"
            )
        path = resolve_impl(impl, self.device)
        needs_grad = torch.is_grad_enabled() and (
            self.values.requires_grad or other.values.requires_grad
        )
        if path == "triton" and needs_grad:
            if impl != "auto":
                raise RuntimeError(
                    "impl='triton' has no autograd support but the values require grad; "
                    "use impl='torch' (or 'auto'), or call under torch.no_grad()"
                )
            path = "torch"

        if path == "reference":
            return _dot_reference(self, other)
        if len(self) == 0 or len(other) == 0 or self.k == 0 or other.k == 0:
            return torch.zeros(len(self), len(other), dtype=self.dtype, device=self.device)
        if path == "torch":
            return _dot_torch(self, other)
        from kernelkit._triton_topk import sparse_dot_triton  # lazy: see module docstring

        return sparse_dot_triton(self.indices, self.values, other.indices, other.values)


def _dot_reference(queries: SparseCodes, codes: SparseCodes) -> torch.Tensor:
    return queries.to_dense() @ codes.to_dense().T


def _dot_torch(queries: SparseCodes, codes: SparseCodes) -> torch.Tensor:
    q, n, width = len(queries), len(codes), queries.dim
    out = torch.empty(q, n, dtype=queries.dtype, device=queries.device)
    # Densify the side with fewer rows: its table is smallest and the other side streams past it.
    transpose = q <= n
    table_side, row_side = (queries, codes) if transpose else (codes, queries)
    n_table, n_rows = len(table_side), len(row_side)
    t_chunk = max(1, min(n_table, _TABLE_ELEMS // width))
    r_chunk = max(1, min(n_rows, _OUT_ELEMS // t_chunk))
    for t0 in range(0, n_table, t_chunk):
        t1 = min(n_table, t0 + t_chunk)
        # [D, t]: each index then gathers one contiguous row of t scores.
        table = table_side[t0:t1].to_dense().T.contiguous()
        for r0 in range(0, n_rows, r_chunk):
            r1 = min(n_rows, r0 + r_chunk)
            part = F.embedding_bag(
                row_side.indices[r0:r1],
                table,
                per_sample_weights=row_side.values[r0:r1],
                mode="sum",
            )
            if transpose:
                out[t0:t1, r0:r1] = part.T
            else:
                out[r0:r1, t0:t1] = part
    return out
