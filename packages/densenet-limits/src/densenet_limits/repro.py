"""Reproduction at laptop scale: E1 (hard family), E2 (digits saturation), E3 (compression of
hidden layers), E4 (merging input coordinates).

Thresholds come from the paper's qualitative claims and the research pilot's numbers (stated in
each claim's text), never from this run.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import torch

from densenet_limits.compression import compress
from densenet_limits.hard_functions import block_average_pairs, sample_hard_family, witness
from densenet_limits.networks import MLP, DenseMLP, SparseMLP
from densenet_limits.training import TrainConfig, accuracy, load_digits_split, r2_score, train
from kernelkit.cutnorm import cut_norm_greedy
from kernelkit.repro import Report, new_figure
from kernelkit.utils import progress, seed_everything, torch_threads

__all__ = ["run"]


# The research pilot's E1 budget (width 512, 1500 Adam steps of batch 256), used in both modes:
# at a smaller budget no dense net fits the witness, whatever B (0.1.0's quick mode).
PILOT_WIDTH = 512
PILOT_CONFIG = TrainConfig(steps=1500, batch_size=256)


def _hard_family_models(dim: int, bounds: tuple[float, ...], unconstrained: bool, seed: int):
    models = {f"dense B={b:g}": DenseMLP([dim, PILOT_WIDTH, 1], b, seed=seed) for b in bounds}
    models["sparse B=4"] = SparseMLP([dim, PILOT_WIDTH, 1], 4.0, seed=seed)
    if unconstrained:
        models["unconstrained"] = MLP([dim, PILOT_WIDTH, 1], seed=seed)
    return models


def _nonlinear_fraction(model: torch.nn.Module, x: torch.Tensor) -> float:
    """Fraction of first-layer ReLU units whose on/off state changes somewhere on ``x``.

    A unit that is off on every input is constant, and one that is on on every input is affine in
    ``x``; only the rest bend the function. A net whose units all stay on one side of their kink
    is affine on the data and cannot fit the (non-linear) witness, whatever its width.
    """
    with torch.no_grad():
        on = model.layers[0](x) > 0
    flips = on.any(dim=0) & ~on.all(dim=0)
    return float(flips.double().mean())


# The fan-in-1 (sparse) net gets 4x the pilot's steps: at 1500 it reached R² 0.89 at d0 = 256,
# still rising; the claim is about what the architecture can fit, not about a step budget.
SPARSE_CONFIG = TrainConfig(steps=6000, batch_size=256)


def _experiment_e1(report: Report, quick: bool) -> None:
    # Quick: the smallest grid that still tests every claim: B = 1 (B²/√d0 ≤ 1) and B = 16
    # (B²/√d0 ≥ 8) at d0 = 16 and 256, and the sparse net; full: the whole grid.
    dims = (16, 256) if quick else (16, 256, 1024)
    bounds = (1.0, 16.0) if quick else (1.0, 4.0, 16.0)
    seeds = range(3 if quick else 5)
    # results[name][seed] = [(d0, test R², fraction of units that bend on the data)]
    results: dict[str, list[list[tuple[int, float, float]]]] = {}
    for seed in progress(seeds, desc="E1"):
        generator = torch.Generator().manual_seed(seed)
        for dim in dims:
            x, y = sample_hard_family(4096, dim, generator=generator)
            x_test, y_test = sample_hard_family(2048, dim, generator=generator)
            models = _hard_family_models(dim, bounds, unconstrained=not quick, seed=seed)
            for name, model in models.items():
                train(model, x, y, SPARSE_CONFIG if name.startswith("sparse") else PILOT_CONFIG)
                score = r2_score(model, x_test, y_test)
                bending = _nonlinear_fraction(model, x_test)
                results.setdefault(name, [[] for _ in seeds])[seed].append((dim, score, bending))
                report.add_metrics(
                    experiment="E1",
                    seed=seed,
                    model=name,
                    d0=dim,
                    width=PILOT_WIDTH,
                    test_r2=score,
                    units_bending_on_data=bending,
                )

    def dense_runs(seed, keep):
        """(test R², bending fraction) of seed's dense runs whose B²/√d0 satisfies ``keep``."""
        return [
            (score, bending)
            for b in bounds
            for dim, score, bending in results[f"dense B={b:g}"][seed]
            if keep(b * b / math.sqrt(dim))
        ]

    budget = (
        f"width {PILOT_WIDTH}, {PILOT_CONFIG.steps} Adam steps of batch {PILOT_CONFIG.batch_size}"
    )
    low = [max(r for r, _ in dense_runs(seed, lambda gain: gain <= 1.0)) for seed in seeds]
    high = [min(r for r, _ in dense_runs(seed, lambda gain: gain >= 8.0)) for seed in seeds]
    high_bending = [min(b for _, b in dense_runs(seed, lambda gain: gain >= 8.0)) for seed in seeds]
    report.add_claim(
        "E1: dense networks collapse when B²/√d0 ≤ 1 (pilot: R² ≈ 0 there); max test R² per seed",
        low,
        0.2,
        "<=",
        source="package",
        details=f"the research pilot's heuristic, not the paper's theorem; dense runs with "
        f"B²/√d0 ≤ 1; {budget}; d0 in {dims}, B in {bounds}, seeds {list(seeds)}",
    )
    report.add_claim(
        "E1: dense networks fit the witness when B²/√d0 ≥ 8 (pilot: R² ≥ 0.95); min test R² per seed",
        high,
        0.9,
        ">=",
        source="package",
        details="the research pilot's heuristic, not the paper's theorem. Diagnosis measured: the "
        "smallest fraction of first-layer units whose ReLU state changes on the test data is "
        + ", ".join(f"{b:.3f}" for b in high_bending)
        + " per seed (the rest are off everywhere or affine on the data); "
        + budget,
    )
    sparse = [min(score for _, score, _ in results["sparse B=4"][seed]) for seed in seeds]
    report.add_claim(
        "E1: a fan-in-1 network keeps fitting the witness as d0 grows (pilot: R² ≥ 0.96); min R² over d0 per seed",
        sparse,
        0.9,
        ">=",
        reference="the paper's contrast: fan-in-bounded (sparse) ReLU nets stay universal",
        details=f"d0 in {dims}; width {PILOT_WIDTH}, {SPARSE_CONFIG.steps} Adam steps of batch "
        f"{SPARSE_CONFIG.batch_size} (the pilot's 1500 left it at R² 0.89, still rising)",
    )
    fig, ax = new_figure()
    for b in bounds:
        points = results[f"dense B={b:g}"][0]
        ax.semilogx(
            [b * b / math.sqrt(d) for d, _, _ in points],
            [s for _, s, _ in points],
            "o-",
            label=f"dense B={b:g}",
        )
    ax.axhline(min(sparse), color="k", linestyle="--", label="sparse B=4 (min over d0, seeds)")
    if "unconstrained" in results:
        ax.axhline(
            min(s for _, s, _ in results["unconstrained"][0]),
            color="grey",
            linestyle=":",
            label="unconstrained (min over d0)",
        )
    ax.set_xlabel("B² / √d0")
    ax.set_ylabel("test R² (seed 0)")
    ax.set_title(f"E1: witness f*(x) = mean |x_i − ½|, d0 in {dims}")
    ax.legend(fontsize=7)
    report.save_figure(fig, "e1_collapse")


def _experiment_e2(report: Report, quick: bool) -> None:
    x_train, y_train, x_test, y_test = load_digits_split()
    widths = (8, 32, 128, 512) if quick else (4, 16, 64, 256, 1024)
    bounds = (1.0, 4.0, 10.0)
    seeds = range(3 if quick else 5)
    # curves[name][seed] = test accuracy per width
    curves: dict[str, list[list[float]]] = {}
    for seed in progress(seeds, desc="E2"):
        config = TrainConfig(steps=500 if quick else 2000, batch_size=128, seed=seed)
        for width in widths:
            models = {f"dense B={b:g}": DenseMLP([64, width, 10], b, seed=seed) for b in bounds}
            models["unconstrained"] = MLP([64, width, 10], seed=seed)
            for name, model in models.items():
                train(model, x_train, y_train, config, task="classification")
                score = accuracy(model, x_test, y_test)
                curves.setdefault(name, [[] for _ in seeds])[seed].append(score)
                report.add_metrics(
                    experiment="E2", seed=seed, model=name, width=width, test_accuracy=score
                )
    report.add_claim(
        "E2: on digits the unconstrained net beats dense B=1 at every width tried (best accuracy gap)",
        [max(curves["unconstrained"][seed]) - max(curves["dense B=1"][seed]) for seed in seeds],
        0.05,
        ">=",
        reference="the paper's saturation experiment (MNIST): dense nets fall short of free ones",
        details=f"per seed; widths {widths}, {config.steps} Adam steps, load_digits 75/25 split",
    )
    report.add_claim(
        f"E2: dense B=1 saturates: accuracy gain from width {widths[1]} to {widths[-1]}",
        [curves["dense B=1"][seed][-1] - curves["dense B=1"][seed][1] for seed in seeds],
        0.02,
        "<=",
        reference="the paper's saturation: widening a dense net stops helping",
        details="per seed; threshold 2 points, fixed in 0.1.0",
    )
    fig, ax = new_figure()
    for name, per_seed in curves.items():
        mean = [sum(run[i] for run in per_seed) / len(per_seed) for i in range(len(widths))]
        ax.semilogx(widths, mean, "o-", label=name)
    ax.set_xlabel("hidden width")
    ax.set_ylabel(f"test accuracy (mean of {len(seeds)} seeds)")
    ax.set_title("E2: width saturation on load_digits")
    ax.legend(fontsize=7)
    report.save_figure(fig, "e2_saturation")


# E3/E4 nets: d0 = 64 and B = 4, where the density constraint binds (|W1| ≤ B/d0 = 0.0625, below
# a default initialisation's 1/√d0 = 0.125). 0.1.x used d0 = 16, B = 16, where |W1| ≤ 1 is looser
# than the initialisation, so its "dense" net was unconstrained in effect. Errors are measured
# against each net's own output spread (RMS(f - g) / std f on held-out samples of its training
# distribution), which is what the compression theorem bounds, so a net that learned little is
# still a fair test: its output varies, and the theorem speaks about that variation.
E3_DIM = 64
E3_BOUND = 4.0


def _experiment_e3(report: Report, quick: bool) -> dict[str, tuple[torch.nn.Module, float]]:
    widths = (128, 512) if quick else (1024, 4096)
    parts = (2, 8, 16, 64)
    seeds = range(3 if quick else 5)
    dense = f"dense B={E3_BOUND:g}"
    # errors[(name, width)][seed] = best relative RMS error per parts count
    errors: dict[tuple[str, int], list[list[float]]] = {}
    widest: dict[str, tuple[torch.nn.Module, float]] = {}
    for seed in progress(seeds, desc="E3"):
        generator = torch.Generator().manual_seed(100 + seed)
        x, y = sample_hard_family(4096, E3_DIM, generator=generator)
        x_eval, y_eval = sample_hard_family(2048, E3_DIM, generator=generator)
        target_std = float(y_eval.std(correction=0))
        for width in widths:
            for name, model in (
                (dense, DenseMLP([E3_DIM, width, 1], E3_BOUND, seed=seed)),
                ("unconstrained", MLP([E3_DIM, width, 1], seed=seed)),
            ):
                initial_cut = cut_norm_greedy(E3_DIM * model.affine_layers()[0][0]).normalized
                train(model, x, y, TrainConfig(steps=PILOT_CONFIG.steps, batch_size=256, seed=seed))
                trained_cut = cut_norm_greedy(E3_DIM * model.affine_layers()[0][0]).normalized
                score = r2_score(model, x_eval, y_eval)
                best = []
                for k in parts:
                    row = {}
                    for method in ("weak_regularity", "kmeans"):
                        result = compress(model, k, method=method, inputs=x_eval)
                        row[method] = result.relative_rms_error
                        report.add_metrics(
                            experiment="E3",
                            seed=seed,
                            model=name,
                            width=width,
                            parts=k,
                            method=method,
                            parts_used=result.parts_used[0],
                            relative_rms_error=result.relative_rms_error,
                            rms_error_over_target_std=result.rms_error / target_std,
                            max_error=result.max_error,
                        )
                    best.append(min(row.values()))
                errors.setdefault((name, width), [[] for _ in seeds])[seed] = best
                report.add_metrics(
                    experiment="E3",
                    seed=seed,
                    model=name,
                    width=width,
                    test_r2=score,
                    output_std_over_target_std=float(
                        model(x_eval).detach().std(correction=0) / target_std
                    ),
                    normalised_cut_V1_init=initial_cut,
                    normalised_cut_V1_trained=trained_cut,
                )
                if seed == 0:
                    widest[name] = (model, score)
    at = parts.index(16)
    dense_wide = [errors[(dense, widths[-1])][seed][at] for seed in seeds]
    dense_narrow = [errors[(dense, widths[0])][seed][at] for seed in seeds]
    free_wide = [errors[("unconstrained", widths[-1])][seed][at] for seed in seeds]
    setting = (
        f"d0 = {E3_DIM}, B = {E3_BOUND:g} (|W1| ≤ {E3_BOUND / E3_DIM:g}, binding); "
        f"{PILOT_CONFIG.steps} Adam steps on the witness family; best of weak-regularity and "
        f"k-means merging; error = RMS(f - g) / std f on 2048 held-out samples; seeds {list(seeds)}"
    )
    report.add_claim(
        f"E3: a trained dense net compresses to 16 ≪ {widths[-1]} neurons (RMS error / the net's own output std)",
        dense_wide,
        0.1,
        "<=",
        reference="the compression theorem: a B-dense net is close to one with a width-independent number of neurons",
        details="per seed; threshold 0.1 fixed in 0.1.0; " + setting,
    )
    report.add_claim(
        f"E3: the dense net's error at 16 parts does not grow with width ({widths[0]} → {widths[-1]}): ratio",
        [wide / max(narrow, 1e-12) for wide, narrow in zip(dense_wide, dense_narrow, strict=True)],
        2.0,
        "<=",
        reference="the compression bound does not depend on the width",
        details="per seed; " + setting,
    )
    report.add_claim(
        "E3: the unconstrained net does not compress as well: its error at 16 parts over the dense net's",
        [free / max(d, 1e-12) for free, d in zip(free_wide, dense_wide, strict=True)],
        2.0,
        ">=",
        source="package",
        details="per seed; our contrast (the theorem needs the density bound); " + setting,
    )
    fig, ax = new_figure()
    for (name, width), per_seed in errors.items():
        ax.loglog(parts, per_seed[0], "o-", label=f"{name}, width {width} (seed 0)")
    ax.minorticks_off()
    ax.set_xticks(parts, [str(k) for k in parts])
    ax.set_xlabel("parts per hidden layer")
    ax.set_ylabel("RMS output error / the net's output std")
    ax.set_title(f"E3: compression by merging neurons (d0 = {E3_DIM}, B = {E3_BOUND:g})")
    ax.legend(fontsize=7)
    report.save_figure(fig, "e3_compression")
    return widest


def _experiment_e4(report: Report, nets: dict[str, tuple[torch.nn.Module, float]]) -> None:
    """Input-layer partition of E3's widest nets: error against blocks, equal-average pairs."""
    blocks = (1, 2, 4, 8, 16)
    generator = torch.Generator().manual_seed(4)
    x_eval, y_eval = sample_hard_family(2048, E3_DIM, generator=generator)
    target_std = float(y_eval.std(correction=0))
    curves: dict[str, list[float]] = {}
    for name, (model, score) in nets.items():
        width = model.widths[1]
        for count in blocks:
            result = compress(model, width, inputs=x_eval, input_parts=count)
            centre, spread_out = block_average_pairs(result.input_labels)
            with torch.no_grad():
                pair = model(torch.stack([centre, spread_out]))[:, 0]
            witness_gap = float(witness(spread_out) - witness(centre))
            output_gap = float((pair[1] - pair[0]).abs())
            curves.setdefault(name, []).append(result.rms_error / target_std)
            report.add_metrics(
                experiment="E4",
                model=name,
                width=width,
                test_r2=score,
                input_parts=count,
                input_parts_used=result.input_parts_used,
                rms_error_over_target_std=result.rms_error / target_std,
                witness_gap_on_pair=witness_gap,
                net_output_gap_on_pair=output_gap,
                # Any g with g(x) = g(x') errs by at least half the witness gap on one of them;
                # the original net, whose outputs differ, by at least this much.
                pair_error_lower_bound=max(0.0, (witness_gap - output_gap) / 2),
            )
    fig, ax = new_figure()
    for name, values in curves.items():
        ax.semilogx(blocks, values, "o-", base=2, label=f"{name} (R² {nets[name][1]:.2f})")
    ax.set_xlabel("input blocks (first layer reads block averages)")
    ax.set_ylabel("RMS output error / target std")
    ax.set_title(f"E4: merging input coordinates (d0 = {E3_DIM})")
    ax.legend(fontsize=7)
    report.save_figure(fig, "e4_input_partition")


def run(out_dir: str | os.PathLike, quick: bool = True) -> Report:
    """Run E1–E3 and write ``report.md``/``report.json`` and figures into ``out_dir``."""
    report = Report("densenet-limits", Path(out_dir), quick=quick)
    seed_everything(0)
    # Many small products: one thread is much faster than two on a shared machine.
    seconds = {}
    with torch_threads(1):
        for name, experiment in (("E1", _experiment_e1), ("E2", _experiment_e2)):
            started = time.perf_counter()
            experiment(report, quick)
            seconds[name] = time.perf_counter() - started
        started = time.perf_counter()
        widest = _experiment_e3(report, quick)
        seconds["E3"] = time.perf_counter() - started
        started = time.perf_counter()
        _experiment_e4(report, widest)
        seconds["E4"] = time.perf_counter() - started
    report.notes.append(
        "Wall seconds per experiment on this run: "
        + ", ".join(f"{name} {value:.0f}" for name, value in seconds.items())
    )
    report.notes.append(
        "Dense layers use the tanh parametrisation W = (B/fan_in)·tanh(V), b = B·tanh(c); "
        "Adam lr 3e-3. E1 and E3 train at the research pilot's budget (width 512 in E1, 1500 "
        "Adam steps of batch 256) in both modes; quick mode runs a reduced E1 grid "
        "(d0 in {16, 256}, B in {1, 16}, sparse B=4; no unconstrained net). "
        f"E3/E4 use d0 = {E3_DIM}, B = {E3_BOUND:g}, where the density bound binds; E3's errors "
        "are relative to each net's own output spread on held-out samples of the witness family. "
        "E4 merges the input coordinates of E3's widest nets into blocks (hidden layer kept) and "
        "evaluates each net on a pair of inputs with equal block averages."
    )
    report.write()
    return report
