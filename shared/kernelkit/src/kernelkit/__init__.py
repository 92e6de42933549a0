"""kernelkit: shared kernels (Triton with plain-torch references) and utilities.

The kernels are re-exported here; the other submodules are imported on first use so that
``import kernelkit`` needs torch only:

- :mod:`kernelkit.topk`: top-k masks and k-sparse codes with sparse-sparse scoring;
- :mod:`kernelkit.scan`: the linear recurrence ``h_t = a_t * h_{t-1} + b_t``;
- :mod:`kernelkit.cutnorm`: cut norm (exact, greedy, Alon-Naor SDP with a certified interval)
  and weak regularity (Frieze-Kannan decompositions, step kernels);
- :mod:`kernelkit.testing`: hypothesis strategies, tiny transformers, ``assert_close``;
- :mod:`kernelkit.bench`: interleaved side-by-side timing;
- :mod:`kernelkit.repro`: claims and reports;
- :mod:`kernelkit.io`: safetensors artifacts written atomically;
- :mod:`kernelkit.utils`: seeding, device choice, progress bars;
- :mod:`kernelkit.validation`, :mod:`kernelkit.backend`, :mod:`kernelkit.cli`: plumbing.
"""

from importlib.metadata import PackageNotFoundError, version

from kernelkit.cutnorm import CutDecomposition, CutNormResult, cut_norm, frieze_kannan
from kernelkit.scan import linear_scan, linear_scan_reference
from kernelkit.topk import SparseCodes, topk_codes, topk_mask

try:
    __version__ = version("kernelkit")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "CutDecomposition",
    "CutNormResult",
    "SparseCodes",
    "__version__",
    "cut_norm",
    "frieze_kannan",
    "linear_scan",
    "linear_scan_reference",
    "topk_codes",
    "topk_mask",
]
