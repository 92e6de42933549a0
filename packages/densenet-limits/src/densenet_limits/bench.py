"""Cut-norm estimators side by side with the PyPI ``cutnorm`` package: time ratios, values in ``meta``.

For Gaussian ``n × n`` matrices, n in {16, 256, 1024} (quick) or {16, 256, 1024, 4096} (full):

- our Alon–Naor SDP (:func:`kernelkit.cutnorm.cut_norm_sdp`, no certificate in the timed call)
  against ``cutnorm.compute_cutnorm`` (Wen–Yin manifold optimiser, Gaussian rounding), time
  and values;
- our greedy search against our SDP (time, and the value each finds);
- at n = 16, greedy against exact enumeration, and the accuracy of every estimator (ours and
  ``cutnorm``'s) against the exact value over 20 matrices.

Normalisation. ``cutnorm.compute_cutnorm(A, B)`` works on ``C = (A − B) / n²``, so with
``B = 0`` its ``cutnorm_round`` is our ``CutNormResult.normalized`` (``value / (n m)``), the cut
norm of the step kernel on ``[0, 1]²``. Its ``cutnorm_sdp`` is the manifold optimiser's
objective ``|Σ C̃ ⊙ UᵀV| / 4`` on the augmented matrix, an estimate of ``SDP / 4`` (not a
certified bound); ours is ``sdp_value / (4 n m)``. Both packages augment the matrix the same
way (``‖C̃‖_{∞→1} = 4 ‖C‖_□``). ``cutnorm`` draws from NumPy's global RNG, seeded here.

Timing: our estimators against each other run on one torch thread. ``cutnorm`` runs on NumPy,
whose BLAS thread count cannot be set from here without an extra dependency, so the comparison
with it runs both libraries at their defaults (recorded in ``meta["threads"]``).
"""

from __future__ import annotations

import numpy as np
import torch

from kernelkit.bench import Comparison, compare
from kernelkit.cutnorm import cut_norm_exact, cut_norm_greedy, cut_norm_sdp

__all__ = ["run"]

_ACCURACY_MATRICES = 20
_CERTIFY_LIMIT = 1024  # the certificate is an eigenvalue problem of size 2n + 2


def _pypi_cutnorm():
    try:
        from cutnorm import compute_cutnorm
    except ImportError as err:
        raise ImportError(
            "the benchmark compares with the PyPI `cutnorm` package, which is not installed; "
            "install it with `pip install 'densenet-limits[bench]'`"
        ) from err
    return compute_cutnorm


def _pypi_values(compute_cutnorm, a: torch.Tensor, seed: int) -> tuple[float, float]:
    """``(cutnorm_round, cutnorm_sdp)`` of ``a`` (normalised by n², see module doc)."""
    np.random.seed(seed)
    matrix = a.numpy()
    rounded, sdp, _ = compute_cutnorm(matrix, np.zeros_like(matrix))
    return float(rounded), float(sdp)


def _accuracy_at_16(compute_cutnorm) -> dict:
    """Each estimator's value over the exact cut norm on Gaussian 16 × 16 matrices."""
    generator = torch.Generator().manual_seed(16)
    ratios: dict[str, list[float]] = {
        "greedy": [],
        "sdp_rounded": [],
        "sdp_upper_certified": [],
        "cutnorm_round": [],
        "cutnorm_sdp": [],
    }
    for index in range(_ACCURACY_MATRICES):
        a = torch.randn(16, 16, generator=generator, dtype=torch.float64)
        exact = cut_norm_exact(a).normalized
        greedy = cut_norm_greedy(a, generator=torch.Generator().manual_seed(index))
        sdp = cut_norm_sdp(a, generator=torch.Generator().manual_seed(index))
        rounded, relaxed = _pypi_values(compute_cutnorm, a, index)
        ratios["greedy"].append(greedy.normalized / exact)
        ratios["sdp_rounded"].append(sdp.normalized / exact)
        ratios["sdp_upper_certified"].append(sdp.normalized_interval[1] / exact)
        ratios["cutnorm_round"].append(rounded / exact)
        ratios["cutnorm_sdp"].append(relaxed / exact)
    summary = {"accuracy_matrices": _ACCURACY_MATRICES}
    for name, values in ratios.items():
        summary[f"{name}_over_exact_mean"] = float(np.mean(values))
        summary[f"{name}_over_exact_min"] = float(np.min(values))
        summary[f"{name}_over_exact_max"] = float(np.max(values))
        summary[f"{name}_hits_exact"] = int(sum(abs(v - 1.0) <= 1e-9 for v in values))
    return summary


def run(quick: bool = True, device: str | torch.device | None = None) -> list[Comparison]:
    """The comparisons listed in the module doc; CPU only (both packages run there)."""
    if device is not None and torch.device(device).type != "cpu":
        raise ValueError(f"device must be the CPU (the estimators run there), got {device!r}")
    compute_cutnorm = _pypi_cutnorm()
    sizes = (16, 256, 1024) if quick else (16, 256, 1024, 4096)
    generator = torch.Generator().manual_seed(0)
    results = []
    for n in sizes:
        a = torch.randn(n, n, generator=generator, dtype=torch.float64)
        matrix, zeros = a.numpy(), np.zeros((n, n))
        greedy = cut_norm_greedy(a, generator=torch.Generator().manual_seed(1))
        sdp = cut_norm_sdp(
            a, certify=n <= _CERTIFY_LIMIT, generator=torch.Generator().manual_seed(1)
        )
        pypi_round, pypi_sdp = _pypi_values(compute_cutnorm, a, 1)
        meta = {
            "n": n,
            "greedy_normalized": greedy.normalized,
            "sdp_rounded_normalized": sdp.normalized,
            "sdp_primal_over_4nm": sdp.sdp_value / (4 * n * n),
            "sdp_interval_normalized": list(sdp.normalized_interval),
            "cutnorm_round": pypi_round,
            "cutnorm_sdp": pypi_sdp,
        }
        slow = n > 256
        repeats, warmup = (1, 0) if slow else (3, 1)
        if n == 16:
            meta["exact_normalized"] = cut_norm_exact(a).normalized
            meta.update(_accuracy_at_16(compute_cutnorm))
            results.append(
                compare(
                    lambda a=a: cut_norm_greedy(a),
                    lambda a=a: cut_norm_exact(a),
                    name=f"cut norm n={n}: greedy vs exact enumeration",
                    label_a="greedy (20 restarts)",
                    label_b="exact",
                    repeats=repeats,
                    warmup=warmup,
                    meta=meta,
                    threads=1,
                )
            )
        results.append(
            compare(
                lambda a=a: cut_norm_sdp(a, certify=False),
                lambda matrix=matrix, zeros=zeros: compute_cutnorm(matrix, zeros),
                name=f"cut norm n={n}: our SDP vs PyPI cutnorm SDP (both with rounding)",
                label_a="kernelkit sdp-gaussian",
                label_b="cutnorm.compute_cutnorm",
                repeats=repeats,
                warmup=warmup,
                meta={
                    **meta,
                    "threads": f"library defaults (torch {torch.get_num_threads()}, NumPy BLAS)",
                },
            )
        )
        results.append(
            compare(
                lambda a=a: cut_norm_greedy(a),
                lambda a=a: cut_norm_sdp(a, certify=False),
                name=f"cut norm n={n}: greedy vs our Alon–Naor SDP (no certificate)",
                label_a="greedy (20 restarts)",
                label_b="kernelkit sdp-gaussian",
                repeats=repeats,
                warmup=warmup,
                meta=meta,
                threads=1,
            )
        )
    return results
