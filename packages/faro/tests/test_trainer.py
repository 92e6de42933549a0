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
from transformers import AutoModelForSequenceClassification, ByT5Tokenizer, TrainerCallback
from trl import RewardConfig, RewardTrainer

from kernelkit.io import ArtifactError
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


class _StopAt(TrainerCallback):
    """Ends training after ``step`` (the checkpoint of that step is written first): an interruption."""

    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_training_stop = True
        return control


def _resume_args(output_dir, **overrides):
    settings = dict(
        constraint="dp",
        epsilon=0.05,
        per_device_train_batch_size=8,
        learning_rate=1e-2,
        max_steps=4,
        save_strategy="steps",
        save_steps=3,
        fairness_eval_steps=1,
        dual_lr=0.5,
        seed=0,
    )
    settings.update(overrides)
    return faro_args(output_dir, **settings)


def test_resumed_run_returns_the_uninterrupted_best_iterate(tmp_path, tokenizer):
    # 16 pairs in batches of 8: two steps per epoch, so the resume at step 3 is mid-epoch 1
    train = synthetic_text_preferences(16, seed=5)
    validation = synthetic_text_preferences(24, seed=6)

    def trainer(output_dir, seed=0, callbacks=None):
        return ProxyGDATrainer(
            tiny_model(tokenizer, seed=seed),
            args=_resume_args(output_dir),
            train_dataset=train,
            eval_dataset=validation,
            processing_class=tokenizer,
            callbacks=callbacks,
        )

    full = trainer(tmp_path / "full")
    full.train()
    # the best iterate comes before the interruption, so a resume that restarted the selection
    # would end on a later, worse-scored iterate
    assert full.best_iterate is not None and full.best_iterate["step"] < 3

    interrupted = trainer(tmp_path / "cut", callbacks=[_StopAt(3)])
    interrupted.train()
    assert interrupted.state.global_step == 3
    checkpoint = tmp_path / "cut" / "checkpoint-3"
    assert (checkpoint / "faro_best_iterate" / "tensors.safetensors").is_file()
    assert not list(checkpoint.glob("faro_best_iterate/*.tmp"))

    resumed = trainer(tmp_path / "cut", seed=1)  # other initial weights: all must come from disk
    resumed.train(resume_from_checkpoint=str(checkpoint))
    assert resumed.state.global_step == 4
    assert resumed.best_iterate == full.best_iterate
    assert resumed._best_key == full._best_key
    assert torch.equal(resumed.lagrangian.multipliers, full.lagrangian.multipliers)
    assert full._best_state.keys() == resumed._best_state.keys()
    for name, tensor in full._best_state.items():
        assert torch.equal(resumed._best_state[name], tensor), name
    for (name, a), (_, b) in zip(
        full.model.state_dict().items(), resumed.model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name


def test_corrupt_best_iterate_in_checkpoint_raises_clear_error(tmp_path, tokenizer):
    train = synthetic_text_preferences(16, seed=7)
    args = _resume_args(tmp_path / "run", max_steps=1, save_steps=1)

    def trainer(args):
        return ProxyGDATrainer(
            tiny_model(tokenizer),
            args=args,
            train_dataset=train,
            eval_dataset=train,
            processing_class=tokenizer,
        )

    trainer(args).train()
    checkpoint = tmp_path / "run" / "checkpoint-1"
    tensors = checkpoint / "faro_best_iterate" / "tensors.safetensors"
    payload = tensors.read_bytes()
    tensors.write_bytes(payload[: len(payload) // 2])
    with pytest.raises(ArtifactError, match=r"best-iterate copy .* corrupt"):
        trainer(args)._load_from_checkpoint(str(checkpoint))

    tensors.unlink()  # the state says a best copy was saved, so its absence is an error too
    with pytest.raises(ArtifactError, match=r"has no tensors\.safetensors"):
        trainer(args)._load_from_checkpoint(str(checkpoint))

    tensors.write_bytes(payload)  # intact again: loads, but not under another epsilon
    trainer(args)._load_from_checkpoint(str(checkpoint))
    other = _resume_args(tmp_path / "run", max_steps=1, save_steps=1, epsilon=0.2)
    with pytest.raises(ValueError, match="selected under constraint"):
        trainer(other)._load_from_checkpoint(str(checkpoint))


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
