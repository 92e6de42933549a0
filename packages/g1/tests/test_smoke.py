"""The offline smoke policy: a word-level tokenizer in which a random model can box an answer."""

from __future__ import annotations

import g1
from g1.smoke import SMOKE_VOCABULARY, format_rate, save_smoke_policy, smoke_tokenizer


def test_smoke_tokenizer_round_trips_boxed_answers():
    tokenizer = smoke_tokenizer()
    assert len(tokenizer) == len(SMOKE_VOCABULARY)
    ids = tokenizer("The answer is \\boxed{12} node Yes")["input_ids"]
    assert tokenizer.convert_ids_to_tokens(ids)[6:10] == ["\\boxed{", "1", "2", "}"]
    assert tokenizer.decode(ids, skip_special_tokens=True) == "   \\boxed{12} node Yes"
    assert tokenizer.padding_side == "left"
    assert tokenizer.pad_token_id != tokenizer.eos_token_id


def test_saved_smoke_policy_loads_with_auto_classes(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model, _ = save_smoke_policy(tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    assert tokenizer.convert_ids_to_tokens(tokenizer("\\boxed{No}")["input_ids"]) == [
        "\\boxed{",
        "No",
        "}",
    ]
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert loaded.config.vocab_size == len(SMOKE_VOCABULARY) == model.config.vocab_size
    assert loaded.config.eos_token_id == tokenizer.eos_token_id


def test_format_rate_is_seeded_and_nonzero_for_a_random_policy(tmp_path):
    model, tokenizer = save_smoke_policy(tmp_path)
    instances = list(g1.generate_dataset(["degree"], 4, seed=0, split="test", n_nodes=5))
    first = format_rate(model, tokenizer, instances, samples=16, seed=3)
    assert first == format_rate(model, tokenizer, instances, samples=16, seed=3)
    assert 0.0 < first < 0.5
