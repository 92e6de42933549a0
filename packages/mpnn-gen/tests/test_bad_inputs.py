"""mpnn-gen's public functions under kernelkit's bad-input harness (see kernelkit.testing_inputs).

Graphs are PyG ``Data`` built from drawn tensors: the harness varies the first graph's node
features ``x``, its ``edge_index`` and its label ``y``; a second, fixed graph sits beside it.
"""

import mpnn_gen
import networkx as nx
import torch
from hypothesis import strategies as st
from torch_geometric.data import Data

from kernelkit.testing import (
    ChoiceArg,
    CountArg,
    GraphArg,
    IdsArg,
    PublicFunction,
    RealArg,
    TensorArg,
    assert_handles_bad_inputs,
    tensors,
    uncovered_names,
)

FEATURES = 3


@st.composite
def graph_parts(draw):
    n = draw(st.integers(2, 6))
    NODES[0] = n
    edges = draw(
        st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), min_size=1, max_size=8)
    )
    return {
        "x": draw(tensors(shape=(n, FEATURES), distinct_values=3)),
        "edge_index": torch.tensor(edges).t().contiguous(),
        "y": torch.tensor([draw(st.integers(0, 1))]),
    }


FIXED = Data(
    x=torch.ones(3, FEATURES),
    edge_index=torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]]),
    y=torch.tensor([1]),
    num_nodes=3,
)


def graphs(x, edge_index, y):
    """The drawn graph beside the fixed one; its node count is the valid input's, so a mutated
    ``x`` of another length must be caught, not silently re-sized."""
    return [Data(x=x, edge_index=edge_index, y=y, num_nodes=NODES[0]), FIXED]


# The node count of the drawn graph, set by graph_parts (one draw at a time).
NODES = [0]


def gcn():
    torch.manual_seed(0)
    return mpnn_gen.GCN(FEATURES, 4, 2, 2)


def mpgnn():
    torch.manual_seed(0)
    return mpnn_gen.MPGNN(FEATURES, 4, 2, 2)


# For 1-WL, features are optional colours (any real dtype) and a graph may have no edge list.
WL_PARTS = {
    "x": TensorArg(dtypes=(torch.float32, torch.float64, torch.int64), ndim=(1, 2), optional=True),
    "edge_index": IdsArg(high=lambda kw: NODES[0], ndim=2, optional=True),
}
PARTS = {
    "x": TensorArg(ndim=2),
    "edge_index": IdsArg(high=lambda kw: NODES[0], ndim=2, optional=True),
}
FORWARD = {
    "x": TensorArg(dtypes=(torch.float32,), ndim=2, nan="propagate"),
    "edge_index": IdsArg(high=lambda kw: NODES[0], ndim=2),
    "batch": IdsArg(high=None, ndim=1, optional=True),
}
LABELLED = {**PARTS, "y": IdsArg(high=2, ndim=1)}
DELTA = RealArg(low=1e-12, high=1 - 1e-12)
GAMMA = RealArg(low=1e-12)


def _bound(fn, model, **extra):
    return lambda x, edge_index, y, delta: fn(model, graphs(x, edge_index, y), delta=delta, **extra)


def _bound_entry(name, fn, model, **extra):
    return PublicFunction(
        name,
        _bound(fn, model, **extra),
        graph_parts().map(lambda kw: {**kw, "delta": 0.05}),
        {**PARTS, "delta": DELTA},
        allow_inf=True,
        examples=1,
    )


@st.composite
def node_task(draw):
    n = draw(st.integers(3, 6))
    mask = torch.tensor(
        [True, False, *draw(st.lists(st.booleans(), min_size=n - 2, max_size=n - 2))]
    )
    return {"features": draw(tensors(shape=(n, FEATURES))), "train_mask": mask}


FUNCTIONS = [
    PublicFunction(
        "refine",
        lambda x, edge_index, y, rounds: mpnn_gen.refine(graphs(x, edge_index, y), rounds),
        graph_parts().map(lambda kw: {**kw, "rounds": 2}),
        {**WL_PARTS, "rounds": CountArg(low=0)},
    ),
    PublicFunction(
        "count_classes",
        lambda x, edge_index, y, rounds: mpnn_gen.count_classes(graphs(x, edge_index, y), rounds),
        graph_parts().map(lambda kw: {**kw, "rounds": 2}),
        {**WL_PARTS, "rounds": CountArg(low=0)},
    ),
    PublicFunction(
        "as_graph_batch",
        lambda x, edge_index, y: mpnn_gen.as_graph_batch(graphs(x, edge_index, y)),
        graph_parts(),
        WL_PARTS,
    ),
    PublicFunction(
        "to_pyg",
        lambda graph, features: mpnn_gen.to_pyg(graph, features=features),
        st.builds(lambda: {"graph": nx.path_graph(4), "features": torch.ones(4, 2)}),
        {"graph": GraphArg(empty=False), "features": TensorArg(ndim=2, optional=True)},
    ),
    PublicFunction(
        "operator_norm",
        lambda operator, iterations, **kw: mpnn_gen.operator_norm(
            operator, mpnn_gen.as_graph_batch(graphs(**kw)), iterations=iterations
        ),
        graph_parts().map(lambda kw: {**kw, "operator": "gcn", "iterations": 5}),
        {**WL_PARTS, "operator": ChoiceArg(), "iterations": CountArg(low=1)},
    ),
    PublicFunction(
        "GCN.forward",
        lambda x, edge_index, batch: gcn()(x, edge_index, batch),
        graph_parts().map(
            lambda kw: {
                "x": kw["x"],
                "edge_index": kw["edge_index"],
                "batch": torch.zeros(kw["x"].shape[0], dtype=torch.long),
            }
        ),
        FORWARD,
    ),
    PublicFunction(
        "MPGNN.forward",
        lambda x, edge_index, batch: mpgnn()(x, edge_index, batch),
        graph_parts().map(
            lambda kw: {
                "x": kw["x"],
                "edge_index": kw["edge_index"],
                "batch": torch.zeros(kw["x"].shape[0], dtype=torch.long),
            }
        ),
        FORWARD,
    ),
    PublicFunction(
        "train_graph_classifier",
        lambda x, edge_index, y, epochs: mpnn_gen.train_graph_classifier(
            gcn(), graphs(x, edge_index, y), mpnn_gen.TrainConfig(epochs=epochs)
        ),
        graph_parts().map(lambda kw: {**kw, "epochs": 2}),
        {**LABELLED, "epochs": CountArg(low=0)},
        examples=1,
    ),
    PublicFunction(
        "measure_gap",
        lambda x, edge_index, y, gamma: mpnn_gen.measure_gap(
            gcn(), graphs(x, edge_index, y), [FIXED], gamma=gamma
        ),
        graph_parts().map(lambda kw: {**kw, "gamma": 1.0}),
        {**LABELLED, "gamma": GAMMA},
        examples=1,
    ),
    PublicFunction(
        "report",
        lambda x, edge_index, y, delta: mpnn_gen.report(
            gcn(),
            graphs(x, edge_index, y),
            [FIXED],
            bounds=[mpnn_gen.liao_gcn_pac_bayes],
            delta=delta,
        ),
        graph_parts().map(lambda kw: {**kw, "delta": 0.05}),
        {**LABELLED, "delta": DELTA},
        allow_inf=True,
        examples=1,
    ),
    _bound_entry("liao_gcn_pac_bayes", mpnn_gen.liao_gcn_pac_bayes, gcn()),
    _bound_entry("ju_pac_bayes", mpnn_gen.ju_pac_bayes, gcn()),
    _bound_entry("liao_mpgnn_pac_bayes", mpnn_gen.liao_mpgnn_pac_bayes, mpgnn()),
    _bound_entry("compositional_pac_bayes", mpnn_gen.compositional_pac_bayes, gcn()),
    _bound_entry("garg_rademacher", mpnn_gen.garg_rademacher, gcn()),
    _bound_entry(
        "aminian_mean_field", mpnn_gen.aminian_mean_field, mpnn_gen.GCN(FEATURES, 4, 2, 1)
    ),
    _bound_entry("vc_wl", mpnn_gen.vc_wl, gcn()),
    PublicFunction(
        "unseen_colour_fraction",
        lambda x, edge_index, y, rounds: mpnn_gen.unseen_colour_fraction(
            graphs(x, edge_index, y), [FIXED], rounds=rounds
        ),
        graph_parts().map(lambda kw: {**kw, "rounds": 2}),
        {**WL_PARTS, "rounds": CountArg(low=0)},
    ),
    PublicFunction(
        "transductive_rademacher_sgc",
        lambda features, train_mask, weight_norm, samples: mpnn_gen.transductive_rademacher_sgc(
            features, train_mask, weight_norm, samples=samples
        ),
        node_task().map(lambda kw: {**kw, "weight_norm": 1.0, "samples": 8}),
        {
            "features": TensorArg(ndim=2),
            "weight_norm": RealArg(low=0.0),
            "samples": CountArg(low=1),
        },
    ),
    PublicFunction(
        "stability_verma_zhang",
        lambda x, edge_index, y, steps, lr: mpnn_gen.stability_verma_zhang(
            mpnn_gen.GCN(FEATURES, 4, 2, 1),
            graphs(x, edge_index, y)[0],
            torch.ones(
                x.shape[0] if isinstance(x, torch.Tensor) and x.ndim else 1, dtype=torch.bool
            ),
            steps=steps,
            lr=lr,
        ),
        graph_parts().map(lambda kw: {**kw, "steps": 10, "lr": 0.01}),
        {**PARTS, "steps": CountArg(low=1), "lr": RealArg(low=0.0)},
        examples=1,
    ),
]

EXEMPT = {
    "Bound": "result dataclass of the bound functions",
    "Gap": "result dataclass of measure_gap",
    "GraphBatch": "dataclass built by the registered as_graph_batch",
    "TrainConfig": "configuration dataclass",
    "UnsupportedLayerError": "an exception class",
    "WLResult": "result dataclass of refine",
    "WeightLayer": "dataclass built by extract_layers",
    "__version__": "a string",
    "extract_layers": "takes a torch module; unsupported layers raise UnsupportedLayerError (test_bounds)",
    "rank_correlations": "takes rows of report() (dicts of floats), no tensors, ids or graphs",
    "register_layer": "registers an extractor function for a module class",
    "wl": "the module holding refine and count_classes, both registered",
}


def test_bad_inputs(bad_input_table):
    bad_input_table("mpnn-gen", FUNCTIONS, assert_handles_bad_inputs(FUNCTIONS))


def test_every_public_name_is_registered_or_exempt():
    assert uncovered_names(mpnn_gen, FUNCTIONS, EXEMPT) == []
