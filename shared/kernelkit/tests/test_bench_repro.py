import json
import math

import pytest

from kernelkit.bench import compare, comparisons_to_markdown, time_callable
from kernelkit.repro import Claim, Report, new_figure


def test_compare_interleaves_and_counts_calls():
    calls = []
    result = compare(
        lambda: calls.append("a"), lambda: calls.append("b"), name="t", warmup=1, repeats=4
    )
    # warm-up AB, then AB, BA, AB, BA
    assert "".join(calls) == "ab" + "abbaabba"
    assert len(result.a.times_s) == 4 and len(result.b.times_s) == 4
    assert result.a.peak_memory_bytes is None  # CPU: torch exposes no allocator peak
    data = json.loads(result.to_json())
    assert data["ratio_a_over_b"] == pytest.approx(result.a.median_s / result.b.median_s)
    assert "| t | a | b |" in comparisons_to_markdown([result])


def test_compare_ratio_reflects_work():
    def slow():
        sum(range(200_000))

    def fast():
        sum(range(2_000))

    result = compare(slow, fast, name="work", repeats=5)
    assert result.ratio > 1.0


def test_bench_rejects_bad_counts():
    with pytest.raises(ValueError, match="repeats must be an int >= 1, got 0"):
        time_callable(lambda: None, repeats=0)
    with pytest.raises(ValueError, match="warmup must be an int >= 0, got -1"):
        compare(lambda: None, lambda: None, name="x", warmup=-1)
    with pytest.raises(TypeError, match="callables"):
        compare(1, lambda: None, name="x")


@pytest.mark.parametrize(
    ("measured", "threshold", "comparison", "held"),
    [
        (0.9, 0.8, ">=", True),
        (0.7, 0.8, ">=", False),
        (0.8, 0.8, ">", False),
        (0.1, 0.2, "<=", True),
        (0.2, 0.2, "<", False),
        (math.nan, 0.0, "<=", False),
    ],
)
def test_claim_held_is_computed(measured, threshold, comparison, held):
    assert Claim("s", measured, threshold, comparison).held is held


def test_claim_rejects_bad_input():
    with pytest.raises(ValueError, match="comparison must be one of"):
        Claim("s", 1.0, 1.0, "=>")
    with pytest.raises(TypeError, match="measured must be a number, got str"):
        Claim("s", "high", 1.0)


def test_report_markdown_json_and_figures(tmp_path):
    report = Report("demo", tmp_path / "demo")
    report.add_claim("accuracy goes up", 0.93, 0.9, ">=", unit="", details="3 seeds")
    report.add_claim("gap closes | pipes escaped", 0.05, 0.02, "<=")
    report.add_metrics(method="bt", accuracy=0.91)
    report.add_metrics(method="faro", gap=0.01)
    fig, ax = new_figure()
    ax.plot([0, 1], [0, 1])
    png = report.save_figure(fig, "curve")
    md_path = report.write()
    assert png.read_bytes()[:4] == b"\x89PNG"
    md = md_path.read_text()
    assert "| accuracy goes up | 0.93 | >= 0.9 | yes | 3 seeds |" in md
    assert "gap closes \\| pipes escaped" in md and "| NO |" in md
    assert "| method | accuracy | gap |" in md and "| faro |  | 0.01 |" in md
    assert "![curve](curve.png)" in md
    assert "![curve](demo/curve.png)" in report.to_markdown(relative_to=tmp_path)
    data = json.loads((tmp_path / "demo" / "report.json").read_text())
    assert [c["held"] for c in data["claims"]] == [True, False]
    assert not report.all_held and report.summary().startswith("demo: 1/2 claims held")


def test_compare_pins_threads_and_records_them():
    import torch

    before = torch.get_num_threads()
    seen = []
    result = compare(
        lambda: seen.append(torch.get_num_threads()), lambda: None, name="t", threads=1, repeats=2
    )
    assert set(seen) == {1} and result.meta["threads"] == 1
    assert torch.get_num_threads() == before
