import json
import math
from pathlib import Path

import pytest

from kernelkit.bench import compare, comparisons_to_markdown, time_callable, time_interleaved
from kernelkit.repro import Claim, Report, new_figure, t_quantile_975


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


def test_time_interleaved_rotates_the_order_every_round():
    calls = []
    timings = time_interleaved(
        {label: (lambda label=label: calls.append(label)) for label in "abc"},
        warmup=1,
        repeats=4,
    )
    # warm-up ABC, then ABC, BCA, CAB, ABC: each label first, second and last in turn
    assert "".join(calls) == "abc" + "abcbcacababc"
    assert list(timings) == ["a", "b", "c"]
    assert all(len(t.times_s) == 4 and t.label == label for label, t in timings.items())
    assert timings["a"].peak_memory_bytes is None


def test_time_interleaved_rejects_bad_input():
    with pytest.raises(ValueError, match="fns must be a non-empty mapping"):
        time_interleaved({})
    with pytest.raises(ValueError, match="fns must be a non-empty mapping"):
        time_interleaved([lambda: None])
    with pytest.raises(TypeError, match=r"fns\['slow'\] must be a callable"):
        time_interleaved({"slow": 3})
    with pytest.raises(TypeError, match="labels must be str, got 1"):
        time_interleaved({1: lambda: None})
    with pytest.raises(ValueError, match="repeats must be an int >= 1, got 0"):
        time_interleaved({"a": lambda: None}, repeats=0)


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
    assert "| accuracy goes up | paper | 0.93 | - | 1 | >= 0.9 | held | 3 seeds |" in md
    assert "gap closes \\| pipes escaped" in md and "| NOT HELD |" in md
    assert "- paper claims: 1 held, 1 not held, 0 inconclusive" in md
    assert "Intervals: 95% Student-t over the seeds" in md
    assert "![claims](claims.png)" in md
    assert "| method | accuracy | gap |" in md and "| faro |  | 0.01 |" in md
    assert "![curve](curve.png)" in md
    assert "![curve](demo/curve.png)" in report.to_markdown(relative_to=tmp_path)
    data = json.loads((tmp_path / "demo" / "report.json").read_text())
    assert [c["held"] for c in data["claims"]] == [True, False]
    assert [c["verdict"] for c in data["claims"]] == ["held", "not held"]
    assert data["counts"]["paper"] == {"held": 1, "not held": 1, "inconclusive": 0}
    assert not report.all_held
    assert report.summary().startswith("demo: paper claims 1 held / 1 not held / 0 inconclusive")
    assert (tmp_path / "demo" / "claims.png").read_bytes()[:4] == b"\x89PNG"


# Student-t quantiles from scipy.stats.t.ppf(0.975, df), written out so the test needs no scipy.
@pytest.mark.parametrize(
    ("df", "quantile"),
    [
        (1, 12.7062),
        (2, 4.3027),
        (4, 2.7764),
        (9, 2.2622),
        (30, 2.0423),
        (40, 2.0211),
        (120, 1.9799),
    ],
)
def test_t_quantile_matches_reference(df, quantile):
    assert t_quantile_975(df) == pytest.approx(quantile, abs=1.5e-3)


def test_t_quantile_rejects_bad_df():
    with pytest.raises(ValueError, match="df must be an int >= 1, got 0"):
        t_quantile_975(0)


def test_claim_from_samples_mean_interval_and_verdicts():
    samples = [0.80, 0.84, 0.88]
    claim = Claim.from_samples("acc", samples, 0.7, ">=", source="paper", reference="Table 2")
    assert claim.measured == pytest.approx(0.84) and claim.seeds == 3
    half = 4.3027 * 0.04 / math.sqrt(3)
    low, high = claim.interval
    assert low == pytest.approx(0.84 - half, abs=1e-3) and high == pytest.approx(
        0.84 + half, abs=1e-3
    )
    assert claim.verdict == "held" and claim.held
    assert "3 seeds" in claim.interval_method
    # The same seeds against a threshold inside the interval cannot decide.
    straddled = Claim.from_samples("acc", samples, 0.85, ">=")
    assert straddled.verdict == "inconclusive" and not straddled.held
    # A threshold beyond the whole interval is not held.
    assert Claim.from_samples("acc", samples, 1.2, ">=").verdict == "not held"
    # "<=" mirrors ">=": the high end must pass.
    assert Claim.from_samples("err", samples, 1.2, "<=").verdict == "held"
    assert Claim.from_samples("err", samples, 0.85, "<=").verdict == "inconclusive"
    assert Claim.from_samples("err", samples, 0.5, "<").verdict == "not held"


def test_claim_single_measurement_keeps_exact_behaviour():
    claim = Claim("exact", 0.0, 0.0, "<=", source="package")
    assert claim.interval == (0.0, 0.0) and claim.verdict == "held" and claim.seeds == 1
    assert Claim("exact", 1.0, 0.0, "<=").verdict == "not held"


def test_claim_with_nan_sample_is_not_held():
    assert Claim.from_samples("acc", [0.9, math.nan, 0.95], 0.5).verdict == "not held"


def test_claim_explicit_interval_needs_a_method():
    claim = Claim(
        "acc", 0.9, 0.8, explicit_interval=(0.85, 0.95), explicit_interval_method="bootstrap"
    )
    assert claim.interval == (0.85, 0.95) and claim.verdict == "held"
    report = Report("demo", Path("unused"))
    report.claims.append(claim)
    assert "(interval: bootstrap)" in report.to_markdown()
    with pytest.raises(ValueError, match="explicit_interval_method"):
        Claim("acc", 0.9, 0.8, explicit_interval=(0.85, 0.95))
    with pytest.raises(ValueError, match="low <= high"):
        Claim("acc", 0.9, 0.8, explicit_interval=(0.95, 0.85), explicit_interval_method="b")


def test_claim_rejects_inconsistent_samples_and_bad_source():
    with pytest.raises(ValueError, match="measured must be the mean of samples"):
        Claim("s", 0.5, 0.1, samples=(0.1, 0.2))
    with pytest.raises(ValueError, match="source must be one of"):
        Claim("s", 0.5, 0.1, source="blog")
    with pytest.raises(TypeError, match=r"samples\[1\] must be a number"):
        Claim.from_samples("s", [0.1, "x"], 0.1)
    with pytest.raises(ValueError, match="at least one measurement"):
        Claim.from_samples("s", [], 0.1)


def test_report_counts_split_paper_and_package_claims(tmp_path):
    report = Report("demo", tmp_path)
    report.add_claim("a", [0.9, 0.91, 0.92], 0.5)
    report.add_claim("b", [0.1, 0.9, 0.5], 0.5)
    report.add_claim("c", 0.0, 0.0, "<=", source="package")
    assert report.counts() == {
        "paper": {"held": 1, "not held": 0, "inconclusive": 1},
        "package": {"held": 1, "not held": 0, "inconclusive": 0},
    }
    import numpy as np

    assert report.add_claim("d", np.array([1.0, 2.0, 3.0]), 0.5).seeds == 3
    assert report.add_claim("e", np.float64(1.0), 0.5).seeds == 1
    data = report.to_dict()["claims"][0]
    assert data["samples"] == [0.9, 0.91, 0.92] and data["seeds"] == 3
    assert data["source"] == "paper" and len(data["interval"]) == 2


def test_compare_pins_threads_and_records_them():
    import torch

    before = torch.get_num_threads()
    seen = []
    result = compare(
        lambda: seen.append(torch.get_num_threads()), lambda: None, name="t", threads=1, repeats=2
    )
    assert set(seen) == {1} and result.meta["threads"] == 1
    assert torch.get_num_threads() == before
