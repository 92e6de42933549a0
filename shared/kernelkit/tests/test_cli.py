import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from kernelkit.cli import add_dataclass_arguments, dataclass_from_args, is_main_process, main, run


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


def command_parser(handler):
    parser = argparse.ArgumentParser(prog="tool")
    subparsers = parser.add_subparsers(required=True)
    job = subparsers.add_parser("job")
    job.add_argument("--value", default="1")
    job.set_defaults(handler=handler)
    return parser


def failing(args):
    print("partial result")
    raise ValueError(f"value must be positive, got {args.value}")


def test_run_reports_a_user_error_as_one_line_and_exit_2(capsys):
    assert run(command_parser(failing), ["job", "--value", "-3"]) == 2
    captured = capsys.readouterr()
    assert captured.err == "tool: error: value must be positive, got -3\n"

    def missing(args):
        Path("/no/such/file.jsonl").read_text()

    assert run(command_parser(missing), ["job"]) == 2
    assert "No such file or directory: '/no/such/file.jsonl'" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--debug", "job"], ["job", "--debug"]])
def test_run_debug_shows_the_traceback(argv):
    with pytest.raises(ValueError, match="value must be positive"):
        run(command_parser(failing), argv)


def test_run_lets_a_bug_through():
    def buggy(args):
        raise KeyError("internal")

    with pytest.raises(KeyError):
        run(command_parser(buggy), ["job"])


def test_only_rank_zero_prints(monkeypatch, capsys):
    def report(args):
        print("result 42")
        return 0

    monkeypatch.setenv("RANK", "1")
    assert not is_main_process()
    assert run(command_parser(report), ["job"]) == 0
    assert run(command_parser(failing), ["job"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "value must be positive" in captured.err
    monkeypatch.setenv("RANK", "0")
    assert is_main_process()
    assert run(command_parser(report), ["job"]) == 0
    assert capsys.readouterr().out == "result 42\n"
    monkeypatch.delenv("RANK")
    assert is_main_process()
