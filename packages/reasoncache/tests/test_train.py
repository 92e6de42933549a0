"""Training through the transformers Trainer: loss falls, backbone frozen, bf16, resume."""

import pytest
import torch
from reasoncache import ReasonCache, ReasonCacheConfig, TrainConfig, train_cache
from reasoncache.train import distillation_loss, tokenize_examples

from kernelkit.testing import tiny_causal_lm
from kernelkit.utils import torch_threads

EXAMPLES = [{"prompt": f"a{i}=", "completion": "xyz"[i % 3]} for i in range(8)]


def _nll(model, tokenizer, cache):
    from reasoncache.train import CachedCausalLM, pad_batch

    batch = pad_batch(tokenize_examples(tokenizer, EXAMPLES), tokenizer.pad_token_id)
    with torch.no_grad():
        return CachedCausalLM(model, cache)(**batch)["loss"].item()


def test_training_lowers_loss_and_leaves_backbone_untouched(tmp_path):
    model, tokenizer = tiny_causal_lm()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    untrained = ReasonCache(model, ReasonCacheConfig(num_slots=2, init="zeros"))
    with torch_threads(1):
        cache = train_cache(
            model,
            tokenizer,
            EXAMPLES,
            ReasonCacheConfig(num_slots=2, init="zeros"),
            TrainConfig(output_dir=str(tmp_path), max_steps=12, batch_size=8, learning_rate=5e-2),
        )
    assert _nll(model, tokenizer, cache) < _nll(model, tokenizer, untrained) - 0.2
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert (tmp_path / "manifest.json").is_file()
    assert ReasonCache.from_pretrained(tmp_path, model).num_slots == 2


def test_resume_from_checkpoint_continues_to_same_result(tmp_path):
    model, tokenizer = tiny_causal_lm()
    settings = {"max_steps": 4, "batch_size": 4, "save_steps": 2, "learning_rate": 1e-2}
    with torch_threads(1):
        full = train_cache(
            model,
            tokenizer,
            EXAMPLES,
            ReasonCacheConfig(num_slots=2),
            TrainConfig(output_dir=str(tmp_path / "a"), **settings),
        )
        train_cache(
            model,
            tokenizer,
            EXAMPLES,
            ReasonCacheConfig(num_slots=2),
            TrainConfig(output_dir=str(tmp_path / "b"), **settings),
        )
        resumed = train_cache(
            model,
            tokenizer,
            EXAMPLES,
            ReasonCacheConfig(num_slots=2),
            TrainConfig(output_dir=str(tmp_path / "b"), **settings),
            resume_from_checkpoint=str(tmp_path / "b" / "checkpoint-2"),
        )
    for a, b in zip(full.key_values(), resumed.key_values(), strict=True):
        torch.testing.assert_close(a[0], b[0], atol=1e-6, rtol=0)


def test_bf16_backbone_trains_fp32_masters():
    from reasoncache import forward_with_cache

    model, tokenizer = tiny_causal_lm()
    model = model.to(torch.bfloat16)
    cache = ReasonCache(model, ReasonCacheConfig(num_slots=3, init="random"))
    optimizer = torch.optim.AdamW(cache.parameters(), lr=5e-2)
    batch = tokenizer(["abcabcabc"], return_tensors="pt", add_special_tokens=False)
    model.requires_grad_(False)
    losses = []
    for _ in range(15):
        out = forward_with_cache(model, cache, batch.input_ids, labels=batch.input_ids)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        losses.append(out.loss.item())
    assert all(p.dtype == torch.float32 for p in cache.parameters())
    assert cache.key_values(dtype=torch.bfloat16)[0][0].dtype == torch.bfloat16
    assert losses[-1] < losses[0]


def test_distillation_loss_is_minimised_by_the_teacher():
    teacher = torch.randn(2, 5, 11)
    labels = torch.ones(2, 5, dtype=torch.long)
    at_teacher = distillation_loss(teacher, teacher, labels, top_k=11)
    entropy = -(teacher.softmax(-1) * teacher.log_softmax(-1)).sum(-1)[:, :-1].mean()
    torch.testing.assert_close(at_teacher, entropy)
    assert distillation_loss(torch.randn(2, 5, 11), teacher, labels, top_k=11) > at_teacher


def test_bad_training_inputs():
    with pytest.raises(ValueError, match="distill_weight"):
        TrainConfig(distill_weight=2.0)
    with pytest.raises(ValueError, match="completion"):
        tokenize_examples(tiny_causal_lm()[1], [{"prompt": "a"}])
    model, tokenizer = tiny_causal_lm()
    with pytest.raises(ValueError, match="demonstrations"):
        train_cache(model, tokenizer, EXAMPLES, ReasonCacheConfig(init="text"))


def test_expressivity_toy_shows_both_limits():
    from reasoncache.expressivity import ExpressivityConfig, run_expressivity

    with torch_threads(1):
        toy = run_expressivity(
            ExpressivityConfig(num_contexts=64, steps=150), lora_ranks=(4,), prefix_slots=(4,)
        )
    assert toy["rank1_prefix_teacher"]["prefix_m4"] < 0.2 < toy["rank1_prefix_teacher"]["lora_r4"]
    assert toy["qk_lora_teacher"]["lora_r4"] < 0.2 < toy["qk_lora_teacher"]["prefix_m4"]


def test_recall_sequences_follow_their_map():
    from reasoncache.recall import RecallConfig, RecallTask

    task = RecallTask(RecallConfig())
    generator = torch.Generator().manual_seed(0)
    maps = task.random_maps(3, generator)
    tokens = task.sequences(maps, 5, generator)
    keys, values = tokens[:, 1::2] - 1, tokens[:, 2::2] - 1 - task.config.num_keys
    assert torch.equal(maps.gather(1, keys), values)


def test_cli_train_generate_round_trip(tmp_path, capsys):
    import json

    from reasoncache.cli import main

    model, tokenizer = tiny_causal_lm()
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    data = tmp_path / "train.jsonl"
    data.write_text("\n".join(json.dumps(e) for e in EXAMPLES), encoding="utf-8")
    out = tmp_path / "run"
    common = ["--model", str(tmp_path / "model")]
    with torch_threads(1):
        assert (
            main(
                [
                    "train",
                    *common,
                    "--examples",
                    str(data),
                    "--num-slots",
                    "2",
                    "--max-steps",
                    "2",
                    "--output-dir",
                    str(out),
                ]
            )
            == 0
        )
        assert (
            main(
                [
                    "generate",
                    *common,
                    "--cache",
                    str(out),
                    "--prompt",
                    "a1=",
                    "--max-new-tokens",
                    "2",
                ]
            )
            == 0
        )
        assert (
            main(
                [
                    "eval",
                    *common,
                    "--cache",
                    str(out),
                    "--examples",
                    str(data),
                    "--max-new-tokens",
                    "1",
                ]
            )
            == 0
        )
    assert '"accuracy"' in capsys.readouterr().out
    with pytest.raises(ValueError, match="num_slots"):
        main(["train", *common, "--examples", str(data), "--num-slots", "0"])


def test_shipped_recall_fixture_does_in_context_learning():
    """The shipped pretrained recall model (package data) reads unseen maps from its context.

    Threshold: mean accuracy >= 0.8 with 16 demonstrations over 4 fresh maps (chance is
    1 / num_values = 0.25 for the shipped 4-key/4-value config); runs in about a second.
    """
    from reasoncache.recall import (
        RecallTask,
        icl_accuracy,
        load_pretrained_recall_model,
        shipped_recall_model_path,
    )

    assert shipped_recall_model_path().is_dir()
    with torch_threads(1):
        model, config = load_pretrained_recall_model()
        task = RecallTask(config)
        generator = torch.Generator().manual_seed(1234)
        accuracies = [
            icl_accuracy(model, task, task.random_maps(1, generator)[0], 16, generator, trials=8)
            for _ in range(4)
        ]
    chance = 1 / config.num_values
    assert chance == 0.25
    assert sum(accuracies) / len(accuracies) >= 0.8
