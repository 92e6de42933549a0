import json
import shutil
from dataclasses import replace

import pytest
import seqtopk
import torch
from seqtopk.cli import main
from seqtopk.experiment import MixtureTask, TrainConfig, train
from seqtopk.finetune import FinetuneConfig, finetune

from kernelkit.io import load_artifact
from kernelkit.testing import tiny_causal_lm


def test_task_positions_are_labelled():
    task = MixtureTask(table_size=4, seed=0)
    tokens, kinds = task.sample(8, 20, torch.Generator().manual_seed(0))
    for b, t in (kinds == 2).nonzero().tolist():
        a, c = tokens[b, t - 1], tokens[b, t]
        assert tokens[b, t - 2] == task.hard and tokens[b, t + 1] == task.table[a, c]
    for b, t in (kinds == 1).nonzero().tolist():
        assert tokens[b, t + 1] == task.perm[tokens[b, t]]


@pytest.mark.slow
def test_interrupted_and_resumed_run_equals_uninterrupted(tmp_path, monkeypatch):
    config = TrainConfig(steps=4, batch_size=4, seq_len=12, checkpoint_every=2)
    whole_model, _, whole = train(config)

    original_sample = MixtureTask.sample
    calls = []

    def sample_then_crash(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 4:  # the 4th step dies after the step-2 checkpoint was written
            raise KeyboardInterrupt
        return original_sample(self, *args, **kwargs)

    monkeypatch.setattr(MixtureTask, "sample", sample_then_crash)
    with pytest.raises(KeyboardInterrupt):
        train(config, out_dir=tmp_path)
    monkeypatch.setattr(MixtureTask, "sample", original_sample)
    tensors, saved = load_artifact(tmp_path / "checkpoint", kind="seqtopk-train")
    assert saved["step"] == 2 and any(name.endswith(".exp_avg_sq") for name in tensors)

    resumed_model, _, resumed = train(config, out_dir=tmp_path)
    assert resumed == whole
    whole_state, resumed_state = whole_model.state_dict(), resumed_model.state_dict()
    assert whole_state.keys() == resumed_state.keys()
    for name, value in whole_state.items():
        assert torch.equal(value, resumed_state[name]), name
    with pytest.raises(ValueError, match="different config"):
        train(TrainConfig(steps=5, batch_size=4, seq_len=12), out_dir=tmp_path)


def test_cli_train_and_finetune_and_eval(tmp_path, capsys):
    assert main(["train", "--steps", "2", "--batch-size", "4", "--seq-len", "12"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert set(summary["online_eval"]) >= {"acc_hard", "experts_hard", "loss"}

    model, tokenizer = tiny_causal_lm("olmoe", num_experts=4, num_experts_per_tok=2)
    model.save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    text = tmp_path / "text.txt"
    text.write_text("the cat sat on the mat\nhello world\nmoe routing by sequence\n")
    out = tmp_path / "tuned"
    code = main(
        [
            "finetune",
            "--model-dir",
            str(tmp_path / "base"),
            "--train-file",
            str(text),
            "--output-dir",
            str(out),
            "--max-steps",
            "2",
            "--batch-size",
            "2",
            "--min-per-token",
            "0",
            "--learning-rate",
            "1e-3",
        ]
    )
    assert code == 0
    assert json.loads((out / "seqtopk.json").read_text())["min_per_token"] == 0
    capsys.readouterr()
    assert main(["eval", "--model-dir", str(out), "--text-file", str(text)]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["tokens"] > 0 and metrics["perplexity"] > 1.0
    assert main(["eval", "--model-dir", str(out), "--text-file", str(tmp_path / "none.txt")]) == 2
    assert "none.txt' does not exist" in capsys.readouterr().err
    assert seqtopk.__version__


def test_finetune_resumed_equals_uninterrupted(tmp_path):
    model, tokenizer = tiny_causal_lm("olmoe", num_experts=4, num_experts_per_tok=2)
    model.save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    text = tmp_path / "text.txt"
    text.write_text("the cat sat on the mat\nhello world\nmoe routing by sequence\nagain\n")
    config = FinetuneConfig(
        model_dir=str(tmp_path / "base"),
        train_file=str(text),
        output_dir=str(tmp_path / "tuned"),
        max_steps=3,
        batch_size=2,
        save_steps=1,
        learning_rate=1e-3,
    )
    whole = {name: value.clone() for name, value in finetune(config).state_dict().items()}
    # A run killed after its second checkpoint: the third one was never written.
    shutil.rmtree(tmp_path / "tuned" / "checkpoint-3")
    resumed = finetune(replace(config, resume_from_checkpoint="last")).state_dict()
    state = json.loads((tmp_path / "tuned" / "checkpoint-3" / "trainer_state.json").read_text())
    assert [entry["step"] for entry in state["log_history"] if "loss" in entry] == [1, 2, 3]
    for name, value in whole.items():
        assert torch.equal(value, resumed[name]), name
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        finetune(replace(config, output_dir=str(tmp_path / "empty"), resume_from_checkpoint="last"))


def test_default_cap_is_limited_to_the_number_of_experts(capsys):
    # `seqtopk train --k 7` with 8 experts used to crash: the default cap K + 2 = 9 > E.
    from seqtopk.experiment import TrainConfig

    assert TrainConfig(k=7).bounds(8) == (1, 8)
    assert TrainConfig(k=2).bounds(8) == (1, 4)
    assert TrainConfig(k=2, max_per_token=3).bounds(8) == (1, 3)
    assert main(["train", "--k", "7", "--steps", "1", "--batch-size", "2", "--seq-len", "12"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert "acc_hard" in summary["online_eval"]


def test_continue_training_switches_routing_and_trains():
    from seqtopk.experiment import SmallMoEConfig, continue_training

    model_config = SmallMoEConfig(num_layers=1, num_experts=4, expert_hidden=4)
    config = TrainConfig(routing="topk", k=2, steps=2, batch_size=4, seq_len=12)
    model, task, _ = train(config, model_config)
    before = {name: value.clone() for name, value in model.state_dict().items()}
    tuned = replace(config, routing="seqtopk", min_per_token=0, max_per_token=3, steps=3)
    model, losses = continue_training(model, task, tuned, first_batch=config.steps)
    assert len(losses) == 3 and all(loss > 0 for loss in losses)
    routing = model._seqtopk_routing
    assert (routing.k, routing.min_per_token, routing.max_per_token) == (2, 0, 3)
    assert any(not torch.equal(before[name], value) for name, value in model.state_dict().items())
    with pytest.raises(ValueError, match="first_batch"):
        continue_training(model, task, tuned, first_batch=-1)
    with pytest.raises(ValueError, match="num_experts_per_tok=2"):
        continue_training(model, task, replace(config, k=3), first_batch=0)


@pytest.mark.slow
def test_repro_premise_gates_the_comparisons(tmp_path, monkeypatch):
    from seqtopk import repro, repro_lm

    # The real sizes take minutes; the structure of the report does not depend on them.
    monkeypatch.setattr(repro, "STEPS", {True: 3})
    monkeypatch.setattr(repro, "SEEDS", {True: (0, 1)})
    monkeypatch.setattr(repro, "FINETUNE_STEPS", 2)
    monkeypatch.setattr(repro, "EVAL_BATCHES", 1)
    tiny_lm = {"seeds": (0,), "levels": (2,), "premise": False, "pretrain": 1, "finetune": 1}
    tiny_lm |= {"cli_steps": 1, "windows": 2, "cli_train_bytes": 4096}
    monkeypatch.setitem(repro_lm.SIZES, True, tiny_lm)
    report = repro.run(tmp_path, quick=True)
    statements = [claim.statement for claim in report.claims]
    assert len(statements) == 9
    assert statements[0].startswith("premise control, K=1")
    assert statements[1].startswith("premise control, K=2")
    for claim in report.claims:
        assert claim.seeds == 2
    for premise, k in zip(report.claims[:2], (1, 2), strict=True):
        expected = "held, so" if premise.verdict == "held" else "NOT held, so"
        compared = [c for c in report.claims[2:6] if c.statement.startswith(f"K={k} ")]
        assert len(compared) == 2 and all(expected in c.details for c in compared)
    assert {c.source for c in report.claims[2:]} == {"paper"}
    assert (tmp_path / "report.md").exists() and (tmp_path / "claims.png").exists()
    # The byte-level LM runs as a smoke in quick mode: metrics rows, no claims.
    assert {row["experiment"] for row in report.metrics} == {"sparsity", "adoption", "byte LM"}
