"""CLI round trip (generate -> verify) and evaluation bookkeeping."""

from __future__ import annotations

import json
import random

import g1
import pytest
from g1.cli import main
from g1.evaluate import EvalConfig, evaluate, zero_variance_fraction
from g1.policies import noisy_oracle, oracle_completion


def test_generate_then_verify(tmp_path, capsys):
    path = tmp_path / "rows.jsonl"
    assert (
        main(
            [
                "generate",
                "--out",
                str(path),
                "--tasks",
                "degree",
                "bfs",
                "--n-per-task",
                "2",
                "--split",
                "test",
            ]
        )
        == 0
    )
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [row["task"] for row in rows] == ["degree", "degree", "bfs", "bfs"]
    for row in rows:
        row["completion"] = oracle_completion(g1.Instance.from_record(row))
    rows[0]["completion"] = "no idea"
    scored = tmp_path / "scored.jsonl"
    scored.write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert main(["verify", str(scored), "--out", str(tmp_path / "out.jsonl")]) == 0
    assert "3/4 correct" in capsys.readouterr().out
    assert json.loads((tmp_path / "out.jsonl").read_text().splitlines()[0])["stage"] == "extract"


def test_cli_rejects_unknown_task(tmp_path, capsys):
    argv = ["generate", "--out", str(tmp_path / "x.jsonl"), "--tasks", "colouring"]
    assert main([*argv, "--n-per-task", "1"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("g1: error: tasks[0]: task must be one of") and error.count("\n") == 1
    with pytest.raises(ValueError, match="task must be one of"):
        main([*argv, "--n-per-task", "1", "--debug"])


def test_evaluate_with_a_sampler_reports_tiers_and_zero_variance():
    policy = noisy_oracle(0.5, random.Random(0))
    config = EvalConfig(
        model="unused", tasks=("degree", "has_cycle"), n_per_task=3, num_generations=4, n_nodes=6
    )
    result = evaluate(config, sampler=lambda prompt: [policy(_by_prompt[prompt]) for _ in range(4)])
    assert set(result.per_tier) == {"easy"} and 0.0 <= result.accuracy <= 1.0
    assert "zero-variance groups (4 samples)" in result.table()
    assert zero_variance_fraction([[1, 1], [0, 1], [0, 0]]) == pytest.approx(2 / 3)


_by_prompt = {
    instance.prompt: instance
    for instance in g1.generate_dataset(
        ["degree", "has_cycle"], 3, 0, "test", stage="eval", n_nodes=6
    )
}
