"""Cut norm of real matrices and the Frieze–Kannan weak regularity decomposition.

Definitions (for any real ``n × m`` matrix ``A``, not necessarily square or symmetric):

- **cut norm** (unnormalised): ``‖A‖_□ = max_{S ⊆ [n], T ⊆ [m]} |Σ_{i∈S, j∈T} A_ij|``;
- **normalised cut norm**: ``‖A‖_□ / (n m)``, the cut norm of the step kernel
  ``W_A(x, y) = A[⌊x n⌋, ⌊y m⌋]`` on ``[0, 1]²`` (the graphon view of the matrix);
- **∞→1 norm**: ``‖A‖_{∞→1} = max_{x ∈ {±1}^n, y ∈ {±1}^m} xᵀ A y``; always
  ``‖A‖_□ ≤ ‖A‖_{∞→1} ≤ 4 ‖A‖_□``.

Every result carries the unnormalised value (``value``) and the normalised one (``normalized``).

Three estimators, each returning the maximising sets:

- :func:`cut_norm_exact`: enumeration of every subset ``S`` of the smaller side (≤ 20 by default);
  for a fixed ``S`` the best ``T`` is closed form (the columns whose ``S``-sum is positive, or
  negative), so the work is ``2^n`` vectorised matrix–vector products in chunks;
- :func:`cut_norm_greedy`: alternating maximisation (``T = [Aᵀ1_S > 0]``, ``S = [A 1_T > 0]``)
  from random and spectral starts, batched as matrix products; a lower bound;
- :func:`cut_norm_sdp`: the Alon–Naor semidefinite relaxation of the augmented matrix (whose
  ``∞→1`` norm is exactly ``4‖A‖_□``), solved in Burer–Monteiro form by exact block ascent,
  rounded by Gaussian or Krivine hyperplanes and polished greedily. It returns a certified
  interval: the lower end is the value of the returned sets (or ``SDP_primal / (4 K_G)``), the
  upper end is a dual certificate ``SDP_dual / 4`` built from the Burer–Monteiro point.

:func:`frieze_kannan` computes ``k`` rectangles ``Σ_j c_j 1_{S_j × T_j}`` whose residual has cut
norm about ``‖A‖_2 / √k`` (normalised norms); :func:`common_refinement` and :func:`step_matrix`
give the partition form (a step function on the common refinement of the rectangles);
:func:`weak_regularity_partition` builds a row partition with exactly the requested number of
atoms by energy-increment refinement.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from kernelkit.validation import check_finite, check_int_in_range, check_ndim, check_tensor

__all__ = [
    "KRIVINE_CONSTANT",
    "CutDecomposition",
    "CutNormResult",
    "block_averages",
    "common_refinement",
    "cut_norm",
    "cut_norm_exact",
    "cut_norm_greedy",
    "cut_norm_sdp",
    "frieze_kannan",
    "infinity_to_one_norm_exact",
    "rectangle_sum",
    "step_kernel_value",
    "step_matrix",
    "weak_regularity_partition",
]

#: Krivine's upper bound on the real Grothendieck constant, ``π / (2 ln(1 + √2)) ≈ 1.7822``.
KRIVINE_CONSTANT = math.pi / (2.0 * math.log1p(math.sqrt(2.0)))

_ENUMERATION_LIMIT = 20
# Residual entries below this (relative to the matrix's largest entry) count as round-off.
_ZERO_RESIDUAL = 1e-12
# Rows of the 0/1 subset matrix processed at once by the exact enumeration (bounds memory).
_CHUNK_ELEMENTS = 1 << 22


@dataclass(frozen=True)
class CutNormResult:
    """A cut-norm estimate with the sets that attain ``value``.

    ``value`` is ``|Σ_{S×T} A|`` for the returned ``rows`` (S) and ``cols`` (T): always a true
    lower bound. ``lower``/``upper`` bracket the exact unnormalised cut norm (``upper`` may be
    ``inf`` when no certificate was computed). ``sign`` is +1 when the sum over ``S × T`` is
    positive. ``sdp_value`` is the best SDP primal value found (SDP method only): the
    Burer–Monteiro point's, or the rank-one point of the returned sets (``4 · value``) if larger.
    """

    value: float
    rows: torch.Tensor
    cols: torch.Tensor
    sign: int
    lower: float
    upper: float
    method: str
    shape: tuple[int, int]
    sdp_value: float | None = None
    iterations: int = 0

    @property
    def normalized(self) -> float:
        """``value / (n m)``: the cut norm of the step kernel on ``[0, 1]²``."""
        return self.value / (self.shape[0] * self.shape[1])

    @property
    def normalized_interval(self) -> tuple[float, float]:
        area = self.shape[0] * self.shape[1]
        return self.lower / area, self.upper / area


def _check_matrix(name: str, a: object) -> torch.Tensor:
    check_tensor(name, a)
    check_ndim(name, a, 2)
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty matrix, got shape {tuple(a.shape)}")
    if not (
        a.is_floating_point() or a.dtype in (torch.int32, torch.int64, torch.int16, torch.int8)
    ):
        raise TypeError(f"{name} must have a real (float or int) dtype, got {a.dtype}")
    check_finite(name, a)
    return a.detach().to(torch.float64)


def rectangle_sum(a: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> float:
    """``Σ_{i ∈ rows, j ∈ cols} a_ij`` for boolean (or 0/1) masks ``rows`` and ``cols``."""
    matrix = _check_matrix("a", a)
    rows = check_tensor("rows", rows).to(torch.float64)
    cols = check_tensor("cols", cols).to(torch.float64)
    if rows.shape != (matrix.shape[0],) or cols.shape != (matrix.shape[1],):
        raise ValueError(
            f"rows and cols must have shapes ({matrix.shape[0]},) and ({matrix.shape[1]},), "
            f"got {tuple(rows.shape)} and {tuple(cols.shape)}"
        )
    return float(rows @ matrix @ cols)


def _trivial_upper(matrix: torch.Tensor) -> float:
    # The largest positive and negative rectangles are at most the positive and negative mass.
    return float(max(matrix.clamp(min=0).sum(), (-matrix).clamp(min=0).sum()))


def _subset_chunks(size: int, chunk: int):
    powers = torch.arange(size, dtype=torch.int64)
    for start in range(0, 1 << size, chunk):
        index = torch.arange(start, min(start + chunk, 1 << size), dtype=torch.int64)
        yield (index[:, None] >> powers) & 1


def _check_enumerable(matrix: torch.Tensor, max_side: int) -> None:
    if min(matrix.shape) > max_side:
        raise ValueError(
            f"a must have its smaller side <= {max_side} for exact enumeration "
            f"(2^side subsets), got shape {tuple(matrix.shape)}; use cut_norm_greedy or cut_norm_sdp"
        )


def cut_norm_exact(a: torch.Tensor, *, max_side: int = _ENUMERATION_LIMIT) -> CutNormResult:
    """The exact cut norm by enumerating every subset of the smaller side.

    For a fixed row set ``S`` with column sums ``r = 1_Sᵀ A``, the best positive rectangle takes
    ``T = {j : r_j > 0}`` and the best negative one ``T = {j : r_j < 0}``; so the cut norm is
    ``max_S max(Σ_j r_j⁺, Σ_j r_j⁻)``. Raises ``ValueError`` when the smaller side exceeds
    ``max_side``.
    """
    matrix = _check_matrix("a", a)
    _check_enumerable(matrix, max_side)
    transposed = matrix.shape[0] > matrix.shape[1]
    work = matrix.T if transposed else matrix
    small, large = work.shape
    chunk = max(1, _CHUNK_ELEMENTS // large)
    best, best_bits, best_sign = -1.0, None, 1
    for bits in _subset_chunks(small, chunk):
        sums = bits.to(torch.float64) @ work
        positive = sums.clamp(min=0).sum(1)
        negative = (-sums).clamp(min=0).sum(1)
        for sign, totals in ((1, positive), (-1, negative)):
            value, where = totals.max(0)
            if float(value) > best:
                best, best_bits, best_sign = float(value), bits[where].bool(), sign
    side = best_bits
    other = (side.to(torch.float64) @ work) * best_sign > 0
    rows, cols = (other, side) if transposed else (side, other)
    return CutNormResult(
        value=abs(float(rows.to(torch.float64) @ matrix @ cols.to(torch.float64))),
        rows=rows,
        cols=cols,
        sign=best_sign,
        lower=best,
        upper=best,
        method="exact",
        shape=tuple(matrix.shape),
    )


def infinity_to_one_norm_exact(a: torch.Tensor, *, max_side: int = _ENUMERATION_LIMIT) -> float:
    """``max_{x ∈ {±1}^n, y ∈ {±1}^m} xᵀ A y`` by enumerating the smaller side's sign vectors."""
    matrix = _check_matrix("a", a)
    _check_enumerable(matrix, max_side)
    work = matrix.T if matrix.shape[0] > matrix.shape[1] else matrix
    small, large = work.shape
    best = -math.inf
    for bits in _subset_chunks(small, max(1, _CHUNK_ELEMENTS // large)):
        signs = 2.0 * bits.to(torch.float64) - 1.0
        best = max(best, float((signs @ work).abs().sum(1).max()))
    return best


def _alternate(
    matrix: torch.Tensor, starts: torch.Tensor, signs: torch.Tensor, max_iter: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Alternating maximisation of ``sign · 1_Sᵀ A 1_T`` for a batch of 0/1 row vectors.

    Each half-step is the exact best response, so the objective never decreases.
    """
    rows = starts
    values = torch.full((starts.shape[0],), -math.inf, dtype=torch.float64)
    iteration = 0
    for iteration in range(1, max_iter + 1):  # noqa: B007 (the count is returned)
        cols = ((rows @ matrix) * signs[:, None] > 0).to(torch.float64)
        row_gain = (cols @ matrix.T) * signs[:, None]
        new_rows = (row_gain > 0).to(torch.float64)
        new_values = (row_gain * new_rows).sum(1)
        improved = bool((new_values > values + 1e-12 * (1.0 + values.abs())).any())
        rows, values = new_rows, torch.maximum(values, new_values)
        if not improved:
            break
    cols = ((rows @ matrix) * signs[:, None] > 0).to(torch.float64)
    values = ((rows @ matrix) * cols).sum(1) * signs
    return rows, cols, values, iteration


def _spectral_starts(matrix: torch.Tensor) -> torch.Tensor:
    # Supports of the top singular vector's positive and negative parts are natural rectangles.
    n, m = matrix.shape
    if min(n, m) <= 64:
        left = torch.linalg.svd(matrix, full_matrices=False).U[:, :1]
    else:
        left = torch.svd_lowrank(matrix, q=2, niter=4)[0][:, :1]
    return torch.cat([(left.T > 0), (left.T < 0)]).to(torch.float64)


def _best_of(
    matrix: torch.Tensor, starts: torch.Tensor, max_iter: int
) -> tuple[float, torch.Tensor, torch.Tensor, int, int]:
    count = starts.shape[0]
    starts = torch.cat([starts, starts])
    signs = torch.cat([torch.ones(count), -torch.ones(count)]).to(torch.float64)
    rows, cols, values, iterations = _alternate(matrix, starts, signs, max_iter)
    where = int(values.argmax())
    return (
        float(values[where]),
        rows[where].bool(),
        cols[where].bool(),
        int(signs[where]),
        iterations,
    )


def cut_norm_greedy(
    a: torch.Tensor,
    *,
    restarts: int = 20,
    max_iter: int = 100,
    generator: torch.Generator | None = None,
) -> CutNormResult:
    """A lower bound on the cut norm by alternating maximisation with restarts.

    Starts: ``restarts`` uniformly random row sets plus the positive and negative supports of
    the top left singular vector, each run for both signs. Only matrix products are used (no
    boolean fancy indexing), so one iteration costs ``O(restarts · n m)``. ``upper`` is the
    trivial bound ``max(Σ A⁺, Σ A⁻)``.
    """
    matrix = _check_matrix("a", a)
    check_int_in_range("restarts", restarts, 0)
    check_int_in_range("max_iter", max_iter, 1)
    random_starts = (
        torch.rand(restarts, matrix.shape[0], generator=generator, dtype=torch.float64) < 0.5
    ).to(torch.float64)
    starts = torch.cat([random_starts, _spectral_starts(matrix)])
    value, rows, cols, sign, iterations = _best_of(matrix, starts, max_iter)
    return CutNormResult(
        value=value,
        rows=rows,
        cols=cols,
        sign=sign,
        lower=value,
        upper=max(value, _trivial_upper(matrix)),
        method="greedy",
        shape=tuple(matrix.shape),
        iterations=iterations,
    )


def _augment(matrix: torch.Tensor) -> torch.Tensor:
    """``[[A, -A1], [-1ᵀA, 1ᵀA1]]``: zero row and column sums, same cut norm, ``‖·‖_{∞→1} = 4‖A‖_□``."""
    row_sums = matrix.sum(1, keepdim=True)
    col_sums = matrix.sum(0, keepdim=True)
    top = torch.cat([matrix, -row_sums], 1)
    bottom = torch.cat([-col_sums, matrix.sum().reshape(1, 1)], 1)
    return torch.cat([top, bottom], 0)


def _normalize_rows(x: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
    norms = x.norm(dim=1, keepdim=True)
    # A zero row gives no direction to prefer; keeping the previous unit vector stays feasible.
    return torch.where(norms > 0, x / norms.clamp(min=1e-300), previous)


def _burer_monteiro(
    aug: torch.Tensor, rank: int, max_iter: int, tol: float, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor, float, int]:
    """Maximise ``Σ_ij Ã_ij <u_i, v_j>`` over unit vectors by exact alternating block updates."""
    rows, cols = aug.shape
    u = torch.randn(rows, rank, generator=generator, dtype=torch.float64)
    u = u / u.norm(dim=1, keepdim=True)
    v = torch.randn(cols, rank, generator=generator, dtype=torch.float64)
    v = v / v.norm(dim=1, keepdim=True)
    value, iteration = -math.inf, 0
    for iteration in range(1, max_iter + 1):  # noqa: B007 (the count is returned)
        v = _normalize_rows(aug.T @ u, v)
        field = aug @ v
        u = _normalize_rows(field, u)
        new_value = float((u * field).sum())
        converged = new_value - value <= tol * max(1.0, abs(new_value))
        value = new_value
        if converged:
            break
    return u, v, value, iteration


def _dual_certificate(aug: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> float:
    """An upper bound on the SDP optimum from weak duality.

    The SDP is ``max <C, X>`` with ``C = [[0, Ã/2], [Ãᵀ/2, 0]]``, ``diag X = 1``, ``X ⪰ 0``; any
    ``λ`` with ``Diag(λ) − C ⪰ 0`` bounds it by ``Σ λ``. The multipliers of the Burer–Monteiro
    point are ``λ_i = ½‖(ÃV)_i‖`` (rows) and ``½‖(ÃᵀU)_j‖`` (columns); shifting them all by the
    most negative eigenvalue (minus a rounding margin) makes the matrix PSD.
    """
    rows, cols = aug.shape
    lam = torch.cat([(aug @ v).norm(dim=1), (aug.T @ u).norm(dim=1)]) / 2
    size = rows + cols
    slack = torch.zeros(size, size, dtype=torch.float64)
    slack[:rows, rows:] = -aug / 2
    slack[rows:, :rows] = -aug.T / 2
    slack.diagonal().copy_(lam)
    smallest = float(torch.linalg.eigvalsh(slack)[0])
    margin = 1e-12 * float(slack.norm()) * size
    return float(lam.sum()) + size * max(0.0, -smallest + margin)


def _krivine_vectors(u: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit vectors with ``<u'_i, v'_j> = sin(c <u_i, v_j>)``, ``c = ln(1 + √2)`` (Krivine).

    Built from their Gram matrix (``sinh`` on the diagonal blocks, ``sin`` off them), factored
    by an eigendecomposition; round-off negative eigenvalues of this PSD matrix are set to zero.
    """
    c = math.log1p(math.sqrt(2.0))
    rows = u.shape[0]
    gram = torch.cat(
        [
            torch.cat([torch.sinh(c * u @ u.T), torch.sin(c * u @ v.T)], 1),
            torch.cat([torch.sin(c * v @ u.T), torch.sinh(c * v @ v.T)], 1),
        ],
        0,
    )
    eigenvalues, eigenvectors = torch.linalg.eigh(gram)
    factor = eigenvectors * eigenvalues.clamp(min=0).sqrt()
    return factor[:rows], factor[rows:]


def _rows_from_augmented(x_plus: torch.Tensor, n: int) -> torch.Tensor:
    # A rectangle of Ã that contains the extra row corresponds to the complement in A.
    return ~x_plus[:n] if bool(x_plus[n]) else x_plus[:n]


def cut_norm_sdp(
    a: torch.Tensor,
    *,
    rank: int | None = None,
    max_iter: int = 1000,
    tol: float = 1e-7,
    rounding: str = "gaussian",
    draws: int = 100,
    certify: bool = True,
    generator: torch.Generator | None = None,
) -> CutNormResult:
    """The Alon–Naor SDP estimate of the cut norm, with a certified interval and maximising sets.

    ``rank`` defaults to ``⌈√(2N)⌉`` with ``N = n + m + 2`` (above which Burer–Monteiro has no
    spurious second-order critical points generically). ``rounding`` is ``"gaussian"`` (random
    hyperplanes on the SDP vectors) or ``"krivine"`` (hyperplanes on Krivine's transformed
    vectors, expected value ``≥ SDP / K`` with ``K = KRIVINE_CONSTANT``); the best of ``draws``
    roundings is polished by :func:`cut_norm_greedy`'s alternation. With ``certify`` (an
    eigenvalue problem of size ``N``, cubic cost) ``upper`` is a dual certificate; otherwise
    it is ``inf``. ``lower = max(value, sdp_value / (4 K))``, valid since the SDP optimum is at
    most ``K`` times ``‖Ã‖_{∞→1} = 4 ‖A‖_□``.
    """
    matrix = _check_matrix("a", a)
    if rounding not in ("gaussian", "krivine"):
        raise ValueError(f"rounding must be 'gaussian' or 'krivine', got {rounding!r}")
    check_int_in_range("max_iter", max_iter, 1)
    check_int_in_range("draws", draws, 1)
    if not (isinstance(tol, int | float) and tol >= 0):
        raise ValueError(f"tol must be a number >= 0, got {tol!r}")
    n, m = matrix.shape
    aug = _augment(matrix)
    size = n + m + 2
    rank = math.ceil(math.sqrt(2 * size)) if rank is None else rank
    check_int_in_range("rank", rank, 1)

    u, v, sdp_value, iterations = _burer_monteiro(aug, rank, max_iter, tol, generator)
    ru, rv = _krivine_vectors(u, v) if rounding == "krivine" else (u, v)
    directions = torch.randn(ru.shape[1], draws, generator=generator, dtype=torch.float64)
    x = ru @ directions >= 0
    y = rv @ directions >= 0
    x_signs, y_signs = 2.0 * x.to(torch.float64) - 1.0, 2.0 * y.to(torch.float64) - 1.0
    best = int(((aug @ y_signs) * x_signs).sum(0).argmax())
    start = _rows_from_augmented(x[:, best], n).to(torch.float64)[None]
    value, rows, cols, sign, _ = _best_of(matrix, start, 100)

    # The ±1 vectors of the returned sets are a rank-one feasible point worth 4·value on the
    # augmented matrix; the block ascent converges slowly on some tiny matrices and can stop
    # below it, so the primal value reported is the better of the two feasible points.
    sdp_value = max(sdp_value, 4.0 * value)
    upper = _dual_certificate(aug, u, v) / 4 if certify else math.inf
    return CutNormResult(
        value=value,
        rows=rows,
        cols=cols,
        sign=sign,
        lower=max(value, sdp_value / (4 * KRIVINE_CONSTANT)),
        upper=max(upper, value),
        method=f"sdp-{rounding}",
        shape=(n, m),
        sdp_value=sdp_value,
        iterations=iterations,
    )


def cut_norm(
    a: torch.Tensor,
    *,
    method: str = "auto",
    normalized: bool = False,
    generator: torch.Generator | None = None,
) -> float:
    """The cut norm of ``a`` as a number (unnormalised unless ``normalized``).

    ``method``: ``"exact"``, ``"greedy"`` (a lower bound), ``"sdp"`` (the rounded SDP value, a
    lower bound) or ``"auto"`` (exact when the smaller side is ≤ 20, else greedy).
    """
    matrix = _check_matrix("a", a)
    if method == "auto":
        method = "exact" if min(matrix.shape) <= _ENUMERATION_LIMIT else "greedy"
    if method == "exact":
        result = cut_norm_exact(matrix)
    elif method == "greedy":
        result = cut_norm_greedy(matrix, generator=generator)
    elif method == "sdp":
        result = cut_norm_sdp(matrix, certify=False, generator=generator)
    else:
        raise ValueError(f"method must be 'auto', 'exact', 'greedy' or 'sdp', got {method!r}")
    return result.normalized if normalized else result.value


@dataclass(frozen=True)
class CutDecomposition:
    """``A ≈ Σ_j coefficients[j] · 1_{rows[j]} 1_{cols[j]}ᵀ`` (a Frieze–Kannan cut decomposition).

    ``residual_cut`` holds, for the residual after each prefix ``0..k`` of rectangles, the cut
    norm found by the search (a lower bound unless the search was exact), normalised by ``n m``.
    ``l2_norm`` is ``‖A‖_2 = sqrt(mean A²)``; the weak regularity bound is
    ``min_j residual_cut[j] ≤ l2_norm / √k`` for an exact search.
    """

    coefficients: torch.Tensor
    rows: torch.Tensor
    cols: torch.Tensor
    residual_cut: tuple[float, ...]
    l2_norm: float

    @property
    def rank(self) -> int:
        return int(self.coefficients.shape[0])

    def matrix(self) -> torch.Tensor:
        """The sum of rectangles as a dense ``n × m`` matrix (float64)."""
        rows = self.rows.to(torch.float64)
        return rows.T @ (self.coefficients[:, None] * self.cols.to(torch.float64))


def _refit(matrix: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """Least-squares coefficients of the rectangles (projection of A onto their span)."""
    r, c = rows.to(torch.float64), cols.to(torch.float64)
    gram = (r @ r.T) * (c @ c.T)
    target = ((r @ matrix) * c).sum(1)
    return torch.linalg.lstsq(gram, target[:, None]).solution[:, 0]


def _rectangle_search(method: str, restarts: int, generator: torch.Generator | None):
    """The cut search a weak-regularity step runs on its residual, by name."""
    searches = {
        "exact": lambda r: cut_norm_exact(r),
        "greedy": lambda r: cut_norm_greedy(r, restarts=restarts, generator=generator),
        "sdp": lambda r: cut_norm_sdp(r, certify=False, generator=generator),
    }
    if method not in searches:
        raise ValueError(f"method must be one of {sorted(searches)}, got {method!r}")
    return searches[method]


def _nonempty_rectangle(residual: torch.Tensor, result: CutNormResult) -> CutNormResult:
    """``result``, or the largest entry of ``residual`` as a 1 × 1 rectangle when ``result``'s
    sets are empty (or its value is 0) although ``residual`` is not zero.

    A heuristic search can return an empty set on a tiny residual; a Frieze–Kannan step must
    still make progress, and ``|R_ij|`` is a valid (if weak) rectangle value.
    """
    if result.value > 0.0 and bool(result.rows.any()) and bool(result.cols.any()):
        return result
    flat = int(residual.abs().argmax())
    i, j = divmod(flat, residual.shape[1])
    entry = float(residual[i, j])
    if entry == 0.0:
        return result
    rows = torch.zeros(residual.shape[0], dtype=torch.bool)
    cols = torch.zeros(residual.shape[1], dtype=torch.bool)
    rows[i], cols[j] = True, True
    return CutNormResult(
        value=abs(entry),
        rows=rows,
        cols=cols,
        sign=1 if entry > 0 else -1,
        lower=abs(entry),
        upper=result.upper,
        method=result.method,
        shape=tuple(residual.shape),
    )


def frieze_kannan(
    a: torch.Tensor,
    k: int,
    *,
    method: str = "greedy",
    restarts: int = 20,
    refit: bool = True,
    generator: torch.Generator | None = None,
    tol: float = 1e-12,
) -> CutDecomposition:
    """Weak regularity: ``k`` rectangles whose residual has small cut norm.

    Each step finds a rectangle ``S × T`` with large ``|R(S, T)|`` in the current residual ``R``
    (``method``: ``"exact"``, ``"greedy"`` or ``"sdp"``), adds it, and (with ``refit``) refits all
    coefficients by least squares; otherwise the coefficient is the residual's mean on
    ``S × T``. Either way ``‖R‖_2²`` drops by at least the squared normalised cut value found,
    so the values found satisfy ``Σ_j d_j² ≤ ‖A‖_2²`` and some prefix of at most ``k``
    rectangles leaves a residual of cut norm ``≤ ‖A‖_2 / √k`` when the search is exact (the
    Frieze–Kannan lemma). The decomposition returned is the non-empty prefix with the smallest
    residual cut norm found (``1..k`` rectangles; the empty one only for the zero matrix), so it
    may have fewer than ``k`` rectangles. A search that returns an empty set while the residual
    is non-zero is replaced by the 1 × 1 rectangle of the residual's largest entry, so every step
    removes some mass.

    The steps stop early once the rectangle found in the residual has a cut value of at most
    ``tol`` times the first one (``tol = 1e-12`` by default): what is left is floating-point
    round-off, which no further rectangle can remove, so a large ``k`` never loops on it.
    """
    matrix = _check_matrix("a", a)
    check_int_in_range("k", k, 1)
    if isinstance(tol, bool) or not isinstance(tol, int | float) or not 0 <= tol < 1:
        raise ValueError(f"tol must be a number in [0, 1), got {tol!r}")
    search = _rectangle_search(method, restarts, generator)
    n, m = matrix.shape
    area = n * m
    rows = torch.zeros(0, n, dtype=torch.bool)
    cols = torch.zeros(0, m, dtype=torch.bool)
    coefficients = torch.zeros(0, dtype=torch.float64)
    residual = matrix
    found: list[float] = []
    prefixes: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    for step in range(k + 1):
        result = _nonempty_rectangle(residual, search(residual))
        found.append(result.value / area)
        prefixes.append((coefficients, rows, cols))
        if step == k or result.value == 0.0 or found[-1] <= tol * found[0]:
            break
        rows = torch.cat([rows, result.rows[None]])
        cols = torch.cat([cols, result.cols[None]])
        if refit:
            coefficients = _refit(matrix, rows, cols)
        else:
            mean = rectangle_sum(residual, result.rows, result.cols) / (
                int(result.rows.sum()) * int(result.cols.sum())
            )
            coefficients = torch.cat([coefficients, torch.tensor([mean], dtype=torch.float64)])
        residual = matrix - rows.T.to(torch.float64) @ (
            coefficients[:, None] * cols.to(torch.float64)
        )
    # The empty prefix is a candidate only for the zero matrix: the residual cut norm is not
    # monotone in the prefix (and a heuristic search only bounds it from below), so letting it
    # compete made non-zero kernels collapse to zero rectangles, i.e. one part. Over prefixes
    # 1..k the Frieze–Kannan bound still holds: Σ_{j=1..k} d_j² ≤ ‖R_1‖_2² ≤ ‖A‖_2².
    candidates = range(1, len(found)) if len(found) > 1 else range(1)
    best = min(candidates, key=found.__getitem__)
    coefficients, rows, cols = prefixes[best]
    return CutDecomposition(
        coefficients=coefficients,
        rows=rows,
        cols=cols,
        residual_cut=tuple(found),
        l2_norm=float(matrix.pow(2).mean().sqrt()),
    )


def weak_regularity_partition(
    a: torch.Tensor,
    parts: int,
    *,
    method: str = "greedy",
    restarts: int = 20,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Labels ``0..p−1`` of a partition of the rows of ``a`` into ``p ≤ parts`` atoms.

    The partition form of weak regularity, built by energy increment: start from one atom; the
    residual is ``R = a − a_P`` with ``a_P`` the row-stepped matrix (each row replaced by the
    mean row of its atom; columns are not grouped); find a rectangle ``S × T`` with large
    ``|R(S, T)|`` (``method`` as in :func:`frieze_kannan`) and refine the atoms by ``S``.
    Refining by ``S`` raises ``‖a_P‖_2²`` by at least ``(R(S, T) / (n m))²`` (Cauchy–Schwarz),
    so with an exact search some residual among the first ``k`` had normalised cut norm
    ``≤ ‖a‖_2 / √k``, with at most ``2^k`` atoms. ``R`` has zero sum over every atom, so any
    ``S`` with ``R(S, T) ≠ 0`` splits at least one atom: every step adds an atom. When a step
    would overshoot ``parts``, only the atoms whose split gains most energy
    (``|A∩S| |A∖S| / |A| · ‖mean_{A∩S} − mean_{A∖S}‖²``) are split, so the result has exactly
    ``min(parts, number of distinct rows)`` atoms (rows equal up to ``1e-12`` relative
    round-off count as one). Labels are numbered in order of first appearance.
    """
    matrix = _check_matrix("a", a)
    n = matrix.shape[0]
    check_int_in_range("parts", parts, 1, n)
    search = _rectangle_search(method, restarts, generator)
    tolerance = _ZERO_RESIDUAL * float(matrix.abs().max())
    labels = torch.zeros(n, dtype=torch.int64)
    count = 1
    while count < parts:
        onehot = torch.nn.functional.one_hot(labels, count).to(torch.float64)
        sizes = onehot.sum(0)
        residual = matrix - (onehot.T @ matrix / sizes[:, None])[labels]
        if float(residual.abs().max()) <= tolerance:
            break  # every atom holds equal rows: no further split changes the step matrix
        inside = _nonempty_rectangle(residual, search(residual)).rows.to(torch.float64)
        inside_sizes = onehot.T @ inside
        splittable = (inside_sizes > 0) & (inside_sizes < sizes)
        if not bool(splittable.any()):
            # Round-off can make a search return a union of atoms; the row of the residual's
            # largest entry differs from its atom's mean row, so splitting it off is progress.
            inside = torch.zeros(n, dtype=torch.float64)
            inside[int(residual.abs().argmax()) // residual.shape[1]] = 1.0
            inside_sizes = onehot.T @ inside
            splittable = (inside_sizes > 0) & (inside_sizes < sizes)
        inside_sums = onehot.T @ (inside[:, None] * matrix)
        outside_sums = onehot.T @ matrix - inside_sums
        outside_sizes = sizes - inside_sizes
        gap = (
            inside_sums / inside_sizes.clamp(min=1)[:, None]
            - outside_sums / outside_sizes.clamp(min=1)[:, None]
        )
        gain = inside_sizes * outside_sizes / sizes * gap.pow(2).sum(1)
        gain = torch.where(splittable, gain, torch.full_like(gain, -math.inf))
        chosen = torch.argsort(gain, descending=True)[: min(int(splittable.sum()), parts - count)]
        for atom in chosen.tolist():
            labels = torch.where((labels == atom) & (inside > 0), count, labels)
            count += 1
    return common_refinement(labels[None] == torch.arange(count)[:, None])


def common_refinement(masks: torch.Tensor) -> torch.Tensor:
    """Labels ``0..p-1`` of the atoms of the partition generated by boolean ``masks`` (``k × n``).

    Two indices share a label iff they lie in exactly the same sets; at most ``2^k`` labels.
    Labels are numbered in order of first appearance.
    """
    check_tensor("masks", masks)
    check_ndim("masks", masks, 2)
    if masks.dtype != torch.bool:
        raise TypeError(f"masks must be a bool tensor (k sets over n indices), got {masks.dtype}")
    if masks.shape[0] == 0 or masks.shape[1] == 0:
        return torch.zeros(masks.shape[1], dtype=torch.int64)
    size = masks.shape[1]
    _, inverse = torch.unique(masks.T.to(torch.int8), dim=0, return_inverse=True)
    count = int(inverse.max()) + 1
    first = torch.full((count,), size, dtype=torch.int64)
    first.scatter_reduce_(0, inverse, torch.arange(size), reduce="amin")
    relabel = torch.empty(count, dtype=torch.int64)
    relabel[torch.argsort(first)] = torch.arange(count)
    return relabel[inverse]


def _check_labels(name: str, labels: torch.Tensor, size: int) -> torch.Tensor:
    check_tensor(name, labels)
    if labels.shape != (size,) or labels.dtype not in (torch.int32, torch.int64):
        raise ValueError(
            f"{name} must be an integer tensor of shape ({size},), got {labels.dtype} {tuple(labels.shape)}"
        )
    if size and int(labels.min()) < 0:
        raise ValueError(f"{name} must be non-negative, got minimum {int(labels.min())}")
    return labels.to(torch.int64)


def block_averages(
    a: torch.Tensor, row_labels: torch.Tensor, col_labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean of ``a`` on each block ``{row label p} × {col label q}``.

    Returns ``(means, row_counts, col_counts)``; empty blocks have mean 0.
    """
    matrix = _check_matrix("a", a)
    rl = _check_labels("row_labels", row_labels, matrix.shape[0])
    cl = _check_labels("col_labels", col_labels, matrix.shape[1])
    row_onehot = torch.nn.functional.one_hot(rl).to(torch.float64)
    col_onehot = torch.nn.functional.one_hot(cl).to(torch.float64)
    sums = row_onehot.T @ matrix @ col_onehot
    row_counts, col_counts = row_onehot.sum(0), col_onehot.sum(0)
    counts = row_counts[:, None] * col_counts[None]
    means = torch.where(counts > 0, sums / counts.clamp(min=1), torch.zeros_like(sums))
    return means, row_counts, col_counts


def step_matrix(
    a: torch.Tensor, row_labels: torch.Tensor, col_labels: torch.Tensor
) -> torch.Tensor:
    """``a`` averaged on the blocks of a partition (the step kernel ``A_P``), as an ``n × m`` matrix.

    Stepping is a contraction in cut norm up to a factor 2: for any step matrix ``B`` on the same
    partition, ``‖A − A_P‖_□ ≤ 2 ‖A − B‖_□``.
    """
    means, _, _ = block_averages(a, row_labels, col_labels)
    return means[row_labels.to(torch.int64)][:, col_labels.to(torch.int64)]


def step_kernel_value(a: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The graphon view ``W_A(x, y) = A[⌊x n⌋, ⌊y m⌋]`` at points ``x, y ∈ [0, 1]`` (same shape)."""
    matrix = _check_matrix("a", a)
    for name, points in (("x", x), ("y", y)):
        check_tensor(name, points)
        if points.numel() and (float(points.min()) < 0 or float(points.max()) > 1):
            raise ValueError(
                f"{name} must lie in [0, 1], got range [{float(points.min())}, {float(points.max())}]"
            )
    n, m = matrix.shape
    i = (x * n).floor().long().clamp(max=n - 1)  # x = 1 belongs to the last interval
    j = (y * m).floor().long().clamp(max=m - 1)
    return matrix[i, j]
