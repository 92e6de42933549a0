"""mpnn-gen: generalisation bounds for message-passing GNNs on real torch-geometric models."""

from importlib.metadata import version

from mpnn_gen import wl
from mpnn_gen.bounds import (
    Bound,
    aminian_mean_field,
    compositional_pac_bayes,
    garg_rademacher,
    ju_pac_bayes,
    liao_gcn_pac_bayes,
    liao_mpgnn_pac_bayes,
    stability_verma_zhang,
    transductive_rademacher_sgc,
    unseen_colour_fraction,
    vc_wl,
)
from mpnn_gen.graphs import GraphBatch, as_graph_batch, to_pyg
from mpnn_gen.measure import Gap, measure_gap, rank_correlations, report
from mpnn_gen.models import GCN, MPGNN, TrainConfig, train_graph_classifier
from mpnn_gen.norms import (
    UnsupportedLayerError,
    WeightLayer,
    extract_layers,
    operator_norm,
    register_layer,
)
from mpnn_gen.wl import WLResult, count_classes, refine

__version__ = version("mpnn-gen")

__all__ = [
    "GCN",
    "MPGNN",
    "Bound",
    "Gap",
    "GraphBatch",
    "TrainConfig",
    "UnsupportedLayerError",
    "WLResult",
    "WeightLayer",
    "__version__",
    "aminian_mean_field",
    "as_graph_batch",
    "compositional_pac_bayes",
    "count_classes",
    "extract_layers",
    "garg_rademacher",
    "ju_pac_bayes",
    "liao_gcn_pac_bayes",
    "liao_mpgnn_pac_bayes",
    "measure_gap",
    "operator_norm",
    "rank_correlations",
    "refine",
    "register_layer",
    "report",
    "stability_verma_zhang",
    "to_pyg",
    "train_graph_classifier",
    "transductive_rademacher_sgc",
    "unseen_colour_fraction",
    "vc_wl",
    "wl",
]
