"""Cut-norm estimators side by side: time ratios, with their values in ``meta``.

The PyPI ``cutnorm`` package (the usual baseline) is not installed in this workspace, so the
comparisons are between our estimators: greedy versus the SDP (time, and the value each finds),
and greedy versus exact enumeration where the latter is feasible (n = 16).
"""

from __future__ import annotations

import torch

from kernelkit.bench import Comparison, compare
from kernelkit.cutnorm import cut_norm_exact, cut_norm_greedy, cut_norm_sdp

__all__ = ["run"]


def run(quick: bool = True, device: str | torch.device | None = None) -> list[Comparison]:
    """Gaussian ``n × n`` matrices, n in {16, 256, 1024} (quick) or up to 4096 (full); CPU only."""
    if device is not None and torch.device(device).type != "cpu":
        raise ValueError(f"device must be the CPU (the estimators run there), got {device!r}")
    sizes = (16, 256, 1024) if quick else (16, 256, 1024, 4096)
    generator = torch.Generator().manual_seed(0)
    results = []
    for n in sizes:
        a = torch.randn(n, n, generator=generator, dtype=torch.float64)
        greedy = cut_norm_greedy(a, generator=torch.Generator().manual_seed(1))
        # The certificate is an eigenvalue problem of size 2n + 2: timed separately below.
        sdp = cut_norm_sdp(a, certify=n <= 1024, generator=torch.Generator().manual_seed(1))
        meta = {
            "n": n,
            "greedy_normalized": greedy.normalized,
            "sdp_rounded_normalized": sdp.normalized,
            "sdp_interval_normalized": list(sdp.normalized_interval),
        }
        if n <= 16:
            exact = cut_norm_exact(a)
            meta["exact_normalized"] = exact.normalized
            results.append(
                compare(
                    lambda a=a: cut_norm_greedy(a),
                    lambda a=a: cut_norm_exact(a),
                    name=f"cut norm n={n}: greedy vs exact enumeration",
                    label_a="greedy (20 restarts)",
                    label_b="exact",
                    repeats=3,
                    warmup=1,
                    meta=meta,
                    threads=1,
                )
            )
        repeats = 3 if n <= 256 else 1
        results.append(
            compare(
                lambda a=a: cut_norm_greedy(a),
                lambda a=a: cut_norm_sdp(a, certify=False),
                name=f"cut norm n={n}: greedy vs Alon–Naor SDP (no certificate)",
                label_a="greedy (20 restarts)",
                label_b="sdp-gaussian",
                repeats=repeats,
                warmup=0 if n > 256 else 1,
                meta=meta,
                threads=1,
            )
        )
    return results
