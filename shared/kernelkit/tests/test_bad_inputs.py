"""kernelkit's public functions under its own bad-input harness (kernelkit.testing_inputs)."""

import torch
from hypothesis import strategies as st

import kernelkit
from kernelkit.testing import (
    ChoiceArg,
    CountArg,
    PublicFunction,
    TensorArg,
    assert_handles_bad_inputs,
    tensors,
    uncovered_names,
)

FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


@st.composite
def scans(draw):
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 5)), draw(st.integers(1, 3)))
    return {
        "a": draw(tensors(shape=shape, min_value=0, max_value=1)),
        "b": draw(tensors(shape=shape)),
        "h0": draw(tensors(shape=(shape[0], shape[2]))),
        "dim": 1,
    }


# A linear recurrence is arithmetic: NaN and inf flow through like torch.cumsum.
SCAN = {
    "a": TensorArg(dtypes=FLOATS, min_ndim=1, nan="propagate"),
    "b": TensorArg(dtypes=FLOATS, min_ndim=1, nan="propagate"),
    "h0": TensorArg(dtypes=FLOATS, nan="propagate", optional=True),
    "dim": CountArg(low=-3, high=2),
}


@st.composite
def matrices(draw):
    shape = (draw(st.integers(1, 6)), draw(st.integers(1, 6)))
    return {"a": draw(tensors(shape=shape, min_value=-1, max_value=1))}


@st.composite
def scores(draw):
    rows, width = draw(st.integers(1, 3)), draw(st.integers(1, 6))
    return {
        "x": draw(tensors(shape=(rows, width), distinct_values=4)),
        "k": draw(st.integers(1, width)),
    }


def exactly_k_per_row(result, kwargs):
    if not (result.sum(-1) == kwargs["k"]).all():
        raise AssertionError("a row does not keep exactly k entries")


FUNCTIONS = [
    PublicFunction(
        "linear_scan",
        lambda impl, **kw: kernelkit.linear_scan(**kw, impl=impl),
        scans().map(lambda kw: {**kw, "impl": "torch"}),
        {**SCAN, "impl": ChoiceArg()},
    ),
    PublicFunction("linear_scan_reference", kernelkit.linear_scan_reference, scans(), SCAN),
    PublicFunction(
        "cut_norm",
        lambda a, method: kernelkit.cut_norm(a, method=method),
        matrices().map(lambda kw: {**kw, "method": "exact"}),
        {"a": TensorArg(dtypes=FLOATS, ndim=2), "method": ChoiceArg()},
    ),
    PublicFunction(
        "frieze_kannan",
        lambda a, k, method: kernelkit.frieze_kannan(
            a, k, method=method, generator=torch.Generator().manual_seed(0)
        ).matrix(),
        matrices().map(lambda kw: {**kw, "k": 2, "method": "greedy"}),
        {"a": TensorArg(dtypes=FLOATS, ndim=2), "k": CountArg(low=1), "method": ChoiceArg()},
    ),
    PublicFunction(
        "topk_mask",
        kernelkit.topk_mask,
        scores().map(lambda kw: {"scores": kw["x"], "k": kw["k"]}),
        {
            "scores": TensorArg(dtypes=FLOATS, min_ndim=1, inf="propagate"),
            "k": CountArg(low=1, high=lambda kw: kw["scores"].shape[-1]),
        },
        postcondition=exactly_k_per_row,
    ),
    PublicFunction(
        "topk_codes",
        lambda x, k: kernelkit.topk_codes(x, k).to_dense(),
        scores(),
        {
            "x": TensorArg(dtypes=FLOATS, min_ndim=1, inf="propagate"),
            "k": CountArg(low=1, high=lambda kw: kw["x"].shape[-1]),
        },
    ),
]

EXEMPT = {
    "CutDecomposition": "a result dataclass (frieze_kannan is registered)",
    "CutNormResult": "a result dataclass (cut_norm is registered)",
    "SparseCodes": "a container whose constructor validates its indices, values and width "
    "(tests/test_topk.py); topk_codes is registered",
    "__version__": "a string",
}


def test_bad_inputs(bad_input_table):
    bad_input_table("kernelkit", FUNCTIONS, assert_handles_bad_inputs(FUNCTIONS))


def test_every_public_name_is_registered_or_exempt():
    assert uncovered_names(kernelkit, FUNCTIONS, EXEMPT) == []
