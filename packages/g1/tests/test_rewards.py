"""trl rewards: the signature trl calls, the columns they read, and a GRPO smoke run."""

from __future__ import annotations

import math

import g1
import pytest
import torch


def _columns(rows):
    return {key: [row[key] for row in rows] for key in rows[0] if key != "prompt"}


def test_rewards_read_dataset_columns_and_score_completions():
    instances = [g1.generate("degree", seed, 6) for seed in range(3)]
    rows = [instance.to_record() for instance in instances]
    completions = [f"\\boxed{{{instances[0].answer}}}", "no box", "\\boxed{Yes}"]
    correctness, form = g1.reward_functions(format_weight=0.1)
    prompts = [row["prompt"] for row in rows]
    scores = correctness(
        prompts=prompts,
        completions=completions,
        completion_ids=None,
        trainer_state=None,
        **_columns(rows),
    )
    assert scores == [1.0, 0.0, 0.0]
    assert form(prompts=prompts, completions=completions, **_columns(rows)) == [0.1, 0.0, 0.0]
    conversational = [[{"role": "assistant", "content": completions[0]}]] * 3
    assert correctness(prompts=prompts, completions=conversational, **_columns(rows))[0] == 1.0


def test_rewards_name_missing_columns():
    with pytest.raises(ValueError, match="lacks the columns"):
        g1.correctness_reward(prompts=["p"], completions=["c"], task=["degree"])
    with pytest.raises(ValueError, match="format_weight"):
        g1.reward_functions(format_weight=-1)


@pytest.mark.slow
def test_grpo_smoke_run(tmp_path):
    from g1.repro import SMOKE_TASKS
    from g1.smoke import save_smoke_policy
    from g1.train import TrainConfig, train

    from kernelkit.utils import torch_threads

    # A random model over the word-level smoke vocabulary, in which "\\boxed{" is one token,
    # boxes a digit in a few percent of its completions: the format reward alone gives groups
    # with reward variance, so no dense test-only reward is needed.
    model, _ = save_smoke_policy(tmp_path / "model")
    before = {name: value.clone() for name, value in model.state_dict().items()}
    seen_columns: list[set[str]] = []

    def column_probe(prompts, completions, **columns):
        seen_columns.append(set(columns))
        return [0.0] * len(completions)

    config = TrainConfig(
        model=str(tmp_path / "model"),
        output_dir=str(tmp_path / "out"),
        tasks=SMOKE_TASKS,
        n_per_task=2,
        n_nodes=5,
        num_generations=8,
        per_device_train_batch_size=16,
        max_completion_length=8,
        max_steps=2,
        learning_rate=1e-2,
        format_weight=0.1,
        save_steps=1000,
    )
    with torch_threads(1):
        # No processing_class: trl loads the word-level tokenizer from the model directory.
        trainer = train(config, extra_reward_funcs=[column_probe])
    assert trainer.processing_class.convert_ids_to_tokens(
        trainer.processing_class("\\boxed{4}")["input_ids"]
    ) == ["\\boxed{", "4", "}"]
    assert {"task", "graph", "query", "answer", "optimum"} <= seen_columns[0]
    history = trainer.state.log_history
    losses = [row["loss"] for row in history if "loss" in row]
    assert losses and all(math.isfinite(loss) for loss in losses)
    assert any(key.startswith("rewards/correctness_reward") for row in history for key in row)
    assert any(row.get("frac_reward_zero_std", 1.0) < 1.0 for row in history), (
        "no group had reward variance, so GRPO had no gradient"
    )
    after = trainer.model.state_dict()
    assert any(not torch.equal(before[name], after[name].cpu()) for name in before)
