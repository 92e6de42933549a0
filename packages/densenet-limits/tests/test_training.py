import json

import pytest
import torch
from densenet_limits import MLP, DenseMLP, TrainConfig, sample_hard_family, train
from densenet_limits import training as training_module
from densenet_limits.cli import main

from kernelkit.utils import torch_threads


@pytest.fixture(autouse=True)
def one_thread():
    with torch_threads(1):
        yield


def data(dim=6, count=128):
    return sample_hard_family(count, dim, generator=torch.Generator().manual_seed(0))


def interrupt_after(monkeypatch, steps_done):
    """Make the training loop raise KeyboardInterrupt once ``steps_done`` steps have run."""
    original = training_module.progress

    def stopping(iterable, **kwargs):
        for count, item in enumerate(original(iterable, **kwargs)):
            if count == steps_done:
                raise KeyboardInterrupt
            yield item

    monkeypatch.setattr(training_module, "progress", stopping)


@pytest.mark.parametrize("parametrization", ["tanh", "clamp"])
def test_interrupted_and_resumed_run_equals_an_uninterrupted_one(
    tmp_path, monkeypatch, parametrization
):
    x, y = data()
    config = TrainConfig(steps=30, batch_size=16, seed=3)

    def fresh():
        return DenseMLP([6, 10, 1], 4.0, parametrization=parametrization, seed=1)

    reference = fresh()
    reference_losses = train(reference, x, y, config)

    # Killed at step 17: the last checkpoint is from step 10, so steps 10..16 are redone.
    with monkeypatch.context() as patch:
        interrupt_after(patch, 17)
        with pytest.raises(KeyboardInterrupt):
            train(fresh(), x, y, config, checkpoint_dir=tmp_path / "ckpt", checkpoint_every=10)
    meta = json.loads((tmp_path / "ckpt" / "manifest.json").read_text())["config"]
    assert meta["step"] == 10

    resumed = fresh()
    resumed_losses = train(
        resumed, x, y, config, checkpoint_dir=tmp_path / "ckpt", checkpoint_every=10
    )
    assert resumed_losses == reference_losses
    for (name, a), (_, b) in zip(
        reference.state_dict().items(), resumed.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    assert json.loads((tmp_path / "ckpt" / "manifest.json").read_text())["config"]["step"] == 30


def test_a_finished_run_can_be_extended(tmp_path):
    x, y = data()
    reference = MLP([6, 8, 1], seed=0)
    expected = train(reference, x, y, TrainConfig(steps=12, batch_size=8))
    model = MLP([6, 8, 1], seed=0)
    train(model, x, y, TrainConfig(steps=7, batch_size=8), checkpoint_dir=tmp_path)
    losses = train(
        MLP([6, 8, 1], seed=0), x, y, TrainConfig(steps=12, batch_size=8), checkpoint_dir=tmp_path
    )
    assert losses == expected


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"config": TrainConfig(steps=10, batch_size=8, lr=1e-2)}, "different run"),
        ({"model": MLP([6, 9, 1], seed=0)}, "different run"),
        ({"y": data()[1] + 1.0}, "different run"),
        ({"config": TrainConfig(steps=5, batch_size=8)}, "different run"),
    ],
)
def test_a_mismatched_checkpoint_is_refused(tmp_path, change, match):
    x, y = data()
    train(
        MLP([6, 8, 1], seed=0), x, y, TrainConfig(steps=10, batch_size=8), checkpoint_dir=tmp_path
    )
    arguments = {"model": MLP([6, 8, 1], seed=0), "x": x, "y": y}
    arguments["config"] = TrainConfig(steps=10, batch_size=8)
    arguments.update(change)
    with pytest.raises(ValueError, match=match):
        train(
            arguments["model"],
            arguments["x"],
            arguments["y"],
            arguments["config"],
            checkpoint_dir=tmp_path,
        )


def test_checkpoint_every_must_be_positive(tmp_path):
    x, y = data()
    with pytest.raises(ValueError, match="checkpoint_every must be >= 1"):
        train(
            MLP([6, 8, 1]), x, y, TrainConfig(steps=2), checkpoint_dir=tmp_path, checkpoint_every=0
        )


def test_cli_train_resumes_from_its_checkpoint(tmp_path, monkeypatch, capsys):
    arguments = ["train", "--out", str(tmp_path / "net"), "--dim", "8", "--width", "12"]
    arguments += ["--steps", "20", "--batch-size", "16", "--checkpoint-every", "5"]
    assert main([*arguments[:2], str(tmp_path / "full"), *arguments[3:]]) == 0
    full = json.loads(capsys.readouterr().out)
    with monkeypatch.context() as patch:
        interrupt_after(patch, 12)
        with pytest.raises(KeyboardInterrupt):
            main(arguments)
    capsys.readouterr()
    assert main(arguments) == 0
    assert json.loads(capsys.readouterr().out)["test_r2"] == full["test_r2"]
