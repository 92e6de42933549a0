"""Quick reproduction: so(2) discovery (SEMoLA and a LieGAN-style baseline), its absence on a
control, and the rotated-digits shift test.

Claims and thresholds come from the issue (|cos| > 0.95 for so(2); SEMoLA close to
ground-truth augmentation and robust to the orientation shift) or are stated a priori below;
they are never fitted to the result.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from pathlib import Path

import torch

from kernelkit.repro import Report, new_figure
from kernelkit.utils import torch_threads
from semola.data import (
    TaskData,
    make_digits,
    make_no_symmetry_points,
    make_rotation_points,
    so2_generator,
)
from semola.loss import SEMoLALossConfig
from semola.readout import compare_algebras, symmetry_signature
from semola.training import METHODS, TrainConfig, build_trainer, evaluate, fit

__all__ = ["plot_generators", "run"]


def plot_generators(learned: torch.Tensor, reference: torch.Tensor | None, *, title: str = ""):
    """Heat maps of the learned generators (unit Frobenius norm, sign matched) beside the reference."""
    learned = learned.detach().to(torch.float64)
    learned = learned / learned.reshape(learned.shape[0], -1).norm(dim=-1)[:, None, None]
    panels = [("learned", matrix) for matrix in learned]
    if reference is not None:
        reference = reference.to(torch.float64)
        reference = (
            reference / reference.reshape(reference.shape[0], -1).norm(dim=-1)[:, None, None]
        )
        if (
            learned.shape[0] == 1
            and reference.shape[0] == 1
            and float((learned * reference).sum()) < 0
        ):
            panels = [("learned (sign flipped)", -learned[0])]
        panels += [("reference", matrix) for matrix in reference]
    dim = learned.shape[-1]
    gap = torch.full((dim, 1), float("nan"), dtype=torch.float64)
    canvas = torch.cat([torch.cat([matrix, gap], dim=1) for _, matrix in panels], dim=1)[:, :-1]
    figure, axes = new_figure(width=1.6 * len(panels) + 1.5, height=2.6)
    image = axes.imshow(canvas.numpy(), cmap="coolwarm", vmin=-1, vmax=1)
    for index, (label, _) in enumerate(panels):
        axes.text(index * (dim + 1) + (dim - 1) / 2, -0.8, label, ha="center", fontsize=8)
    axes.set_xticks([])
    axes.set_yticks([])
    axes.set_title(title, fontsize=9, pad=18)
    figure.colorbar(image, ax=axes, fraction=0.04)
    return figure


# Quick-mode discovery runs: batch 64, width 32, K = 2 views (the loss default is K = 4).
DISCOVERY_LOSS = SEMoLALossConfig(num_views=2)


def _discovery(task: TaskData, config: TrainConfig) -> tuple[float, float, torch.Tensor]:
    trainer = build_trainer(task, config, DISCOVERY_LOSS)
    fit(trainer, task, config)
    basis = trainer.augmenter.basis().detach()
    cosine = compare_algebras(basis, so2_generator()).score
    signature = symmetry_signature(
        trainer.base_model,
        trainer.augmenter,
        task.x_test,
        generator=torch.Generator().manual_seed(config.seed),
    )
    return cosine, signature.relative_equivariance_error, basis


def run(out_dir: str | os.PathLike, quick: bool = True) -> Report:
    """Run the reproduction and write ``report.md`` and figures into ``out_dir``.

    Torch runs on one thread: the models are small, and on a shared few-core CPU intra-op
    threads cost more than they give.
    """
    with torch_threads(1):
        return _run(Path(out_dir), quick)


def _run(out_dir: Path, quick: bool) -> Report:
    report = Report("semola", out_dir, quick=quick)
    # Three seeds left the control and both digits claims inconclusive in a first run (seed
    # spreads of 0.0-0.8 in |cos| and of 5-10 accuracy points); a seed costs a few seconds.
    seeds = range(5) if quick else range(10)
    steps = 200 if quick else 1500
    num_samples = 1024 if quick else 4096

    # 1. so(2) discovery on the 2-D rotation-invariant task, and the no-symmetry control.
    started = time.perf_counter()
    cosines, errors, control_cosines, control_errors = [], [], [], []
    for seed in seeds:
        config = TrainConfig(
            task="rotation2d",
            steps=steps,
            batch_size=64,
            hidden=32,
            seed=seed,
            num_samples=num_samples,
        )
        cosine, error, basis = _discovery(make_rotation_points(num_samples, seed=seed), config)
        cosines.append(cosine)
        errors.append(error)
        control_config = TrainConfig(
            task="no_symmetry2d",
            steps=steps,
            batch_size=64,
            hidden=32,
            seed=seed,
            num_samples=num_samples,
        )
        control_cosine, control_error, control_basis = _discovery(
            make_no_symmetry_points(num_samples, seed=seed), control_config
        )
        control_cosines.append(control_cosine)
        control_errors.append(control_error)
        report.add_metrics(
            experiment="2-D discovery",
            seed=seed,
            cos_so2=cosine,
            rel_equivariance_error=error,
            control_cos_so2=control_cosine,
            control_rel_equivariance_error=control_error,
        )
        if seed == 0:
            report.save_figure(
                plot_generators(basis, so2_generator(), title="rotation2d: learned vs so(2)"),
                "generators_rotation2d",
            )
            report.save_figure(
                plot_generators(
                    control_basis, so2_generator(), title="no-symmetry control vs so(2)"
                ),
                "generators_control",
            )
    discovery_seconds = time.perf_counter() - started
    report.add_claim(
        "SEMoLA recovers so(2) on the 2-D rotation-invariant task: |cos(L, J)| > 0.95",
        cosines,
        0.95,
        ">",
        source="paper",
        reference="SEMoLA/LieAugmenter: so(2) discovery (research note 2, E1)",
        details=f"per seed; {len(cosines)} seeds, {steps} steps, batch 64, K=2, N=4 points, {num_samples} samples;"
        f" all |cos| = {[round(c, 4) for c in cosines]}; {discovery_seconds:.1f} s for task + control",
    )
    report.add_claim(
        "No-symmetry control: the learned generator is not so(2) (|cos| < 0.95)",
        control_cosines,
        0.95,
        "<",
        source="package",
        details=f"per seed, a premise control of ours; y = sum_i (x_i[0] + x_i[1]^2); all |cos| = {[round(c, 4) for c in control_cosines]}",
    )
    report.add_claim(
        "Absence signature: the relative equivariance error on the control is >= 10x that on the symmetric task (log10 ratio >= 1)",
        [
            math.log10(max(control, 1e-12) / max(error, 1e-12))
            for control, error in zip(control_errors, errors, strict=True)
        ],
        1.0,
        ">=",
        source="paper",
        reference="SEMoLA/LieAugmenter: the equivariance error as a symmetry signature",
        details="per seed, log10 of control over symmetric error (the 10x threshold on a log"
        f" scale, where seed ratios are averaged fairly); median control {statistics.median(control_errors):.4g} vs symmetric {statistics.median(errors):.4g}"
        " (E||f(gx) - f(x)||^2 / Var f(x), 8 views of the test set)",
    )

    # 1b. LieGAN-style adversarial discovery on the same data (a reported comparison, no claim):
    # Gaussian coefficients N(0, 1), the same fixed-norm basis, a discriminator MLP on (x, y).
    # Also on training data with every orientation, where the input distribution itself is
    # rotation-invariant, since a GAN finds symmetries of the data distribution, not of y(x) alone.
    started = time.perf_counter()
    liegan = {"rotation2d": [], "rotation2d, all orientations": [], "no_symmetry2d": []}
    for seed in seeds:
        datasets = {
            "rotation2d": make_rotation_points(num_samples, seed=seed),
            "rotation2d, all orientations": make_rotation_points(
                num_samples, seed=seed, train_orientation=None
            ),
            "no_symmetry2d": make_no_symmetry_points(num_samples, seed=seed),
        }
        for name, data in datasets.items():
            config = TrainConfig(
                task=data.name,
                method="liegan",
                steps=steps,
                batch_size=64,
                hidden=32,
                seed=seed,
                num_samples=num_samples,
            )
            trainer = build_trainer(data, config)
            fit(trainer, data, config)
            cosine = compare_algebras(trainer.augmenter.basis().detach(), so2_generator()).score
            liegan[name].append(cosine)
            report.add_metrics(
                experiment="2-D discovery, LieGAN-style", data=name, seed=seed, cos_so2=cosine
            )
    liegan_seconds = time.perf_counter() - started
    for name, values in liegan.items():
        report.add_metrics(
            experiment="2-D discovery, |cos(L, J)| worst seed (best for the control)",
            data=name,
            liegan=max(values) if name == "no_symmetry2d" else min(values),
            semola=(
                max(control_cosines)
                if name == "no_symmetry2d"
                else min(cosines)
                if name == "rotation2d"
                else "not run"
            ),
            liegan_all=str([round(c, 4) for c in values]),
            liegan_seconds_all_runs=round(liegan_seconds, 1),
        )

    # 2. The 2-D task under an orientation shift: train on [0, 45 deg], test on all orientations.
    task = make_rotation_points(num_samples, seed=0)
    for method in METHODS:
        config = TrainConfig(task="rotation2d", method=method, steps=steps, num_samples=num_samples)
        trainer = build_trainer(task, config)
        fit(trainer, task, config)
        report.add_metrics(
            experiment="2-D shift (MSE, y standardised)", method=method, **evaluate(trainer, task)
        )

    # 3. Rotated digits: trained on +-30 deg, tested on +-30 deg and on all angles. An MLP on the
    # flattened pixels (small_cnn barely trains in a few hundred steps). Every augmenting method
    # draws coefficients from the same range, U[-1, 1] rad on the trace-normalised generator
    # (equal range), and every method gets the same number of training steps after SEMoLA's
    # discovery phase (SEMoLA trains discovery + the others' steps). Five seeds (ten in full
    # mode) per method. Ground truth over all angles (pi, the 0.1.0 baseline, which ignored the
    # configured range) and two SEMoLA ablations (a KL form of the equivariance term; a range
    # curriculum: discover at 1 rad, then widen to pi) are reported beside them.
    digits = make_digits(seed=0, max_samples=1000 if quick else None)
    digit_steps = 400 if quick else 2000
    discovery = digit_steps // 2
    digit_seeds = seeds
    variants = {
        "none": ("none", {}, {}),
        "augerino": ("augerino", {}, {}),
        "ground_truth": ("ground_truth", {}, {}),
        "ground_truth, all angles (pi)": ("ground_truth", {"coefficient_scale": math.pi}, {}),
        "semola": ("semola", {"discovery_steps": discovery}, {}),
        "semola, KL equivariance": (
            "semola",
            {"discovery_steps": discovery},
            {"equivariance_form": "kl"},
        ),
        "semola, range curriculum (1 -> pi)": (
            "semola",
            {"discovery_steps": discovery, "widened_scale": math.pi},
            {},
        ),
    }
    # The claims' four methods run every seed; the three ablations (reported, no claim) the first
    # three, to keep the quick repro in its time budget.
    ablations = {
        "ground_truth, all angles (pi)",
        "semola, KL equivariance",
        "semola, range curriculum (1 -> pi)",
    }
    results: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
    started = time.perf_counter()
    for seed in digit_seeds:
        for name, (method, overrides, loss_overrides) in variants.items():
            if name in ablations and seed >= 3:
                continue
            extra = overrides.get("discovery_steps", 0)
            config = TrainConfig(
                task="digits",
                method=method,
                steps=digit_steps + extra,
                batch_size=64,
                hidden=128,
                coefficient_scale=overrides.get("coefficient_scale", 1.0),
                discovery_steps=extra,
                widened_scale=overrides.get("widened_scale", 0.0),
                seed=seed,
            )
            trainer = build_trainer(digits, config, SEMoLALossConfig(num_views=2, **loss_overrides))
            fit(trainer, digits, config)
            metrics = evaluate(trainer, digits)
            results[name].append(metrics)
            row = {"experiment": "rotated digits", "method": name, "seed": seed, **metrics}
            if method == "semola":
                basis = trainer.augmenter.basis().detach()
                row["cos_so2"] = compare_algebras(basis, so2_generator()).score
                if seed == 0 and name == "semola":
                    report.save_figure(
                        plot_generators(basis, so2_generator(), title="digits: learned vs so(2)"),
                        "generators_digits",
                    )
            report.add_metrics(**row)
    digits_seconds = time.perf_counter() - started

    def shift(name):
        return [r["shift_accuracy"] for r in results[name]]

    setting = (
        f"{digit_steps} steps for every method after SEMoLA's {discovery} discovery steps, K=2,"
        f" MLP width 128, {digits.x_train.shape[0]} training digits, train angles +-30 deg,"
        f" coefficients U[-1, 1] rad for every augmenting method, seeds {list(digit_seeds)};"
        f" {digits_seconds:.0f} s for all {len(variants)} variants"
    )
    report.add_claim(
        "Rotated digits, all test angles: SEMoLA within 5 accuracy points of ground-truth augmentation at equal range",
        [gt - se for gt, se in zip(shift("ground_truth"), shift("semola"), strict=True)],
        0.05,
        "<=",
        source="paper",
        reference="SEMoLA/LieAugmenter: 'competitive with ground-truth augmentation' (research note 2)",
        details="per seed, ground-truth minus SEMoLA accuracy on all test angles; threshold 5"
        " points fixed in 0.1.0 from the paper's 'competitive'. " + setting,
    )
    report.add_claim(
        "Rotated digits: SEMoLA is more robust to the shift than no augmentation (accuracy gain > 0)",
        [se - no for se, no in zip(shift("semola"), shift("none"), strict=True)],
        0.0,
        ">",
        source="paper",
        reference="SEMoLA/LieAugmenter: distribution-shift claim (research note 2)",
        details="per seed, SEMoLA minus no-augmentation accuracy on all test angles. " + setting,
    )
    for name in variants:
        values = shift(name)
        in_dist = [r["test_accuracy"] for r in results[name]]
        report.add_metrics(
            experiment="rotated digits, mean over seeds",
            method=name,
            test_accuracy=sum(in_dist) / len(in_dist),
            shift_accuracy=sum(values) / len(values),
            shift_accuracy_per_seed=", ".join(f"{v:.3f}" for v in values),
        )
    figure, axes = new_figure(width=7.5)
    names = list(variants)
    positions = range(len(names))
    for offset, key, label in (
        (-0.2, "test_accuracy", "test +-30 deg"),
        (0.2, "shift_accuracy", "test all angles"),
    ):
        means = [sum(r[key] for r in results[n]) / len(results[n]) for n in names]
        axes.bar([p + offset for p in positions], means, 0.4, label=label)
        for p, n in zip(positions, names, strict=True):
            axes.plot([p + offset] * len(results[n]), [r[key] for r in results[n]], "k.", ms=3)
    axes.set_xticks(list(positions), names, rotation=25, ha="right", fontsize=7)
    axes.set_ylabel("accuracy (bars: mean, dots: seeds)")
    axes.set_title("rotated digits: trained on +-30 deg")
    axes.legend(fontsize=7)
    report.save_figure(figure, "digits_accuracy")
    report.write()
    return report
