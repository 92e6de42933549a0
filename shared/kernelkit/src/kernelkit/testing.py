"""Test helpers shared by every package: closeness checks, hypothesis strategies, tiny models,
and the bad-input harness (:mod:`kernelkit.testing_inputs`, re-exported here).

Needs the ``testing`` extra (hypothesis, networkx, transformers); each import happens inside the
function that uses it, so ``import kernelkit.testing`` itself needs only torch.
"""

from __future__ import annotations

from typing import Any

import torch

from kernelkit.testing_inputs import (
    CallableArg,
    ChoiceArg,
    CountArg,
    GraphArg,
    IdsArg,
    PublicFunction,
    RealArg,
    Tally,
    TensorArg,
    assert_handles_bad_inputs,
    call_with_timeout,
    check_bad_inputs,
    uncovered_names,
)

__all__ = [
    "DEFAULT_TOLERANCES",
    "CallableArg",
    "ChoiceArg",
    "CountArg",
    "GraphArg",
    "IdsArg",
    "PublicFunction",
    "RealArg",
    "Tally",
    "TensorArg",
    "assert_close",
    "assert_handles_bad_inputs",
    "call_with_timeout",
    "check_bad_inputs",
    "graphs",
    "shapes",
    "tensors",
    "tiny_causal_lm",
    "tiny_sequence_classifier",
    "tolerances",
    "uncovered_names",
]

# (rtol, atol) per dtype: a few units in the last place of a value of order one, scaled for
# reductions of modest length. Half precisions get the tolerances torch itself uses.
DEFAULT_TOLERANCES: dict[torch.dtype, tuple[float, float]] = {
    torch.float16: (1e-3, 1e-5),
    torch.bfloat16: (1.6e-2, 1e-5),
    torch.float32: (1.3e-6, 1e-5),
    torch.float64: (1e-7, 1e-10),
    torch.complex64: (1.3e-6, 1e-5),
    torch.complex128: (1e-7, 1e-10),
}


def tolerances(dtype: torch.dtype) -> tuple[float, float]:
    """The default ``(rtol, atol)`` for ``dtype``; exact (0, 0) for integer and bool dtypes."""
    return DEFAULT_TOLERANCES.get(dtype, (0.0, 0.0))


def assert_close(
    actual: Any,
    expected: Any,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    msg: str | None = None,
) -> None:
    """``torch.testing.assert_close`` with tolerances taken from the coarser of the two dtypes.

    Shapes and dtypes must agree exactly (dtype coercion hides bugs in mixed-precision paths);
    non-tensor inputs are converted with ``torch.as_tensor``.
    """
    actual_t = actual if isinstance(actual, torch.Tensor) else torch.as_tensor(actual)
    expected_t = expected if isinstance(expected, torch.Tensor) else torch.as_tensor(expected)
    coarse = max((tolerances(actual_t.dtype), tolerances(expected_t.dtype)), key=lambda t: t[0])
    torch.testing.assert_close(
        actual_t,
        expected_t,
        rtol=coarse[0] if rtol is None else rtol,
        atol=coarse[1] if atol is None else atol,
        equal_nan=True,
        msg=msg,
    )


def shapes(*, min_dims: int = 1, max_dims: int = 3, min_side: int = 0, max_side: int = 8):
    """Hypothesis strategy for tensor shapes (tuples of ints)."""
    from hypothesis import strategies as st

    return st.lists(st.integers(min_side, max_side), min_size=min_dims, max_size=max_dims).map(
        tuple
    )


def tensors(
    *,
    shape=None,
    dtype: torch.dtype = torch.float32,
    min_value: float = -10.0,
    max_value: float = 10.0,
    allow_nan: bool = False,
    allow_infinity: bool = False,
    distinct_values: int | None = None,
):
    """Hypothesis strategy for torch tensors.

    ``shape`` is a tuple or a strategy of tuples (default :func:`shapes`). Floating tensors hold
    values in ``[min_value, max_value]``; ``distinct_values=n`` draws from ``n`` evenly spaced
    values only, which makes ties common (useful for tie-breaking tests).
    """
    import numpy as np
    from hypothesis import strategies as st
    from hypothesis.extra import numpy as hnp

    if shape is None:
        shape = shapes()
    shape_strategy = shape if isinstance(shape, st.SearchStrategy) else st.just(tuple(shape))
    np_dtype = torch.empty((), dtype=dtype).numpy().dtype if dtype != torch.bfloat16 else np.float32

    if dtype.is_floating_point:
        if distinct_values is not None:
            grid = np.linspace(min_value, max_value, distinct_values).tolist()
            elements = st.sampled_from(grid)
        else:
            width = 32 if dtype in (torch.float16, torch.bfloat16, torch.float32) else 64
            elements = st.floats(
                min_value,
                max_value,
                allow_nan=allow_nan,
                allow_infinity=allow_infinity,
                width=width,
            )
    elif dtype == torch.bool:
        elements = st.booleans()
    else:
        elements = st.integers(int(min_value), int(max_value))

    def build(array):
        return torch.from_numpy(np.ascontiguousarray(array)).to(dtype)

    return shape_strategy.flatmap(lambda s: hnp.arrays(np_dtype, s, elements=elements)).map(build)


def graphs(
    *,
    min_nodes: int = 1,
    max_nodes: int = 12,
    directed: bool = False,
    connected: bool = False,
    weighted: bool = False,
    self_loops: bool = False,
    edge_probability: float | None = None,
):
    """Hypothesis strategy for networkx graphs on nodes ``0..n-1``.

    Edges are drawn independently (with ``edge_probability`` if given, else a drawn density);
    ``connected=True`` adds a random spanning tree first (undirected graphs only), ``weighted``
    puts an integer ``weight`` in 1..9 on every edge.
    """
    import networkx as nx
    from hypothesis import strategies as st

    if connected and directed:
        raise ValueError(
            "connected=True is defined here for undirected graphs only; got directed=True"
        )

    @st.composite
    def build(draw):
        n = draw(st.integers(min_nodes, max_nodes))
        graph = nx.DiGraph() if directed else nx.Graph()
        graph.add_nodes_from(range(n))
        if connected:
            for node in range(1, n):
                graph.add_edge(node, draw(st.integers(0, node - 1)))
        p = edge_probability if edge_probability is not None else draw(st.floats(0.0, 1.0))
        pairs = [
            (u, v)
            for u in range(n)
            for v in range(n)
            if (u != v or self_loops) and (directed or u <= v)
        ]
        for u, v in pairs:
            if draw(st.floats(0.0, 1.0)) < p:
                graph.add_edge(u, v)
        if weighted:
            for u, v in graph.edges:
                graph.edges[u, v]["weight"] = draw(st.integers(1, 9))
        return graph

    return build()


def _tiny_config(model_type: str, tokenizer, overrides: dict[str, Any]):
    from transformers import AutoConfig

    fields: dict[str, Any] = {
        "vocab_size": len(tokenizer),
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 512,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "bos_token_id": None,
        "tie_word_embeddings": False,
    }
    fields.update(overrides)
    return AutoConfig.for_model(model_type, **fields)


def _seeded_from_config(auto_class, config, seed: int):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = auto_class.from_config(config, dtype=torch.float32)
    model.eval()
    return model


def tiny_causal_lm(model_type: str = "llama", *, seed: int = 0, **overrides: Any):
    """A randomly initialised small causal LM and a tokenizer that needs no downloaded files.

    The default is a 2-layer Llama-style model with grouped-query attention (4 query heads, 2 KV
    heads), hidden size 64, over ByT5's byte-level vocabulary (384 ids), in float32 and eval mode.
    ``model_type`` is any transformers causal-LM model type (``"llama"``, ``"qwen2"``,
    ``"mistral"``, ``"olmoe"``, ...); ``overrides`` replace config fields. Returns
    ``(model, tokenizer)``; the tokenizer pads on the left, as generation wants.
    """
    from transformers import AutoModelForCausalLM, ByT5Tokenizer

    tokenizer = ByT5Tokenizer()
    tokenizer.padding_side = "left"
    config = _tiny_config(model_type, tokenizer, overrides)
    return _seeded_from_config(AutoModelForCausalLM, config, seed), tokenizer


def tiny_sequence_classifier(
    model_type: str = "llama", *, num_labels: int = 1, seed: int = 0, **overrides: Any
):
    """Like :func:`tiny_causal_lm`, with a sequence-classification head (a reward model when
    ``num_labels=1``). The tokenizer pads on the right; the model pools the last non-pad token.
    Returns ``(model, tokenizer)``.
    """
    from transformers import AutoModelForSequenceClassification, ByT5Tokenizer

    tokenizer = ByT5Tokenizer()
    config = _tiny_config(model_type, tokenizer, {"num_labels": num_labels, **overrides})
    return _seeded_from_config(AutoModelForSequenceClassification, config, seed), tokenizer
