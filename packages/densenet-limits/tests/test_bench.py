import sys

import numpy as np
import pytest
import torch
from densenet_limits import bench

from kernelkit.cutnorm import cut_norm_exact


def test_pypi_cutnorm_uses_our_normalised_cut_norm():
    # The bench compares cutnorm's values with our `.normalized`: check the normalisation on a
    # matrix small enough for the exact value (its rounding is a lower bound, its SDP estimate
    # an upper one at convergence).
    compute_cutnorm = bench._pypi_cutnorm()
    a = torch.randn(10, 10, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    exact = cut_norm_exact(a).normalized
    rounded, relaxed = bench._pypi_values(compute_cutnorm, a, seed=0)
    assert rounded <= exact + 1e-12
    assert rounded >= 0.5 * exact  # a normalisation off by n or n² would miss this band
    assert relaxed >= exact * (1 - 1e-3)
    np.random.seed(0)
    unnormalised = compute_cutnorm(a.numpy() * 100, np.zeros((10, 10)))[0]
    assert unnormalised == pytest.approx(100 * rounded, rel=0.05)


def test_missing_pypi_cutnorm_gives_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "cutnorm", None)
    with pytest.raises(ImportError, match=r"densenet-limits\[bench\]"):
        bench.run(quick=True)


def test_bench_refuses_a_gpu_device():
    with pytest.raises(ValueError, match="device must be the CPU"):
        bench.run(device="cuda")
