import json

import pytest
import seqtopk
import torch
from seqtopk.cli import main
from seqtopk.experiment import MixtureTask, TrainConfig, train

from kernelkit.testing import tiny_causal_lm


def test_task_positions_are_labelled():
    task = MixtureTask(table_size=4, seed=0)
    tokens, kinds = task.sample(8, 20, torch.Generator().manual_seed(0))
    for b, t in (kinds == 2).nonzero().tolist():
        a, c = tokens[b, t - 1], tokens[b, t]
        assert tokens[b, t - 2] == task.hard and tokens[b, t + 1] == task.table[a, c]
    for b, t in (kinds == 1).nonzero().tolist():
        assert tokens[b, t + 1] == task.perm[tokens[b, t]]


def test_train_checkpoints_and_resumes(tmp_path):
    config = TrainConfig(steps=4, batch_size=4, seq_len=12, checkpoint_every=2)
    _, _, first = train(config, out_dir=tmp_path)
    _, _, resumed = train(config, out_dir=tmp_path)
    assert len(first) == 4 and resumed == first
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
    with pytest.raises(FileNotFoundError, match="does not exist"):
        main(["eval", "--model-dir", str(out), "--text-file", str(tmp_path / "none.txt")])
    assert seqtopk.__version__
