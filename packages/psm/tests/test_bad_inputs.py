"""psm's public functions under kernelkit's bad-input harness (kernelkit.testing_inputs)."""

import functools

import psm
import torch
from hypothesis import strategies as st

from kernelkit.testing import (
    CallableArg,
    ChoiceArg,
    CountArg,
    IdsArg,
    PublicFunction,
    TensorArg,
    assert_handles_bad_inputs,
    tensors,
    uncovered_names,
)

VOCAB = 6
FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _add(older, newer):
    return older + newer


@st.composite
def scans(draw):
    shape = (draw(st.integers(1, 2)), draw(st.integers(0, 5)), 2)
    return {"agg": _add, "items": draw(tensors(shape=shape)), "identity": torch.zeros(2)}


# The scans are generic over the aggregator, so NaN flows through as the aggregator computes it.
SCAN = {
    "agg": CallableArg(),
    "items": TensorArg(dtypes=FLOATS, min_ndim=2, nan="propagate"),
    "identity": TensorArg(dtypes=FLOATS, ndim=1, nan="propagate"),
}


@st.composite
def affine_pairs(draw):
    n = draw(st.integers(1, 4))
    return {
        "older": draw(tensors(shape=(n, 2, 3), min_value=-1, max_value=1)),
        "newer": draw(tensors(shape=(n, 2, 3), min_value=-1, max_value=1)),
    }


@st.composite
def affine_steps(draw):
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 5)), 3)
    return {
        "decay": draw(tensors(shape=shape, min_value=0, max_value=1)),
        "increment": draw(tensors(shape=shape)),
        "h0": torch.zeros(shape[0], 3),
    }


@st.composite
def kv(draw):
    b, t, h, dk, dv = draw(st.integers(1, 2)), draw(st.integers(1, 4)), 2, 3, 2
    return {
        "k": draw(tensors(shape=(b, t, h, dk))),
        "v": draw(tensors(shape=(b, t, h, dv))),
        "input_gate": draw(tensors(shape=(b, t, h))),
        "forget_gate": draw(tensors(shape=(b, t, h))),
    }


@st.composite
def token_batches(draw):
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 6)))
    return {
        "input_ids": draw(tensors(shape=shape, dtype=torch.int64, min_value=0, max_value=VOCAB - 1))
    }


@functools.cache
def transformer_psm():
    torch.manual_seed(0)
    return psm.TransformerPSM(
        psm.TransformerPSMConfig(vocab_size=VOCAB, d_model=8, n_heads=2, chunk_size=2)
    )


@functools.cache
def causal_lm():
    torch.manual_seed(0)
    return psm.CausalTransformerLM(VOCAB, d_model=8, n_heads=2, n_layers=1)


@functools.cache
def rnn_lm():
    torch.manual_seed(0)
    return psm.DiagonalLinearRNNLM(VOCAB, d_model=8, n_layers=1)


IDS = IdsArg(high=VOCAB, ndim=2)
GATE = TensorArg(ndim=3, nan="propagate")

FUNCTIONS = [
    PublicFunction(
        "exclusive_prefix",
        lambda agg, items, identity: psm.exclusive_prefix(agg, items, identity, return_final=True),
        scans(),
        SCAN,
    ),
    PublicFunction("left_fold_prefix", psm.left_fold_prefix, scans(), SCAN),
    PublicFunction(
        "online_prefix",
        lambda agg, items, identity: psm.online_prefix(agg, items, identity)[:2],
        scans(),
        SCAN,
    ),
    PublicFunction(
        "OnlineScanner.push",
        lambda item: psm.OnlineScanner(_add, torch.zeros(2)).push(item),
        st.builds(lambda: {"item": torch.ones(3, 2)}),
        {"item": TensorArg(dtypes=FLOATS, ndim=2, nan="propagate")},
    ),
    PublicFunction(
        "affine_aggregator",
        psm.affine_aggregator,
        affine_pairs(),
        {
            "older": TensorArg(dtypes=FLOATS, min_ndim=2, nan="propagate"),
            "newer": TensorArg(dtypes=FLOATS, min_ndim=2, nan="propagate"),
        },
    ),
    PublicFunction(
        "affine_states",
        lambda decay, increment, h0, method: psm.affine_states(
            psm.AffineSteps(decay, increment), h0, method=method
        ),
        affine_steps().map(lambda kw: {**kw, "method": "tree"}),
        {
            "decay": TensorArg(min_ndim=2, nan="propagate"),
            "increment": TensorArg(min_ndim=2, nan="propagate"),
            "h0": TensorArg(min_ndim=1, nan="propagate", optional=True),
            "method": ChoiceArg(),
        },
    ),
    PublicFunction(
        "read_out",
        psm.read_out,
        kv().map(
            lambda kw: {
                "states": torch.einsum("bthk,bthv->bthkv", kw["k"], kw["v"]),
                "query": kw["k"],
            }
        ),
        {"states": TensorArg(ndim=5, nan="propagate"), "query": TensorArg(ndim=4, nan="propagate")},
    ),
    PublicFunction(
        "mlstm_states",
        lambda method, **kw: psm.mlstm_states(**kw, method=method),
        kv().map(lambda kw: {**kw, "method": "loop"}),
        {
            "k": TensorArg(ndim=4, nan="propagate"),
            "v": TensorArg(ndim=4, nan="propagate"),
            "input_gate": GATE,
            "forget_gate": GATE,
            "method": ChoiceArg(),
        },
    ),
    PublicFunction(
        "mlstm_aggregator",
        psm.mlstm_aggregator,
        st.builds(lambda: {"older": torch.zeros(2, 1, 3, 5), "newer": torch.ones(2, 1, 3, 5)}),
        {
            "older": TensorArg(ndim=4, nan="propagate"),
            "newer": TensorArg(ndim=4, nan="propagate"),
        },
    ),
    PublicFunction(
        "mlstm_output",
        lambda query, **kw: psm.mlstm_output(psm.mlstm_states(**kw), query),
        kv().map(lambda kw: {**kw, "query": kw["k"]}),
        {"query": TensorArg(ndim=4, nan="propagate")},
    ),
    PublicFunction(
        "state_tracking_batch",
        lambda group, batch_size, length: psm.state_tracking_batch(
            group, batch_size, length, torch.Generator().manual_seed(0)
        ),
        st.builds(lambda: {"group": "S3", "batch_size": 2, "length": 4}),
        {"group": ChoiceArg(), "batch_size": CountArg(low=1), "length": CountArg(low=1)},
    ),
    PublicFunction(
        "mqar_batch",
        lambda **kw: psm.mqar_batch(**kw, generator=torch.Generator().manual_seed(0)),
        st.builds(lambda: {"batch_size": 2, "length": 8, "num_kv_pairs": 2, "vocab_size": 8}),
        {
            "batch_size": CountArg(low=1),
            "length": CountArg(low=6),
            "num_kv_pairs": CountArg(low=1),
            "vocab_size": CountArg(low=6),
        },
    ),
    PublicFunction(
        "permutation_group",
        psm.permutation_group,
        st.builds(lambda: {"name": "A5"}),
        {"name": ChoiceArg()},
    ),
    PublicFunction(
        "TransformerPSM.forward",
        lambda input_ids: transformer_psm()(input_ids),
        token_batches(),
        {"input_ids": IDS},
    ),
    PublicFunction(
        "CausalTransformerLM.forward",
        lambda input_ids: causal_lm()(input_ids),
        token_batches(),
        {"input_ids": IDS},
    ),
    PublicFunction(
        "DiagonalLinearRNNLM.forward",
        lambda input_ids: rnn_lm()(input_ids),
        token_batches(),
        {"input_ids": IDS},
    ),
]

EXEMPT = {
    "AFFINE_STEPS": "a dict of step constructors",
    "AffineSteps": "NamedTuple of (decay, increment); its tensors are checked in affine_states",
    "PSM": "the generic model built from user modules; its scans are registered (exclusive_prefix)",
    "PSMStream": "streams a PSM token by token through OnlineScanner (registered)",
    "ScanCounts": "a counter dataclass",
    "TrainConfig": "configuration dataclass; validated in __post_init__",
    "TransformerPSMConfig": "configuration dataclass; validated in __post_init__",
    "__version__": "a string",
    "build_model": "builds a model from a TrainConfig (validated there)",
    "evaluate": "runs a trained model over generated task batches (registered generators)",
    "load_checkpoint": "reads a checkpoint (safetensors); malformed files raise ArtifactError",
    "train": "a training run from a TrainConfig; its batches come from the registered generators",
}


def test_bad_inputs(bad_input_table):
    bad_input_table("psm", FUNCTIONS, assert_handles_bad_inputs(FUNCTIONS))


def test_every_public_name_is_registered_or_exempt():
    assert uncovered_names(psm, FUNCTIONS, EXEMPT) == []
