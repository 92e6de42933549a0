"""seqtopk's public functions under kernelkit's bad-input harness (kernelkit.testing_inputs)."""

import functools

import seqtopk
import torch
from hypothesis import strategies as st

from kernelkit.testing import (
    ChoiceArg,
    CountArg,
    IdsArg,
    PublicFunction,
    TensorArg,
    assert_handles_bad_inputs,
    tensors,
    tiny_causal_lm,
    uncovered_names,
)

EXPERTS = 4
FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


@st.composite
def routing_inputs(draw):
    batch, length = draw(st.integers(1, 3)), draw(st.integers(1, 6))
    probs = draw(tensors(shape=(batch, length, EXPERTS), min_value=0, max_value=1))
    mask = torch.ones(batch, length, dtype=torch.long)
    mask[:, : draw(st.integers(0, length - 1))] = 0  # left padding, one real token at least
    return {"probs": probs, "k": draw(st.integers(1, 2)), "attention_mask": mask}


def select_bounds(kw):
    return {**kw, "min_per_token": 1, "max_per_token": min(kw["k"] + 1, EXPERTS)}


def _selection_and_valid(result, kwargs):
    selected = result[0] if isinstance(result, tuple) else result
    mask = kwargs["attention_mask"]
    valid = torch.ones(selected.shape[:2], dtype=torch.bool) if mask is None else mask.bool()
    if selected.dtype != torch.bool:
        raise AssertionError(f"the selection is {selected.dtype}, not bool")
    counts = selected.sum(-1)
    if counts[~valid].any():
        raise AssertionError("a padding token was routed")
    low, high = seqtopk.resolve_bounds(
        kwargs["k"], selected.shape[-1], kwargs["min_per_token"], kwargs["max_per_token"]
    )[1:]
    if ((counts[valid] < low) | (counts[valid] > high)).any():
        raise AssertionError(f"a token's expert count is outside [{low}, {high}]")
    return counts, valid


def budget_spent(result, kwargs):
    """Offline: each sequence spends exactly k per valid token, within the per-token bounds."""
    counts, valid = _selection_and_valid(result, kwargs)
    if not torch.equal(counts.sum(1), valid.sum(1) * kwargs["k"]):
        raise AssertionError(f"spent {counts.sum(1).tolist()}, budget k * valid tokens")


def budget_respected(result, kwargs):
    """Online: no prefix spends more than k per valid token seen so far."""
    counts, valid = _selection_and_valid(result, kwargs)
    if (counts.cumsum(1) > valid.cumsum(1) * kwargs["k"]).any():
        raise AssertionError("a prefix spent more than k per valid token")


ROUTING = {
    "probs": TensorArg(dtypes=FLOATS, ndim=3),
    "k": CountArg(low=1, high=EXPERTS),
    "attention_mask": IdsArg(high=2, ndim=2, optional=True, float_ok=True),
    "min_per_token": CountArg(low=0, high=lambda kw: kw["k"]),
    "max_per_token": CountArg(low=lambda kw: kw["k"], high=EXPERTS, optional=True),
}


@st.composite
def selections(draw):
    tokens = draw(st.integers(1, 5))
    selected = torch.zeros(tokens, EXPERTS, dtype=torch.bool)
    for row in range(tokens):
        selected[row, draw(st.permutations(range(EXPERTS)))[: draw(st.integers(0, 2))]] = True
    return {
        "selected": selected,
        "weights": draw(tensors(shape=(tokens, EXPERTS), min_value=0, max_value=1)),
    }


SELECTED = TensorArg(dtypes=(torch.bool,), ndim=(2, 3))


@functools.cache
def tiny_olmoe():
    model, _ = tiny_causal_lm("olmoe", num_experts=EXPERTS, num_experts_per_tok=2)
    return model


def patched_logits(k, mode, min_per_token, max_per_token):
    model = seqtopk.patch(
        tiny_olmoe(), k=k, mode=mode, min_per_token=min_per_token, max_per_token=max_per_token
    )
    try:
        with torch.no_grad():
            return model(torch.tensor([[1, 2, 3]])).logits
    finally:
        seqtopk.unpatch(model)


FUNCTIONS = [
    PublicFunction(
        "select_experts",
        lambda impl, **kw: seqtopk.select_experts(**kw, impl=impl),
        routing_inputs().map(lambda kw: {**select_bounds(kw), "impl": "torch"}),
        {**ROUTING, "impl": ChoiceArg()},
        postcondition=budget_spent,
    ),
    PublicFunction(
        "select_experts_reference",
        seqtopk.select_experts_reference,
        routing_inputs().map(select_bounds),
        ROUTING,
        postcondition=budget_spent,
    ),
    PublicFunction(
        "online_select",
        lambda impl, **kw: seqtopk.online_select(**kw, impl=impl),
        routing_inputs().map(lambda kw: {**select_bounds(kw), "impl": "torch"}),
        {**ROUTING, "impl": ChoiceArg()},
        postcondition=budget_respected,
    ),
    PublicFunction(
        "online_select_reference",
        seqtopk.online_select_reference,
        routing_inputs().map(select_bounds),
        ROUTING,
        postcondition=budget_respected,
    ),
    PublicFunction(
        "resolve_bounds",
        seqtopk.resolve_bounds,
        st.builds(lambda: {"k": 2, "num_experts": 4, "min_per_token": 1, "max_per_token": 3}),
        {
            "k": CountArg(low=1, high=lambda kw: kw["num_experts"]),
            "num_experts": CountArg(low=1),
            "min_per_token": CountArg(low=0, high=lambda kw: kw["k"]),
            "max_per_token": CountArg(
                low=lambda kw: kw["k"], high=lambda kw: kw["num_experts"], optional=True
            ),
        },
    ),
    PublicFunction(
        "routing_weights",
        lambda selected, probs, renormalize: seqtopk.routing_weights(
            probs, selected, renormalize=renormalize
        ),
        selections().map(
            lambda kw: {"selected": kw["selected"], "probs": kw["weights"], "renormalize": True}
        ),
        {"selected": SELECTED, "probs": TensorArg(dtypes=FLOATS)},
    ),
    PublicFunction(
        "selection_to_indices",
        seqtopk.selection_to_indices,
        selections().map(lambda kw: {**kw, "num_slots": 2}),
        {
            "selected": SELECTED,
            "weights": TensorArg(dtypes=FLOATS),
            "num_slots": CountArg(
                low=lambda kw: max(1, int(kw["selected"].sum(-1).max())), high=EXPERTS
            ),
        },
    ),
    PublicFunction(
        "load_balancing_loss",
        lambda probs, selected, valid: seqtopk.load_balancing_loss([(probs, selected, valid)]),
        routing_inputs().map(
            lambda kw: {
                "probs": kw["probs"],
                "selected": seqtopk.select_experts(kw["probs"], 1, kw["attention_mask"]),
                "valid": kw["attention_mask"].bool(),
            }
        ),
        {
            "probs": TensorArg(dtypes=FLOATS, ndim=3),
            "selected": TensorArg(dtypes=(torch.bool,), ndim=3),
            "valid": TensorArg(dtypes=(torch.bool,), ndim=2),
        },
    ),
    PublicFunction(
        "patch",
        patched_logits,
        st.builds(lambda: {"k": 2, "mode": "online", "min_per_token": 1, "max_per_token": 3}),
        {
            "k": CountArg(low=1, high=EXPERTS, optional=True),
            "mode": ChoiceArg(),
            "min_per_token": CountArg(low=0, high=lambda kw: kw["k"]),
            "max_per_token": CountArg(low=lambda kw: kw["k"], high=EXPERTS, optional=True),
        },
        examples=1,
    ),
]

EXEMPT = {
    "SUPPORTED_MODEL_TYPES": "a tuple of model-type names",
    "OnlineRoutingState": "the state online_select returns and takes back (registered there)",
    "__version__": "a string",
    "is_patched": "takes any module and answers a yes/no question about it",
    "numba_available": "takes no arguments; says whether the optional numba kernels import",
    "unpatch": "takes a model; undoes patch (registered), refuses a model that is not patched",
}


def test_bad_inputs(bad_input_table):
    bad_input_table("seqtopk", FUNCTIONS, assert_handles_bad_inputs(FUNCTIONS))


def test_every_public_name_is_registered_or_exempt():
    assert uncovered_names(seqtopk, FUNCTIONS, EXEMPT) == []
