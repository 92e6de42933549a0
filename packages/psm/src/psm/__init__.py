"""psm: prefix-scannable models (Yau et al., "Sequential-Parallel Duality in Prefix-Scannable Models").

One aggregator, two exact evaluators: :func:`exclusive_prefix` (a Blelloch tree, for training)
and :class:`OnlineScanner` (a binary counter with ``O(log n)`` states, for streaming). See the
README for the model, the tree and the reproduction.
"""

from importlib.metadata import version

from psm.affine import (
    AFFINE_STEPS,
    AffineSteps,
    affine_aggregator,
    affine_states,
    mlstm_aggregator,
    mlstm_output,
    mlstm_states,
    read_out,
)
from psm.baselines import CausalTransformerLM, DiagonalLinearRNNLM
from psm.model import PSM, PSMStream
from psm.scan import OnlineScanner, ScanCounts, exclusive_prefix, left_fold_prefix, online_prefix
from psm.tasks import mqar_batch, permutation_group, state_tracking_batch
from psm.training import TrainConfig, build_model, evaluate, load_checkpoint, train
from psm.transformer_psm import TransformerPSM, TransformerPSMConfig

__version__ = version("psm-prefix-scan")

__all__ = [
    "AFFINE_STEPS",
    "PSM",
    "AffineSteps",
    "CausalTransformerLM",
    "DiagonalLinearRNNLM",
    "OnlineScanner",
    "PSMStream",
    "ScanCounts",
    "TrainConfig",
    "TransformerPSM",
    "TransformerPSMConfig",
    "__version__",
    "affine_aggregator",
    "affine_states",
    "build_model",
    "evaluate",
    "exclusive_prefix",
    "left_fold_prefix",
    "load_checkpoint",
    "mlstm_aggregator",
    "mlstm_output",
    "mlstm_states",
    "mqar_batch",
    "online_prefix",
    "permutation_group",
    "read_out",
    "state_tracking_batch",
    "train",
]
