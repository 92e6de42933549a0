"""Reproduction at laptop scale: E1 (hard family), E2 (digits saturation), E3 (compression of
hidden layers), E4 (merging input coordinates).

Thresholds come from the paper's qualitative claims and the research pilot's numbers (stated in
each claim's text), never from this run.
"""

from __future__ import annotations

import math
import os
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


def _experiment_e1(report: Report, quick: bool) -> None:
    # Quick: the smallest grid that still tests every claim: B = 1 (B²/√d0 ≤ 1) and B = 16
    # (B²/√d0 ≥ 8) at d0 = 16 and 256, and the sparse net; full: the whole grid.
    dims = (16, 256) if quick else (16, 256, 1024)
    bounds = (1.0, 16.0) if quick else (1.0, 4.0, 16.0)
    generator = torch.Generator().manual_seed(0)
    results: dict[str, list[tuple[int, float]]] = {}
    for dim in progress(dims, desc="E1"):
        x, y = sample_hard_family(4096, dim, generator=generator)
        x_test, y_test = sample_hard_family(2048, dim, generator=generator)
        models = _hard_family_models(dim, bounds, unconstrained=not quick, seed=0)
        for name, model in models.items():
            train(model, x, y, PILOT_CONFIG)
            score = r2_score(model, x_test, y_test)
            results.setdefault(name, []).append((dim, score))
            report.add_metrics(
                experiment="E1", model=name, d0=dim, width=PILOT_WIDTH, test_r2=score
            )

    def dense_scores(keep):
        return [
            score
            for b in bounds
            for dim, score in results[f"dense B={b:g}"]
            if keep(b * b / math.sqrt(dim))
        ]

    low = dense_scores(lambda gain: gain <= 1.0)
    high = dense_scores(lambda gain: gain >= 8.0)
    budget = (
        f"width {PILOT_WIDTH}, {PILOT_CONFIG.steps} Adam steps of batch {PILOT_CONFIG.batch_size}"
    )
    report.add_claim(
        "E1: dense networks collapse when B²/√d0 ≤ 1 (pilot: R² ≈ 0 there); max test R²",
        max(low),
        0.2,
        "<=",
        details=f"{len(low)} dense runs with B²/√d0 ≤ 1; {budget}; d0 in {dims}, B in {bounds}",
    )
    report.add_claim(
        "E1: dense networks fit the witness when B²/√d0 ≥ 8 (pilot: R² ≥ 0.95); min test R²",
        min(high),
        0.9,
        ">=",
        details=f"{len(high)} dense runs with B²/√d0 ≥ 8; {budget}",
    )
    sparse = [score for _, score in results["sparse B=4"]]
    report.add_claim(
        "E1: a fan-in-1 network keeps fitting the witness as d0 grows (pilot: R² ≥ 0.96); min R²",
        min(sparse),
        0.9,
        ">=",
        details=f"d0 in {dims}; {budget}",
    )
    fig, ax = new_figure()
    for b in bounds:
        points = results[f"dense B={b:g}"]
        ax.semilogx(
            [b * b / math.sqrt(d) for d, _ in points],
            [s for _, s in points],
            "o-",
            label=f"dense B={b:g}",
        )
    ax.axhline(min(sparse), color="k", linestyle="--", label="sparse B=4 (min over d0)")
    if "unconstrained" in results:
        ax.axhline(
            min(s for _, s in results["unconstrained"]),
            color="grey",
            linestyle=":",
            label="unconstrained (min over d0)",
        )
    ax.set_xlabel("B² / √d0")
    ax.set_ylabel("test R²")
    ax.set_title(f"E1: witness f*(x) = mean |x_i − ½|, d0 in {dims}")
    ax.legend(fontsize=7)
    report.save_figure(fig, "e1_collapse")


def _experiment_e2(report: Report, quick: bool) -> None:
    x_train, y_train, x_test, y_test = load_digits_split()
    widths = (8, 32, 128, 512) if quick else (4, 16, 64, 256, 1024)
    bounds = (1.0, 4.0, 10.0)
    config = TrainConfig(steps=500 if quick else 2000, batch_size=128)
    curves: dict[str, list[float]] = {}
    for width in progress(widths, desc="E2"):
        models = {f"dense B={b:g}": DenseMLP([64, width, 10], b) for b in bounds}
        models["unconstrained"] = MLP([64, width, 10])
        for name, model in models.items():
            train(model, x_train, y_train, config, task="classification")
            score = accuracy(model, x_test, y_test)
            curves.setdefault(name, []).append(score)
            report.add_metrics(experiment="E2", model=name, width=width, test_accuracy=score)
    gap = max(curves["unconstrained"]) - max(curves["dense B=1"])
    report.add_claim(
        "E2: on digits the unconstrained net beats dense B=1 at every width tried (best accuracy gap)",
        gap,
        0.05,
        ">=",
        details=f"widths {widths}, {config.steps} Adam steps, load_digits 75/25 split",
    )
    plateau = curves["dense B=1"][-1] - curves["dense B=1"][1]
    report.add_claim(
        f"E2: dense B=1 saturates: accuracy gain from width {widths[1]} to {widths[-1]}",
        plateau,
        0.02,
        "<=",
        details="the paper's saturation: widening a dense net stops helping",
    )
    fig, ax = new_figure()
    for name, scores in curves.items():
        ax.semilogx(widths, scores, "o-", label=name)
    ax.set_xlabel("hidden width")
    ax.set_ylabel("test accuracy")
    ax.set_title("E2: width saturation on load_digits")
    ax.legend(fontsize=7)
    report.save_figure(fig, "e2_saturation")


# E3/E4 nets: d0 = 16 and B = 16 (B²/√d0 = 64), where a dense net fits the witness at the
# pilot's budget (E1), so that "compresses well" is not "is nearly constant". At the research
# notes' d0 = 64, B = 4 (0.1.0) the dense net reached test R² 0.03.
E3_DIM = 16
E3_BOUND = 16.0


def _experiment_e3(report: Report, quick: bool) -> dict[str, tuple[torch.nn.Module, float]]:
    widths = (256, 1024) if quick else (1024, 4096)
    parts = (2, 8, 16, 64)
    generator = torch.Generator().manual_seed(1)
    x, y = sample_hard_family(4096, E3_DIM, generator=generator)
    # Features and errors on held-out samples of the training distribution, divided by the
    # witness's std there (the same scale for both nets); a net's own output std is recorded too.
    x_eval, y_eval = sample_hard_family(2048, E3_DIM, generator=generator)
    target_std = float(y_eval.std(correction=0))
    errors: dict[tuple[str, int], list[float]] = {}
    scores: dict[tuple[str, int], float] = {}
    widest: dict[str, tuple[torch.nn.Module, float]] = {}
    for width in progress(widths, desc="E3"):
        for name, model in (
            (f"dense B={E3_BOUND:g}", DenseMLP([E3_DIM, width, 1], E3_BOUND)),
            ("unconstrained", MLP([E3_DIM, width, 1])),
        ):
            initial_cut = cut_norm_greedy(E3_DIM * model.affine_layers()[0][0]).normalized
            train(model, x, y, PILOT_CONFIG)
            trained_cut = cut_norm_greedy(E3_DIM * model.affine_layers()[0][0]).normalized
            scores[(name, width)] = r2_score(model, x_eval, y_eval)
            best = []
            for k in parts:
                row = {}
                for method in ("weak_regularity", "kmeans"):
                    result = compress(model, k, method=method, inputs=x_eval)
                    row[method] = result.rms_error / target_std
                    report.add_metrics(
                        experiment="E3",
                        model=name,
                        width=width,
                        parts=k,
                        method=method,
                        parts_used=result.parts_used[0],
                        relative_rms_error=result.relative_rms_error,
                        rms_error=result.rms_error,
                        rms_error_over_target_std=result.rms_error / target_std,
                        max_error=result.max_error,
                    )
                best.append(min(row.values()))
            errors[(name, width)] = best
            report.add_metrics(
                experiment="E3",
                model=name,
                width=width,
                test_r2=scores[(name, width)],
                output_std_over_target_std=float(
                    model(x_eval).detach().std(correction=0) / target_std
                ),
                normalised_cut_V1_init=initial_cut,
                normalised_cut_V1_trained=trained_cut,
            )
            widest[name] = (model, scores[(name, width)])
    dense = f"dense B={E3_BOUND:g}"
    at = parts.index(16)
    dense_errors = [errors[(dense, w)][at] for w in widths]
    free_errors = [errors[("unconstrained", w)][at] for w in widths]
    free_scores = ", ".join(f"{scores[('unconstrained', w)]:.3f}" for w in widths)
    report.add_claim(
        f"E3: the {dense} net being compressed has learned the witness (E1 threshold); "
        f"min test R² over widths {widths}",
        min(scores[(dense, w)] for w in widths),
        0.9,
        ">=",
        details=f"d0 = {E3_DIM}, B²/√d0 = {E3_BOUND**2 / math.sqrt(E3_DIM):g}; unconstrained "
        f"R² {free_scores}",
    )
    report.add_claim(
        f"E3: a trained dense net compresses to 16 ≪ {widths[-1]} neurons (RMS error / target std, best method)",
        dense_errors[-1],
        0.1,
        "<=",
        details="RMS output error over the witness's std, both on 2048 held-out samples of the "
        "training distribution; relative_rms_error (over the net's own output std) is in the metrics",
    )
    report.add_claim(
        f"E3: the dense net's error at 16 parts does not grow with width ({widths[0]} → {widths[-1]}): ratio",
        dense_errors[-1] / max(dense_errors[0], 1e-12),
        2.0,
        "<=",
    )
    report.add_claim(
        "E3: the unconstrained net does not compress as well: its error at 16 parts over the dense net's",
        free_errors[-1] / max(dense_errors[-1], 1e-12),
        2.0,
        ">=",
    )
    fig, ax = new_figure()
    for (name, width), values in errors.items():
        ax.loglog(
            parts, values, "o-", label=f"{name}, width {width} (R² {scores[(name, width)]:.2f})"
        )
    ax.minorticks_off()
    ax.set_xticks(parts, [str(k) for k in parts])
    ax.set_xlabel("parts per hidden layer")
    ax.set_ylabel("RMS output error / target std")
    ax.set_title(f"E3: compression by merging neurons (d0 = {E3_DIM})")
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
    with torch_threads(1):
        _experiment_e1(report, quick)
        _experiment_e2(report, quick)
        widest = _experiment_e3(report, quick)
        _experiment_e4(report, widest)
    report.notes.append(
        "Dense layers use the tanh parametrisation W = (B/fan_in)·tanh(V), b = B·tanh(c); "
        "Adam lr 3e-3. E1 and E3 train at the research pilot's budget (width 512 in E1, 1500 "
        "Adam steps of batch 256) in both modes; quick mode runs a reduced E1 grid "
        "(d0 in {16, 256}, B in {1, 16}, sparse B=4; no unconstrained net). "
        f"E3/E4 use d0 = {E3_DIM}, B = {E3_BOUND:g} so that the dense net has learned the "
        "witness; features and errors are taken on held-out samples of the witness family. "
        "E4 merges the input coordinates of E3's widest nets into blocks (hidden layer kept) and "
        "evaluates each net on a pair of inputs with equal block averages."
    )
    report.write()
    return report
