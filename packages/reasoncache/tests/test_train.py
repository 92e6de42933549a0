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


def test_train_cache_with_gradient_checkpointing_matches_without(tmp_path):
    """TrainConfig(gradient_checkpointing=True) trains the same cache as without (same seed)."""
    settings = {"max_steps": 3, "batch_size": 8, "learning_rate": 5e-2}
    caches = []
    with torch_threads(1):
        for checkpointing in (False, True):
            model, tokenizer = tiny_causal_lm()
            caches.append(
                train_cache(
                    model,
                    tokenizer,
                    EXAMPLES,
                    ReasonCacheConfig(num_slots=2),
                    TrainConfig(
                        output_dir=str(tmp_path / str(checkpointing)),
                        gradient_checkpointing=checkpointing,
                        **settings,
                    ),
                )
            )
    assert model.config._attn_implementation.startswith("reasoncache_")
    untrained = ReasonCache(model, ReasonCacheConfig(num_slots=2))
    for plain, checkpointed, start in zip(
        caches[0].keys, caches[1].keys, untrained.keys, strict=True
    ):
        assert not torch.equal(plain, start)
        torch.testing.assert_close(checkpointed, plain, atol=1e-5, rtol=1e-4)


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


def test_distillation_loss_is_the_top_k_kl():
    teacher = torch.randn(2, 5, 11)
    labels = torch.ones(2, 5, dtype=torch.long)
    # With k = vocabulary size it is the exact KL: zero at the teacher, positive elsewhere.
    assert distillation_loss(teacher, teacher, labels, top_k=11).abs() < 1e-6
    student = torch.randn(2, 5, 11)
    exact = (
        torch.nn.functional.kl_div(
            student[:, :-1].log_softmax(-1),
            teacher[:, :-1].log_softmax(-1),
            log_target=True,
            reduction="none",
        )
        .sum(-1)
        .mean()
    )
    torch.testing.assert_close(distillation_loss(student, teacher, labels, top_k=11), exact)
    assert distillation_loss(student, teacher, labels, top_k=3) >= 0


def test_train_cache_distils_the_in_context_teacher(tmp_path):
    """train_cache with distillation: the loss it optimises is the top-k KL to the same model
    with the demonstrations *as text in context* (computed here by hand on the first batch),
    the KL falls, and gradients reach only the trainable cache."""
    import copy

    from reasoncache import forward_with_cache
    from transformers import TrainerCallback

    model, tokenizer = tiny_causal_lm()
    demonstrations = "a0=x\na1=y\na2=z\na3=x\n"
    top_k = 5
    with torch_threads(1):
        initial = ReasonCache(model, ReasonCacheConfig(num_slots=4, init="random"))
        init_copy = copy.deepcopy(initial)
        logs, gradient_owners = [], []

        class Record(TrainerCallback):
            def on_log(self, args, state, control, logs=None, **kwargs):
                if logs and "distill_kl" in logs:
                    record.append(dict(logs))

            def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
                gradient_owners.append(
                    {n.split(".")[0] for n, p in model.named_parameters() if p.grad is not None}
                )

        record = logs
        cache = train_cache(
            model,
            tokenizer,
            EXAMPLES,
            ReasonCacheConfig(num_slots=4),
            TrainConfig(
                output_dir=str(tmp_path),
                max_steps=6,
                batch_size=len(EXAMPLES),
                learning_rate=5e-2,
                logging_steps=1,
                distill_weight=1.0,
                distill_top_k=top_k,
            ),
            demonstrations=demonstrations,
            init_cache=initial,
            callbacks=[Record()],
        )

        demo = tokenizer(demonstrations, add_special_tokens=False)["input_ids"]
        kls = []
        with torch.no_grad():
            for row in tokenize_examples(tokenizer, EXAMPLES):
                ids = torch.tensor([row["input_ids"]])
                teacher = model(input_ids=torch.tensor([demo + row["input_ids"]])).logits
                teacher = teacher[0, len(demo) : -1]
                student = forward_with_cache(model, init_copy, ids).logits[0, :-1]
                for position in range(len(row["labels"]) - 1):
                    if row["labels"][position + 1] == -100:
                        continue
                    values, index = teacher[position].topk(top_k)
                    p_teacher = values.log_softmax(-1)
                    log_student = student[position].log_softmax(-1)[index]
                    kls.append((p_teacher.exp() * (p_teacher - log_student)).sum())
    by_hand = torch.stack(kls).mean().item()
    assert len(logs) == 6
    assert logs[0]["distill_kl"] == pytest.approx(by_hand, abs=1e-5)
    assert logs[0]["loss"] == pytest.approx(by_hand, abs=1e-5)  # weight 1: the KL is the loss
    assert logs[-1]["distill_kl"] < logs[0]["distill_kl"]
    assert gradient_owners and all(owners == {"cache"} for owners in gradient_owners)
    assert not torch.equal(cache.keys[0], init_copy.keys[0])


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
    printed = capsys.readouterr().out.splitlines()
    assert printed[-2] == f"cache saved to {out}" and len(printed[-1]) > 0  # 2 generated bytes
    assert main(["train", *common, "--examples", str(data), "--num-slots", "0"]) == 2
    last = capsys.readouterr().err.splitlines()[-1]  # after the weight-loading bar
    assert last == "reasoncache: error: num_slots (m) must be > 0, got 0"
    with pytest.raises(ValueError, match="num_slots"):
        main(["train", *common, "--examples", str(data), "--num-slots", "0", "--debug"])


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
