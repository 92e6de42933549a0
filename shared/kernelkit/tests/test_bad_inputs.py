"""kernelkit's public functions under the bad-input harness (see kernelkit.testing_inputs)."""

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
def matrices(draw, k=False):
    rows, cols = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    out = {"a": draw(tensors(shape=(rows, cols), dtype=torch.float64))}
    if k:
        out["k"] = draw(st.integers(1, 3))
    return out


@st.composite
def scans(draw):
    shape = draw(st.tuples(st.integers(1, 3), st.integers(1, 6), st.integers(1, 3)))
    a = draw(tensors(shape=shape, min_value=-1, max_value=1))
    return {"a": a, "b": draw(tensors(shape=shape)), "h0": torch.zeros(shape[0], shape[2])}


@st.composite
def scores(draw):
    x = draw(tensors(shape=st.tuples(st.integers(1, 3), st.integers(1, 6))))
    return {"x": x, "k": draw(st.integers(1, x.shape[-1]))}


def _mask_has_k_per_row(mask, kwargs):
    assert bool((mask.sum(-1) == kwargs["k"]).all()), "topk_mask must keep exactly k per row"


SCAN = {
    "a": TensorArg(dtypes=FLOATS, nan="propagate"),
    "b": TensorArg(dtypes=FLOATS, nan="propagate"),
    "h0": TensorArg(dtypes=FLOATS, nan="propagate", optional=True),
}
MATRIX = TensorArg(dtypes=(torch.float32, torch.float64, torch.int64), ndim=2)

FUNCTIONS = [
    PublicFunction(
        "cut_norm",
        lambda a, method: kernelkit.cut_norm(a, method=method),
        matrices().map(lambda kw: {**kw, "method": "auto"}),
        {"a": MATRIX, "method": ChoiceArg()},
    ),
    PublicFunction(
        "frieze_kannan",
        lambda a, k: kernelkit.frieze_kannan(a, k, restarts=2),
        matrices(k=True),
        {"a": MATRIX, "k": CountArg(low=1)},
    ),
    PublicFunction(
        "linear_scan",
        lambda a, b, h0, impl: kernelkit.linear_scan(a, b, h0, impl=impl),
        scans().map(lambda kw: {**kw, "impl": "torch"}),
        {**SCAN, "impl": ChoiceArg()},
    ),
    PublicFunction("linear_scan_reference", kernelkit.linear_scan_reference, scans(), SCAN),
    PublicFunction(
        "topk_codes",
        kernelkit.topk_codes,
        scores(),
        {
            "x": TensorArg(dtypes=FLOATS, inf="propagate"),
            "k": CountArg(1, lambda kw: kw["x"].shape[-1]),
        },
    ),
    PublicFunction(
        "topk_mask",
        kernelkit.topk_mask,
        scores().map(lambda kw: {"scores": kw["x"], "k": kw["k"]}),
        {
            "scores": TensorArg(dtypes=FLOATS, inf="propagate"),
            "k": CountArg(1, lambda kw: kw["scores"].shape[-1]),
        },
        postcondition=_mask_has_k_per_row,
    ),
]

EXEMPT = {
    "CutDecomposition": "result dataclass returned by frieze_kannan",
    "CutNormResult": "result dataclass returned by the cut-norm searches",
    "SparseCodes": "result dataclass; built by topk_codes, its constructor checks its fields",
    "__version__": "a string",
}


def test_bad_inputs():
    assert_handles_bad_inputs(FUNCTIONS)


def test_every_public_name_is_registered_or_exempt():
    assert uncovered_names(kernelkit, FUNCTIONS, EXEMPT) == []
