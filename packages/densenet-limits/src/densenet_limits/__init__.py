"""densenet-limits: dense ReLU networks are not universal approximators, made computable.

Dense-constrained networks (:class:`DenseMLP`) with their unconstrained and sparse comparisons,
compression of hidden layers by weak regularity (:func:`compress`), the witness family of hard
functions, and training helpers. The cut norm and the Frieze–Kannan decomposition live in
:mod:`kernelkit.cutnorm` and are re-exported here.
"""

from importlib.metadata import version

from densenet_limits.compression import (
    CompressionResult,
    compress,
    hidden_kernel,
    input_kernel,
    partition_neurons,
)
from densenet_limits.hard_functions import (
    block_average_pairs,
    block_averages_of_inputs,
    equal_block_average_pairs,
    sample_hard_family,
    witness,
)
from densenet_limits.networks import (
    MLP,
    DenseLinear,
    DenseMLP,
    FanInOneLinear,
    SparseMLP,
    load_network,
    parameter_groups,
)
from densenet_limits.training import TrainConfig, accuracy, load_digits_split, r2_score, train
from kernelkit.cutnorm import (
    CutDecomposition,
    CutNormResult,
    common_refinement,
    cut_norm,
    cut_norm_exact,
    cut_norm_greedy,
    cut_norm_sdp,
    frieze_kannan,
    step_matrix,
    weak_regularity_partition,
)

__version__ = version("densenet-limits")

__all__ = [
    "MLP",
    "CompressionResult",
    "CutDecomposition",
    "CutNormResult",
    "DenseLinear",
    "DenseMLP",
    "FanInOneLinear",
    "SparseMLP",
    "TrainConfig",
    "__version__",
    "accuracy",
    "block_average_pairs",
    "block_averages_of_inputs",
    "common_refinement",
    "compress",
    "cut_norm",
    "cut_norm_exact",
    "cut_norm_greedy",
    "cut_norm_sdp",
    "equal_block_average_pairs",
    "frieze_kannan",
    "hidden_kernel",
    "input_kernel",
    "load_digits_split",
    "load_network",
    "parameter_groups",
    "partition_neurons",
    "r2_score",
    "sample_hard_family",
    "step_matrix",
    "train",
    "weak_regularity_partition",
    "witness",
]
