import pytest
import torch
from faro import (
    FaroConfig,
    ProxyGDATrainer,
    certify,
    evaluate,
    make_constraint,
    score_pairs,
    synthetic_text_preferences,
)
from transformers import AutoModelForSequenceClassification, ByT5Tokenizer
from trl import RewardConfig, RewardTrainer

from kernelkit.testing import tiny_sequence_classifier


@pytest.fixture(scope="module")
def tokenizer():
    return ByT5Tokenizer()


def tiny_model(tokenizer, seed=0):
    model, model_tokenizer = tiny_sequence_classifier(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        seed=seed,
    )
    assert len(model_tokenizer) == len(tokenizer)
    return model.train()


def faro_args(tmp_path, **overrides):
    settings = dict(
        output_dir=str(tmp_path),
        report_to=[],
        use_cpu=True,
        bf16=False,  # trl defaults to bf16 autocast; tests compare float32 results exactly
        save_strategy="no",
        disable_tqdm=True,
        logging_steps=1000,
        per_device_train_batch_size=16,
        learning_rate=3e-3,
    )
    settings.update(overrides)
    return FaroConfig(**settings)


def test_group_columns_survive_the_trl_pipeline(tmp_path, tokenizer):
    data = synthetic_text_preferences(48, seed=0)
    trainer = ProxyGDATrainer(
        tiny_model(tokenizer),
        args=faro_args(tmp_path, constraint="cf"),
        train_dataset=data,
        processing_class=tokenizer,
    )
    loader = trainer.get_train_dataloader()
    batch = next(iter(loader))
    assert batch["input_ids"].shape[0] == 4 * 16  # chosen, rejected, chosen_cf, rejected_cf
    assert batch["faro_group"].shape == (16,)
    order = list(
        iter(loader.sampler if hasattr(loader, "sampler") else trainer._get_train_sampler())
    )
    # every batch of the stratified order holds both groups
    groups = torch.tensor(data["group"])
    assert {int(groups[i]) for i in order[:16]} == {0, 1}
    assert sorted(batch["faro_group"].tolist()) == sorted(
        int(g) for g in groups[torch.tensor(order[:16])]
    )
    assert set(batch["faro_orientation"].tolist()) <= {-1, 1}


def test_large_epsilon_matches_plain_reward_trainer(tmp_path, tokenizer):
    data = synthetic_text_preferences(64, seed=1)
    common = dict(
        output_dir=str(tmp_path),
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        disable_tqdm=True,
        per_device_train_batch_size=16,
        learning_rate=3e-3,
        max_steps=3,
        seed=0,
    )
    plain = RewardTrainer(
        tiny_model(tokenizer),
        args=RewardConfig(**common),
        train_dataset=data,
        processing_class=tokenizer,
    )
    plain.train()
    faro = ProxyGDATrainer(
        tiny_model(tokenizer),
        args=FaroConfig(constraint="dp", epsilon=1.0, stratify_groups=False, **common),
        train_dataset=data,
        processing_class=tokenizer,
    )
    faro.train()
    assert faro.lagrangian.multipliers.tolist() == [0.0, 0.0]
    for (name, a), (_, b) in zip(
        plain.model.named_parameters(), faro.model.named_parameters(), strict=True
    ):
        torch.testing.assert_close(a, b, msg=name)


@pytest.mark.slow
def test_tiny_transformer_meets_dp_on_held_out_data(tmp_path, tokenizer):
    train = synthetic_text_preferences(1500, seed=0)
    validation = synthetic_text_preferences(400, seed=1)
    test = synthetic_text_preferences(2000, seed=2)
    label_rates = [
        sum(o == 1 for o, g in zip(test["orientation"], test["group"], strict=True) if g == k)
        / test["group"].count(k)
        for k in (0, 1)
    ]
    assert (
        label_rates[0] - label_rates[1] > 0.2
    )  # the planted annotator bias is present in the labels
    args = faro_args(
        tmp_path,
        constraint="dp",
        epsilon=0.05,
        per_device_train_batch_size=64,
        num_train_epochs=3,
        fairness_eval_steps=10,
        dual_lr=0.5,
    )
    trainer = ProxyGDATrainer(
        tiny_model(tokenizer),
        args=args,
        train_dataset=train,
        eval_dataset=validation,
        processing_class=tokenizer,
    )
    trainer.train()
    assert bool((trainer.lagrangian.multipliers >= 0).all()) and bool(
        (trainer.lagrangian.multipliers <= 10.0).all()
    )
    dp = make_constraint("dp", 0.05)
    certificate = certify(trainer.model, test, dp, tokenizer=tokenizer)
    radius = max(b.radius for b in certificate.bounds)
    assert certificate.max_statistic <= 0.05 + radius
    assert evaluate(trainer.model, test, tokenizer=tokenizer)["accuracy"] >= 0.72


def test_checkpoint_resume_and_save_load_round_trip(tmp_path, tokenizer):
    data = synthetic_text_preferences(64, seed=3)
    args = faro_args(
        tmp_path / "run",
        constraint="eo",
        epsilon=0.0,
        max_steps=2,
        save_strategy="steps",
        save_steps=2,
        dual_lr=1.0,
        stratify_groups=True,
    )
    trainer = ProxyGDATrainer(
        tiny_model(tokenizer),
        args=args,
        train_dataset=data,
        eval_dataset=data,
        processing_class=tokenizer,
    )
    trainer.train()
    assert trainer.best_iterate is not None
    checkpoint = tmp_path / "run" / "checkpoint-2"
    assert (checkpoint / "faro_state").is_dir()
    resumed = ProxyGDATrainer(
        tiny_model(tokenizer, seed=1), args=args, train_dataset=data, processing_class=tokenizer
    )
    resumed._load_from_checkpoint(str(checkpoint))
    torch.testing.assert_close(resumed.lagrangian.multipliers, trainer.lagrangian.multipliers)

    trainer.save_model(str(tmp_path / "final"))
    loaded = AutoModelForSequenceClassification.from_pretrained(str(tmp_path / "final"))
    saved_state, loaded_state = trainer.model.state_dict(), loaded.state_dict()
    assert saved_state.keys() == loaded_state.keys()
    for name, tensor in saved_state.items():
        assert torch.equal(tensor, loaded_state[name]), name
    before = score_pairs(trainer.model, data, tokenizer=tokenizer)
    after = score_pairs(loaded, data, tokenizer=tokenizer)
    torch.testing.assert_close(after.reward_chosen, before.reward_chosen, rtol=1e-6, atol=1e-7)


def test_bad_datasets_raise_clear_errors(tmp_path, tokenizer):
    data = synthetic_text_preferences(32, seed=4)
    no_twins = data.remove_columns(["prompt_cf", "chosen_cf", "rejected_cf"])
    with pytest.raises(ValueError, match="needs twin columns"):
        ProxyGDATrainer(
            tiny_model(tokenizer),
            args=faro_args(tmp_path, constraint="cf"),
            train_dataset=no_twins,
            processing_class=tokenizer,
        )
    one_group = data.filter(lambda row: row["group"] == 0)
    with pytest.raises(ValueError, match=r"no examples for group\(s\) \[1\]"):
        ProxyGDATrainer(
            tiny_model(tokenizer),
            args=faro_args(tmp_path),
            train_dataset=one_group,
            processing_class=tokenizer,
        )
    with pytest.raises(ValueError, match="unknown constraint"):
        faro_args(tmp_path, constraint="parity")
    with pytest.raises(ValueError, match="epsilon"):
        faro_args(tmp_path, epsilon=-0.1)
    with pytest.raises(TypeError, match="FaroConfig"):
        ProxyGDATrainer(
            tiny_model(tokenizer),
            args=RewardConfig(output_dir=str(tmp_path), report_to=[], use_cpu=True),
            train_dataset=data,
            processing_class=tokenizer,
        )
