import argparse
from dataclasses import dataclass, field
from typing import Literal

import pytest

from kernelkit.cli import add_dataclass_arguments, dataclass_from_args, main


@dataclass
class Config:
    path: str
    k: int = 4
    lr: float = 1e-3
    mode: Literal["offline", "online"] = "offline"
    use_lora: bool = False
    dims: tuple[int, ...] = (2, 4)
    note: str | None = field(default=None, metadata={"help": "free text"})


def parse(argv):
    parser = argparse.ArgumentParser()
    add_dataclass_arguments(parser, Config)
    return dataclass_from_args(Config, parser.parse_args(argv))


def test_defaults_and_overrides_round_trip():
    assert parse(["--path", "m"]) == Config(path="m")
    cfg = parse(
        [
            "--path",
            "m",
            "--k",
            "2",
            "--lr",
            "0.5",
            "--mode",
            "online",
            "--use-lora",
            "true",
            "--dims",
            "8",
            "16",
        ]
    )
    assert cfg == Config("m", 2, 0.5, "online", True, (8, 16), None)


def test_bad_values_are_refused(capsys):
    with pytest.raises(SystemExit):
        parse(["--path", "m", "--mode", "sideways"])
    assert "invalid choice" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse(["--k", "2"])  # --path is required
    with pytest.raises(SystemExit):
        parse(["--path", "m", "--use-lora", "maybe"])


def test_non_dataclass_is_refused():
    with pytest.raises(TypeError, match="cls must be a dataclass type"):
        add_dataclass_arguments(argparse.ArgumentParser(), dict)


def test_kernelkit_repro_command(tmp_path, capsys):
    assert main(["repro", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "kernelkit: package claims 3 held / 0 not held / 0 inconclusive (of 3)" in out
    assert (tmp_path / "report.md").is_file() and (tmp_path / "linear_scan_error.png").is_file()
