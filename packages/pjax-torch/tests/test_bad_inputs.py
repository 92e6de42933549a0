"""pjax-torch's public functions under kernelkit's bad-input harness (kernelkit.testing_inputs).

The projection operators live in the public module ``ops``, the tracing front end in ``api``,
the layers in ``nn`` and the data sets in ``data``; they are registered as ``ops.<op>.project``,
``api.<fn>``, ``nn.<Layer>`` and ``data.<fn>``.
"""

import pjax_torch
import torch
from hypothesis import strategies as st
from pjax_torch import api, data, nn, ops
from pjax_torch.ops import max as max_op
from pjax_torch.ops import sum as sum_op

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

VALUE = TensorArg(min_ndim=1)
WEIGHT = RealArg(low=1e-12)


@st.composite
def reduced(draw, name="a", two=False):
    batch, n = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    out = {
        name: draw(tensors(shape=(batch, n))),
        "output": draw(tensors(shape=(batch,))),
        "weight": 1.0,
    }
    if two:
        out["b"] = draw(tensors(shape=(batch, n)))
    return out


@st.composite
def elementwise(draw):
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    return {"a": draw(tensors(shape=shape)), "output": draw(tensors(shape=shape)), "weight": 1.0}


@st.composite
def classified(draw):
    batch, classes = draw(st.integers(1, 3)), draw(st.integers(2, 4))
    labels = draw(st.lists(st.integers(0, classes - 1), min_size=batch, max_size=batch))
    return {"logits": draw(tensors(shape=(batch, classes))), "labels": torch.tensor(labels)}


@st.composite
def matrices(draw):
    k, m = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    return {"x": draw(tensors(shape=(2, k))), "w": draw(tensors(shape=(k, m)))}


def _project_entry(name, module, strategy, value_args, **extra):
    return PublicFunction(
        f"ops.{name}.project",
        lambda **kw: module.project(**kw, **extra),
        strategy,
        {**value_args, "output": VALUE, "weight": WEIGHT},
    )


def _forward_entry(name, module, strategy, arg):
    return PublicFunction(
        f"ops.{name}.forward",
        module.forward,
        strategy.map(lambda kw: {arg: kw[arg]}),
        {arg: TensorArg(min_ndim=1, nan="propagate", empty=False)},
    )


LABELS = IdsArg(high=lambda kw: kw["logits"].shape[-1], ndim=1)

FUNCTIONS = [
    _project_entry("max", max_op, reduced(), {"a": VALUE}),
    _project_entry("sum", sum_op, reduced(), {"a": VALUE}),
    _project_entry("sum_relu", ops.sum_relu, reduced("x"), {"x": VALUE}),
    _project_entry("bilinear", ops.bilinear, reduced(two=True), {"a": VALUE, "b": VALUE}),
    _project_entry("identity", ops.identity, elementwise(), {"a": VALUE}),
    _project_entry("quantize", ops.quantize, elementwise(), {"a": VALUE}, levels=3),
    _forward_entry("max", max_op, reduced(), "a"),
    _forward_entry("sum", sum_op, reduced(), "a"),
    _forward_entry("sum_relu", ops.sum_relu, reduced("x"), "x"),
    PublicFunction(
        "ops.margin.project",
        ops.margin.project,
        classified().map(lambda kw: {**kw, "margin": 1.0}),
        {"logits": TensorArg(ndim=2), "labels": LABELS, "margin": RealArg(low=0.0)},
    ),
    PublicFunction(
        "ops.cross_entropy.project",
        ops.cross_entropy.project,
        classified().map(lambda kw: {**kw, "lam": 5.0}),
        {"logits": TensorArg(ndim=2), "labels": LABELS, "lam": RealArg(low=1e-12)},
    ),
    PublicFunction(
        "ops.target.project",
        ops.target.project,
        elementwise().map(lambda kw: {"values": kw["a"], "target": kw["output"]}),
        {"values": VALUE, "target": VALUE},
    ),
    PublicFunction(
        "ops.get_operation",
        ops.get_operation,
        st.builds(lambda: {"name": "dot"}),
        {"name": ChoiceArg()},
    ),
    PublicFunction(
        "api.matmul",
        api.matmul,
        matrices(),
        {"x": TensorArg(min_ndim=1, nan="propagate"), "w": TensorArg(ndim=2, nan="propagate")},
    ),
    PublicFunction(
        "api.dot",
        api.dot,
        reduced(two=True).map(lambda kw: {"a": kw["a"], "b": kw["b"]}),
        {"a": TensorArg(min_ndim=1, nan="propagate"), "b": TensorArg(min_ndim=1, nan="propagate")},
    ),
    PublicFunction(
        "api.index",
        api.index,
        matrices().map(
            lambda kw: {"table": kw["w"], "indices": torch.tensor([0, kw["w"].shape[0] - 1])}
        ),
        {
            # a lookup: any dtype in, the same dtype out
            "table": TensorArg(
                dtypes=(torch.float32, torch.float64, torch.int64, torch.bool),
                min_ndim=1,
                nan="propagate",
            ),
            "indices": IdsArg(high=lambda kw: kw["table"].shape[0]),
        },
    ),
    PublicFunction(
        "api.conv_patches",
        api.conv_patches,
        st.builds(lambda: {"x": torch.rand(2, 1, 4, 4), "kernel_size": 2}),
        {"x": TensorArg(ndim=4, nan="propagate"), "kernel_size": CountArg(low=1, high=4)},
    ),
    PublicFunction(
        "api.margin_loss",
        api.margin_loss,
        classified(),
        {"logits": TensorArg(ndim=2), "labels": LABELS},
    ),
    PublicFunction(
        "api.cross_entropy",
        api.cross_entropy,
        classified(),
        {"logits": TensorArg(ndim=2), "labels": LABELS},
    ),
    PublicFunction(
        "api.regression_target",
        api.regression_target,
        elementwise().map(lambda kw: {"values": kw["a"], "target": kw["output"]}),
        {"values": TensorArg(min_ndim=1, nan="propagate"), "target": VALUE},
    ),
    PublicFunction(
        "api.repeat",
        lambda a, count: api.repeat(a, count, 0),
        elementwise().map(lambda kw: {"a": kw["a"], "count": 2}),
        {
            "a": TensorArg(
                dtypes=(torch.float32, torch.float64, torch.int64, torch.bool), nan="propagate"
            ),
            "count": CountArg(low=1),
        },
    ),
    PublicFunction(
        "nn.Linear",
        lambda x: nn.Linear(3, 2)({"weight": torch.ones(3, 2)}, x),
        st.builds(lambda: {"x": torch.rand(4, 3)}),
        {"x": TensorArg(min_ndim=1, nan="propagate")},
    ),
    PublicFunction(
        "nn.Embedding",
        lambda tokens: nn.Embedding(5, 2)({"weight": torch.ones(5, 2)}, tokens),
        st.builds(lambda: {"tokens": torch.tensor([[0, 4], [2, 1]])}),
        {"tokens": IdsArg(high=5)},
    ),
    PublicFunction(
        "data.teacher_student",
        data.teacher_student,
        st.builds(lambda: {"samples": 10, "inputs": 3, "hidden": 2, "outputs": 2}),
        {
            "samples": CountArg(low=2),
            "inputs": CountArg(low=1),
            "hidden": CountArg(low=1),
            "outputs": CountArg(low=1),
        },
    ),
    PublicFunction(
        "data.sequence_task",
        data.sequence_task,
        st.builds(lambda: {"samples": 10, "steps": 3}),
        {"samples": CountArg(low=2), "steps": CountArg(low=1)},
    ),
    PublicFunction(
        "make_optimizer",
        pjax_torch.make_optimizer,
        st.builds(lambda: {"name": "dr", "steps_per_update": 3}),
        {"name": ChoiceArg(), "steps_per_update": CountArg(low=1)},
    ),
]

EXEMPT = {
    "AlternatingProjections": "an optimiser class; built and checked through make_optimizer",
    "AlternatingReflections": "an optimiser class; built and checked through make_optimizer",
    "CyclicDouglasRachford": "an optimiser class; built and checked through make_optimizer",
    "CyclicProjections": "an optimiser class; built and checked through make_optimizer",
    "DifferenceMap": "an optimiser class; built and checked through make_optimizer",
    "DouglasRachford": "an optimiser class; built and checked through make_optimizer",
    "Optimizer": "the optimisers' base class",
    "Constant": "a graph node holding a tensor (built by api functions)",
    "Graph": "built from traced nodes; its errors are tested in test_graph",
    "GraphColouringError": "an exception class",
    "Node": "graph node base class",
    "Operation": "a graph node; built by api.apply_operation",
    "OperationSpec": "dataclass describing an operation for register_operation",
    "Parameter": "a graph node holding a trainable tensor",
    "Projection": "result NamedTuple of the ops' project functions",
    "TrainConfig": "configuration dataclass; validated in __post_init__",
    "Transform": "a graph node for shape transforms; built by api functions",
    "UnknownOperationError": "an exception class",
    "__version__": "a string",
    "register_operation": "registers an OperationSpec (functions, not tensors)",
    "train": "a training run from a TrainConfig; its layers and ops are registered here",
}


def test_bad_inputs(bad_input_table):
    bad_input_table("pjax-torch", FUNCTIONS, assert_handles_bad_inputs(FUNCTIONS))


def test_every_public_name_is_registered_or_exempt():
    assert uncovered_names(pjax_torch, FUNCTIONS, EXEMPT) == []
