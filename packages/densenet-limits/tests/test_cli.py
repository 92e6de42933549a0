import json

import numpy as np
import pytest
import torch
from densenet_limits.cli import main

from kernelkit.cutnorm import cut_norm_exact


def test_cutnorm_command_reads_npy_and_reports_the_exact_value(tmp_path, capsys):
    matrix = np.random.default_rng(0).standard_normal((5, 7))
    np.save(tmp_path / "a.npy", matrix)
    assert main(["cutnorm", "--matrix", str(tmp_path / "a.npy"), "--method", "exact"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["value"] == pytest.approx(cut_norm_exact(torch.from_numpy(matrix)).value)
    assert report["normalized"] == pytest.approx(report["value"] / 35)


def test_cutnorm_command_reads_safetensors(tmp_path, capsys):
    from kernelkit.io import save_artifact

    matrix = torch.randn(4, 6, dtype=torch.float64)
    save_artifact(tmp_path, {"a": matrix}, {})
    path = tmp_path / "tensors.safetensors"
    assert main(["cutnorm", "--matrix", str(path), "--method", "exact"]) == 0
    assert json.loads(capsys.readouterr().out)["value"] == pytest.approx(
        cut_norm_exact(matrix).value
    )


def test_cutnorm_command_rejects_unknown_formats(tmp_path, capsys):
    (tmp_path / "a.txt").write_text("1 2")
    assert main(["cutnorm", "--matrix", str(tmp_path / "a.txt")]) == 2
    assert ".npy or .safetensors" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"\.npy or \.safetensors"):
        main(["cutnorm", "--matrix", str(tmp_path / "a.txt"), "--debug"])


def test_train_then_compress_round_trip(tmp_path, capsys):
    net = tmp_path / "net"
    assert (
        main(
            [
                "train",
                "--out",
                str(net),
                "--dim",
                "8",
                "--width",
                "12",
                "--steps",
                "5",
                "--batch-size",
                "16",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["compress", "--model", str(net), "--parts", "12", "--samples", "32"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["parts_used"] == [12] and report["max_error"] == 0.0


def test_compress_command_merges_input_coordinates(tmp_path, capsys):
    net = tmp_path / "net"
    arguments = ["train", "--out", str(net), "--dim", "8", "--width", "12", "--steps", "5"]
    assert main(arguments) == 0
    capsys.readouterr()
    assert main(["compress", "--model", str(net), "--parts", "12", "--input-parts", "8"]) == 0
    exact = json.loads(capsys.readouterr().out)
    assert exact["max_error"] == 0.0 and exact["input_blocks"] == list(range(8))
    assert main(["compress", "--model", str(net), "--parts", "12", "--input-parts", "2"]) == 0
    merged = json.loads(capsys.readouterr().out)
    assert sorted(set(merged["input_blocks"])) == [0, 1] and merged["max_error"] > 0.0
