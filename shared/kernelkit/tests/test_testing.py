import networkx as nx
import pytest
import torch
from hypothesis import given

from kernelkit.testing import assert_close, graphs, shapes, tensors, tiny_causal_lm, tolerances


@given(
    tensors(
        shape=shapes(min_dims=1, max_dims=3, max_side=5),
        dtype=torch.float64,
        min_value=-2,
        max_value=3,
    )
)
def test_tensor_strategy_respects_bounds(x):
    assert x.dtype == torch.float64 and x.ndim in (1, 2, 3)
    assert bool(torch.isfinite(x).all()) and bool((x >= -2).all()) and bool((x <= 3).all())


@given(tensors(shape=(50,), distinct_values=3, min_value=0, max_value=1))
def test_distinct_values_makes_ties(x):
    assert set(x.tolist()) <= {0.0, 0.5, 1.0}


@given(graphs(min_nodes=2, max_nodes=9, connected=True, weighted=True))
def test_graph_strategy(graph):
    assert sorted(graph.nodes) == list(range(graph.number_of_nodes()))
    assert nx.is_connected(graph)
    assert all(1 <= w <= 9 for _, _, w in graph.edges(data="weight"))


@given(graphs(max_nodes=6, directed=True))
def test_directed_graphs_have_no_self_loops_by_default(graph):
    assert graph.is_directed() and nx.number_of_selfloops(graph) == 0


def test_assert_close_uses_dtype_tolerances():
    x = torch.ones(3, dtype=torch.float64)
    assert_close(x + 1e-12, x)
    with pytest.raises(AssertionError):
        assert_close(x + 1e-6, x)
    assert_close(torch.ones(3) + 1e-7, torch.ones(3))
    with pytest.raises(AssertionError):
        assert_close(torch.ones(3), torch.ones(3, dtype=torch.float64))  # dtypes must agree
    assert tolerances(torch.int64) == (0.0, 0.0)


def test_tiny_causal_lm_is_gqa_and_generates(tmp_path):
    model, tokenizer = tiny_causal_lm()
    assert model.config.num_key_value_heads < model.config.num_attention_heads
    batch = tokenizer(["graph", "a longer prompt"], return_tensors="pt", padding=True)
    assert batch["attention_mask"][0, 0] == 0  # left padding
    out = model.generate(**batch, max_new_tokens=4, do_sample=False)
    assert out.shape == (2, batch["input_ids"].shape[1] + 4)
    # Same seed, same weights; a local directory round trip works offline.
    again, _ = tiny_causal_lm()
    assert all(
        torch.equal(p, q) for p, q in zip(model.parameters(), again.parameters(), strict=True)
    )
    model.save_pretrained(tmp_path)
    from transformers import AutoModelForCausalLM

    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    with torch.no_grad():
        assert_close(loaded(**batch).logits, model(**batch).logits)


def test_tiny_causal_lm_overrides():
    model, _ = tiny_causal_lm("qwen2", num_hidden_layers=1, num_key_value_heads=1)
    assert type(model).__name__ == "Qwen2ForCausalLM" and model.config.num_hidden_layers == 1


def test_tiny_sequence_classifier_scores_one_reward_per_sequence():
    from kernelkit.testing import tiny_sequence_classifier

    model, tokenizer = tiny_sequence_classifier(num_hidden_layers=1)
    batch = tokenizer(["a", "a longer text"], return_tensors="pt", padding=True)
    assert tokenizer.padding_side == "right" and model.config.num_labels == 1
    with torch.no_grad():
        scores = model(**batch).logits
    assert scores.shape == (2, 1) and bool(torch.isfinite(scores).all())
    # Padding must not change a sequence's score: the head pools the last real token.
    with torch.no_grad():
        alone = model(**tokenizer(["a"], return_tensors="pt")).logits
    assert_close(alone[0], scores[0])
