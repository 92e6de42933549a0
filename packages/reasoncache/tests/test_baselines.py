"""Baselines in the cache's harness: matched LoRA, ICL prompts/positions, costs, the eval CLI."""

import json

import pytest
import torch
from reasoncache import ReasonCache, ReasonCacheConfig, TrainConfig, cache_from_text
from reasoncache.baselines import (
    CacheMethod,
    ICLMethod,
    ModelMethod,
    evaluate,
    format_demonstrations,
    lora_parameter_count,
    match_lora_to_cache,
    train_lora,
)

from kernelkit.testing import assert_close, tiny_causal_lm
from kernelkit.utils import torch_threads

EXAMPLES = [{"prompt": f"a{i}=", "completion": "xyz"[i % 3] + "!" * (i % 2)} for i in range(6)]


@pytest.fixture(scope="module")
def lm():
    return tiny_causal_lm()


@pytest.mark.parametrize("slots", [1, 3, 8, 40])
@pytest.mark.parametrize(
    "targets", [("q_proj", "v_proj"), ("q_proj", "k_proj", "v_proj", "o_proj")]
)
def test_lora_match_counts_are_the_real_counts_and_closest(lm, slots, targets):
    from peft import get_peft_model

    model, _ = lm
    match = match_lora_to_cache(model, slots, targets)
    cache = ReasonCache(model, ReasonCacheConfig(num_slots=slots))
    assert match.cache_parameters == cache.num_trainable_parameters()
    peft_model = get_peft_model(tiny_causal_lm()[0], match.lora_config())
    assert match.lora_parameters == sum(
        p.numel() for p in peft_model.parameters() if p.requires_grad
    )
    per_rank = lora_parameter_count(model, 1, targets)
    # No other rank >= 1 is closer to the cache's count.
    best = min(range(1, 64), key=lambda r: (abs(r * per_rank - match.cache_parameters), r))
    assert abs(match.lora_parameters - match.cache_parameters) == abs(
        best * per_rank - match.cache_parameters
    )
    assert match.relative_gap == pytest.approx(
        (match.lora_parameters - match.cache_parameters) / match.cache_parameters
    )


def test_lora_match_refuses_bad_inputs(lm):
    model, _ = lm
    with pytest.raises(ValueError, match=r"match no nn\.Linear"):
        match_lora_to_cache(model, 4, ("not_a_module",))
    with pytest.raises(ValueError, match="num_slots"):
        match_lora_to_cache(model, 0)


def test_icl_batches_equal_each_prompt_alone_and_count_context(lm):
    """ICL prepends the demonstrations to every query; left padding with positions from the mask
    gives the logits of each (demonstrations + query) run alone, unpadded."""
    model, tokenizer = lm
    demo_text = format_demonstrations(EXAMPLES, 3)
    assert demo_text == "a0=x\na1=y!\na2=z\n"
    demo = torch.tensor(tokenizer(demo_text, add_special_tokens=False)["input_ids"])
    method = ICLMethod(model, demo)
    queries = [{"prompt": "a4=", "completion": "y"}, {"prompt": "longer a5=", "completion": "z!"}]
    rows = [
        tokenizer(q["prompt"] + q["completion"], add_special_tokens=False)["input_ids"]
        for q in queries
    ]
    length = max(len(r) for r in rows) + len(demo)
    ids = torch.zeros(2, length, dtype=torch.long)
    mask = torch.zeros(2, length, dtype=torch.long)
    for i, row in enumerate(rows):
        full = demo.tolist() + row
        ids[i, length - len(full) :] = torch.tensor(full)
        mask[i, length - len(full) :] = 1
    assert mask.min() == 0, "the batch must exercise left padding"
    with torch.no_grad():
        batched = method.logits(ids, mask)
        for i, row in enumerate(rows):
            alone = model(input_ids=torch.cat([demo, torch.tensor(row)])[None]).logits[0]
            assert_close(batched[i, mask[i].bool()], alone, atol=1e-5, rtol=0)
    result = evaluate(method, queries, tokenizer, flop_queries=0)
    prompts = [len(tokenizer(q["prompt"], add_special_tokens=False)["input_ids"]) for q in queries]
    assert result.context_tokens == len(demo) + sum(prompts) / 2
    assert result.kv_entries == result.context_tokens
    assert result.trained_parameters == 0


def test_icl_and_cache_of_the_same_text_score_identically(lm):
    """Same harness, same scoring: ICL with a text and a cache of that text's KV agree."""
    model, tokenizer = lm
    demo = torch.tensor(
        tokenizer(format_demonstrations(EXAMPLES, 4), add_special_tokens=False)["input_ids"]
    )
    icl = evaluate(ICLMethod(model, demo), EXAMPLES, tokenizer, batch_size=4, flop_queries=0)
    cache = cache_from_text(model, demo)
    cached = evaluate(CacheMethod(model, cache), EXAMPLES, tokenizer, batch_size=4, flop_queries=0)
    assert cached.accuracy == icl.accuracy
    assert cached.nll == pytest.approx(icl.nll, abs=1e-5)
    assert cached.kv_entries == icl.kv_entries  # m = len(demo) slots replace the demo tokens
    assert cached.context_tokens == icl.context_tokens - len(demo)


def test_accuracy_is_exact_match_of_the_completion(lm):
    """A query counts only when every completion token is the argmax (teacher forcing)."""
    model, tokenizer = lm
    prompt = "q="
    with torch.no_grad():
        ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        first = model(input_ids=torch.tensor([ids])).logits[0, -1].argmax().item()
        second = model(input_ids=torch.tensor([[*ids, first]])).logits[0, -1].argmax().item()
    greedy = {"input_ids": [*ids, first, second], "labels": [-100] * len(ids) + [first, second]}
    wrong_second = dict(greedy, labels=[*greedy["labels"][:-1], (second + 1) % 256])
    wrong_second["input_ids"] = [*ids, first, (second + 1) % 256]
    result = evaluate(ModelMethod(model), [greedy, wrong_second], flop_queries=0)
    assert result.accuracy == 0.5


def test_flops_follow_the_documented_formula(lm):
    """FLOPs = 2·n·W + 4·L·H·d_h·n·(M + n) (W: sum of in·out over every linear layer)."""
    model, tokenizer = lm
    config = model.config
    weights = sum(
        m.in_features * m.out_features for m in model.modules() if hasattr(m, "in_features")
    )
    heads, head_dim, layers = config.num_attention_heads, config.head_dim, config.num_hidden_layers
    example = {"prompt": "abcd=", "completion": "xy"}
    n = 7
    for method, extra in (
        (ModelMethod(model), 0),
        (CacheMethod(model, ReasonCache(model, ReasonCacheConfig(num_slots=5))), 5),
    ):
        result = evaluate(method, [example], tokenizer, flop_queries=1)
        expected = 2 * n * weights + 4 * layers * heads * head_dim * n * (extra + n)
        assert result.flops == expected


def test_lora_trains_on_the_trainer_path_with_base_weights_frozen(lm, tmp_path):
    model, tokenizer = lm
    before = {k: v.clone() for k, v in model.state_dict().items()}
    match = match_lora_to_cache(model, 4)
    with torch_threads(1):
        peft_model = train_lora(
            model,
            tokenizer,
            EXAMPLES,
            match,
            TrainConfig(output_dir=str(tmp_path), max_steps=8, batch_size=6, learning_rate=5e-2),
        )
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    trainable = {n for n, p in peft_model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    base = {
        n.replace("base_model.model.", "").replace(".base_layer", ""): p
        for n, p in peft_model.named_parameters()
        if "lora_" not in n
    }
    assert all(torch.equal(base[k], before[k]) for k in before if k in base)
    assert len([k for k in before if k in base]) == len(before)
    lora_b = [p for n, p in peft_model.named_parameters() if "lora_B" in n]
    assert any(p.abs().sum() > 0 for p in lora_b), "B starts at zero; training must move it"
    assert (tmp_path / "adapter_model.safetensors").is_file()
    assert ModelMethod(peft_model).trained_parameters == match.lora_parameters
    with pytest.raises(ValueError, match="distill"):
        train_lora(model, tokenizer, EXAMPLES, match, TrainConfig(distill_weight=0.5))


def test_cli_eval_runs_cache_icl_and_lora_in_one_harness(tmp_path, capsys):
    from reasoncache.cli import main

    model, tokenizer = tiny_causal_lm()
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    data = tmp_path / "data.jsonl"
    data.write_text("\n".join(json.dumps(e) for e in EXAMPLES), encoding="utf-8")
    common = ["--model", str(tmp_path / "model")]
    train = ["train", *common, "--examples", str(data), "--num-slots", "4", "--max-steps", "2"]
    evaluate_cmd = ["eval", *common, "--examples", str(data), "--flop-queries", "2"]
    with torch_threads(1):
        assert main([*train, "--output-dir", str(tmp_path / "cache")]) == 0
        assert main([*train, "--method", "lora", "--output-dir", str(tmp_path / "lora")]) == 0
        capsys.readouterr()
        results = {}
        for method, extra in (
            ("cache", ["--cache", str(tmp_path / "cache")]),
            ("lora", ["--lora", str(tmp_path / "lora")]),
            ("icl", ["--demonstrations", str(data), "--num-demonstrations", "3"]),
        ):
            assert main([*evaluate_cmd, "--method", method, *extra]) == 0
            results[method] = json.loads(capsys.readouterr().out)
    prompt_tokens = sum(len(e["prompt"]) for e in EXAMPLES) / len(EXAMPLES)  # bytes = tokens
    demo_tokens = len(format_demonstrations(EXAMPLES, 3))
    assert results["cache"]["kv_entries"] == 4 + prompt_tokens
    assert results["lora"]["kv_entries"] == prompt_tokens
    assert results["icl"]["context_tokens"] == demo_tokens + prompt_tokens
    assert results["lora"]["trained_parameters"] == match_lora_to_cache(model, 4).lora_parameters
    assert results["icl"]["flops"] > results["cache"]["flops"] > 0
    for result in results.values():
        assert 0.0 <= result["accuracy"] <= 1.0 and result["num_queries"] == len(EXAMPLES)
    assert main([*evaluate_cmd, "--method", "cache"]) == 2
    last = capsys.readouterr().err.splitlines()[-1]  # after the weight-loading bar
    assert last == "reasoncache: error: --method cache needs --cache"


def test_lora_resume_from_checkpoint_continues_to_same_result(lm, tmp_path):
    model, tokenizer = lm
    match = match_lora_to_cache(model, 4)
    settings = {"max_steps": 4, "batch_size": 3, "save_steps": 2, "learning_rate": 1e-2}
    with torch_threads(1):
        full = train_lora(
            model,
            tokenizer,
            EXAMPLES,
            match,
            TrainConfig(output_dir=str(tmp_path / "a"), **settings),
        )
        train_lora(
            model,
            tokenizer,
            EXAMPLES,
            match,
            TrainConfig(output_dir=str(tmp_path / "b"), **settings),
        )
        resumed = train_lora(
            model,
            tokenizer,
            EXAMPLES,
            match,
            TrainConfig(output_dir=str(tmp_path / "b"), **settings),
            resume_from_checkpoint=str(tmp_path / "b" / "checkpoint-2"),
        )
    full_state = {n: p for n, p in full.named_parameters() if "lora_" in n}
    resumed_state = {n: p for n, p in resumed.named_parameters() if "lora_" in n}
    assert full_state.keys() == resumed_state.keys() and full_state
    for name, value in full_state.items():
        assert_close(resumed_state[name], value, atol=1e-6, rtol=0)
