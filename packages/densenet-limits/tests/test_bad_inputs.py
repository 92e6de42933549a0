"""densenet-limits' public functions under kernelkit's bad-input harness (kernelkit.testing_inputs)."""

import functools

import densenet_limits as dl
import torch
from hypothesis import strategies as st

from kernelkit.testing import (
    ChoiceArg,
    CountArg,
    IdsArg,
    PublicFunction,
    RealArg,
    TensorArg,
    assert_handles_bad_inputs,
    tensors,
    uncovered_names,
)

D0, WIDTH = 4, 6


@functools.cache
def dense():
    return dl.DenseMLP([D0, WIDTH, WIDTH, 1], 2.0, seed=0)


@functools.cache
def sparse():
    return dl.SparseMLP([D0, WIDTH, 1], 2.0, seed=0)


@functools.cache
def classifier():
    return dl.MLP([D0, WIDTH, 3], seed=0)


@st.composite
def inputs(draw, rows=None):
    n = draw(st.integers(2, 5)) if rows is None else rows
    return draw(tensors(shape=(n, D0), min_value=0, max_value=1))


@st.composite
def matrices(draw):
    rows, cols = draw(st.integers(2, 5)), draw(st.integers(2, 5))
    # distinct rows, so every partition size up to `rows` is reachable
    base = draw(tensors(shape=(rows, cols), dtype=torch.float64))
    return base + torch.arange(rows, dtype=torch.float64).unsqueeze(1) * 100


MATRIX = TensorArg(dtypes=(torch.float32, torch.float64, torch.int64), ndim=2)
INPUTS = TensorArg(dtypes=(torch.float32,), ndim=2)


def _forward_entry(name, model):
    return PublicFunction(
        f"{name}.forward",
        lambda x: model()(x),
        inputs().map(lambda x: {"x": x}),
        {"x": TensorArg(dtypes=(torch.float32,), min_ndim=1, nan="propagate")},
    )


FUNCTIONS = [
    PublicFunction(
        "compress",
        lambda parts, inputs: dl.compress(dense(), parts, inputs=inputs),
        inputs().map(lambda x: {"parts": 2, "inputs": x}),
        {"parts": CountArg(low=1, high=WIDTH), "inputs": TensorArg(ndim=2, optional=True)},
    ),
    PublicFunction(
        "hidden_kernel",
        lambda index, inputs: dl.hidden_kernel(dense().affine_layers(), index, inputs),
        inputs().map(lambda x: {"index": 0, "inputs": x}),
        {"index": CountArg(low=0, high=1), "inputs": TensorArg(ndim=2, optional=True)},
    ),
    PublicFunction(
        "input_kernel",
        lambda inputs: dl.input_kernel(dense().affine_layers(), inputs),
        inputs().map(lambda x: {"inputs": x}),
        {"inputs": TensorArg(ndim=2, optional=True)},
    ),
    PublicFunction(
        "partition_neurons",
        lambda kernel, parts, method: dl.partition_neurons(kernel, parts, method=method),
        matrices().map(lambda a: {"kernel": a, "parts": 2, "method": "kmeans"}),
        {
            "kernel": TensorArg(ndim=2),
            "parts": CountArg(low=1, high=lambda kw: kw["kernel"].shape[0]),
            "method": ChoiceArg(),
        },
    ),
    PublicFunction(
        "weak_regularity_partition",
        lambda a, parts: dl.weak_regularity_partition(a, parts, restarts=2),
        matrices().map(lambda a: {"a": a, "parts": 2}),
        {"a": MATRIX, "parts": CountArg(low=1, high=lambda kw: kw["a"].shape[0])},
    ),
    PublicFunction(
        "cut_norm",
        lambda a: dl.cut_norm(a),
        matrices().map(lambda a: {"a": a}),
        {"a": MATRIX},
    ),
    PublicFunction(
        "cut_norm_exact",
        lambda a: dl.cut_norm_exact(a),
        matrices().map(lambda a: {"a": a}),
        {"a": MATRIX},
    ),
    PublicFunction(
        "cut_norm_greedy",
        lambda a, restarts: dl.cut_norm_greedy(a, restarts=restarts),
        matrices().map(lambda a: {"a": a, "restarts": 2}),
        {"a": MATRIX, "restarts": CountArg(low=0)},
    ),
    PublicFunction(
        "cut_norm_sdp",
        lambda a, draws: dl.cut_norm_sdp(a, max_iter=50, draws=draws),
        matrices().map(lambda a: {"a": a, "draws": 4}),
        {"a": MATRIX, "draws": CountArg(low=1)},
    ),
    PublicFunction(
        "frieze_kannan",
        lambda a, k: dl.frieze_kannan(a, k, restarts=2),
        matrices().map(lambda a: {"a": a, "k": 2}),
        {"a": MATRIX, "k": CountArg(low=1)},
    ),
    PublicFunction(
        "step_matrix",
        dl.step_matrix,
        matrices().map(
            lambda a: {
                "a": a,
                "row_labels": torch.arange(a.shape[0]) % 2,
                "col_labels": torch.arange(a.shape[1]) % 2,
            }
        ),
        {
            "a": MATRIX,
            "row_labels": IdsArg(high=None, ndim=1),
            "col_labels": IdsArg(high=None, ndim=1),
        },
    ),
    PublicFunction(
        "common_refinement",
        dl.common_refinement,
        st.builds(lambda: {"masks": torch.tensor([[True, False, True], [True, True, False]])}),
        {"masks": TensorArg(dtypes=(torch.bool,), ndim=2)},
    ),
    PublicFunction(
        "witness", dl.witness, inputs().map(lambda x: {"x": x}), {"x": TensorArg(min_ndim=1)}
    ),
    PublicFunction(
        "sample_hard_family",
        dl.sample_hard_family,
        st.builds(lambda: {"count": 3, "dim": 4}),
        {"count": CountArg(low=1), "dim": CountArg(low=1)},
    ),
    PublicFunction(
        "block_averages_of_inputs",
        dl.block_averages_of_inputs,
        inputs().map(lambda x: {"x": x, "blocks": 2}),
        {"x": TensorArg(min_ndim=1, nan="propagate"), "blocks": CountArg(low=1, high=D0)},
    ),
    PublicFunction(
        "equal_block_average_pairs",
        dl.equal_block_average_pairs,
        st.builds(lambda: {"dim": 8, "blocks": 2}),
        {"dim": CountArg(low=2), "blocks": CountArg(low=1, high=lambda kw: kw["dim"])},
    ),
    PublicFunction(
        "block_average_pairs",
        dl.block_average_pairs,
        st.builds(lambda: {"labels": torch.tensor([0, 0, 1, 1, 2, 2])}),
        {"labels": IdsArg(high=None, ndim=1, empty=True)},
    ),
    PublicFunction(
        "r2_score",
        lambda inputs, targets: dl.r2_score(dense(), inputs, targets),
        inputs().map(lambda x: {"inputs": x, "targets": torch.arange(float(x.shape[0]))}),
        {"inputs": INPUTS, "targets": TensorArg(ndim=(1, 2))},
    ),
    PublicFunction(
        "accuracy",
        lambda inputs, labels: dl.accuracy(classifier(), inputs, labels),
        inputs().map(lambda x: {"inputs": x, "labels": torch.arange(x.shape[0]) % 3}),
        {"inputs": INPUTS, "labels": IdsArg(high=3, ndim=1)},
    ),
    PublicFunction(
        "train",
        lambda inputs, targets, steps: dl.train(
            dl.DenseMLP([D0, WIDTH, 1], 2.0, seed=0),
            inputs,
            targets,
            dl.TrainConfig(steps=steps, batch_size=4),
        ),
        inputs(rows=6).map(lambda x: {"inputs": x, "targets": dl.witness(x), "steps": 2}),
        {"inputs": INPUTS, "targets": TensorArg(ndim=(1, 2)), "steps": CountArg(low=1)},
        examples=1,
    ),
    PublicFunction(
        "parameter_groups",
        lambda lr: dl.parameter_groups(dense(), lr),
        st.builds(lambda: {"lr": 0.01}),
        {"lr": RealArg(low=0.0)},
    ),
    PublicFunction(
        "load_digits_split",
        dl.load_digits_split,
        st.builds(lambda: {"test_fraction": 0.25}),
        {"test_fraction": RealArg(low=1e-9, high=1 - 1e-9)},
        examples=1,
    ),
    _forward_entry("DenseMLP", dense),
    _forward_entry("SparseMLP", sparse),
    _forward_entry("MLP", classifier),
    PublicFunction(
        "DenseLinear.forward",
        lambda x: dl.DenseLinear(D0, 3, 2.0, generator=torch.Generator().manual_seed(0))(x),
        inputs().map(lambda x: {"x": x}),
        {"x": TensorArg(dtypes=(torch.float32,), min_ndim=1, nan="propagate")},
    ),
    PublicFunction(
        "FanInOneLinear.forward",
        lambda x: dl.FanInOneLinear(D0, 3, 2.0, generator=torch.Generator().manual_seed(0))(x),
        inputs().map(lambda x: {"x": x}),
        {"x": TensorArg(dtypes=(torch.float32,), min_ndim=1, nan="propagate")},
    ),
]

EXEMPT = {
    "CompressionResult": "result dataclass of compress",
    "CutDecomposition": "result dataclass of frieze_kannan",
    "CutNormResult": "result dataclass of the cut-norm searches",
    "TrainConfig": "configuration dataclass; validated in __post_init__",
    "__version__": "a string",
    "load_network": "reads a saved network (safetensors); malformed files raise ArtifactError (test_networks)",
}


def test_bad_inputs(bad_input_table):
    bad_input_table("densenet-limits", FUNCTIONS, assert_handles_bad_inputs(FUNCTIONS))


def test_every_public_name_is_registered_or_exempt():
    assert uncovered_names(dl, FUNCTIONS, EXEMPT) == []
