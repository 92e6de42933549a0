"""The training loop, checkpoint/resume, data loaders and the console script."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from pjax_torch import data
from pjax_torch.cli import main
from pjax_torch.train import TrainConfig, train

TINY = ["--updates", "2", "--steps-per-update", "2", "--batch-size", "16", "--eval-every", "1"]


@pytest.mark.parametrize(
    "options",
    [
        ["--model", "mlp", "--dataset", "teacher-student", "--hidden", "8"],
        ["--model", "cnn", "--dataset", "digits", "--hidden", "2"],
        ["--model", "rnn", "--dataset", "sequence", "--hidden", "4", "--algorithm", "ap"],
        [
            "--model",
            "mlp",
            "--activation",
            "sign",
            "--output",
            "margin",
            "--hidden",
            "8",
            "--skip",
            "true",
        ],
    ],
)
def test_train_command_runs_every_model(tmp_path, capsys, options):
    assert main(["train", *TINY, *options, "--out-dir", str(tmp_path)]) == 0
    summary = json.loads(capsys.readouterr().out.splitlines()[0])
    assert np.isfinite(summary["final_metric"]) and np.isfinite(summary["adam_final_metric"])
    result = json.loads((tmp_path / "results.json").read_text())
    assert result["projection"]["updates"] == [1, 2]


def test_resume_continues_from_the_checkpoint(tmp_path):
    config = TrainConfig(
        hidden=(8,),
        updates=2,
        steps_per_update=2,
        batch_size=16,
        eval_every=1,
        checkpoint_every=1,
        adam=False,
        out_dir=str(tmp_path),
    )
    train(config)
    longer = TrainConfig(**{**config.__dict__, "updates": 3})
    result = train(longer)
    assert result["projection"]["updates"] == [1, 2, 3]
    fresh = train(TrainConfig(**{**longer.__dict__, "out_dir": str(tmp_path / "fresh")}))
    assert result["final_metric"] == pytest.approx(fresh["final_metric"])
    changed = TrainConfig(**{**longer.__dict__, "seed": 5})
    with pytest.raises(ValueError, match="different configuration"):
        train(changed)


def test_user_arrays_load_without_pickle(tmp_path):
    path = tmp_path / "arrays.npz"
    np.savez(path, x=np.random.default_rng(0).normal(size=(20, 3)), y=np.arange(20) % 2)
    dataset = data.load_arrays(path)
    assert dataset.task == "classification" and dataset.x_train.shape == (16, 3)
    np.savez(path, x=np.zeros((4, 3)))
    with pytest.raises(ValueError, match="missing \\['y'\\]"):
        data.load_arrays(path)


def test_config_and_dataset_validation():
    with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
        TrainConfig(batch_size=0)
    with pytest.raises(TypeError, match="classification labels must be integer"):
        data.Dataset(torch.zeros(2, 1), torch.zeros(2), torch.zeros(2, 1), torch.zeros(2))
    with pytest.raises(SystemExit):
        main(["train", "--algorithm", "sgd"])
