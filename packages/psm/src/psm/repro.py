"""Quick reproduction of the paper's claims at CPU scale.

(a) exact duality: training (tree) and streaming (counter) states of a Transformer-PSM agree bit
    for bit in float64, and the associative operators' ``linear_scan`` path equals the tree;
(b) scaling of the streaming evaluator: live states and aggregator calls per chunk for
    ``n = 2^4 .. 2^16`` with log and constant fits;
(c) S3 state tracking trained on lengths 4..18, accuracy at 18/72/144/288 for the paper's PSM
    (c = 1, transformer aggregator and inference module, see ``S3_PSM``), a 2-layer NoPE
    transformer and a 2-layer diagonal linear RNN with the same width, steps and learning rate.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from kernelkit.repro import Report, new_figure
from kernelkit.utils import seed_everything, torch_threads
from psm.affine import AFFINE_STEPS, affine_states, gla_steps
from psm.scan import online_prefix
from psm.training import TrainConfig, evaluate, train
from psm.transformer_psm import TransformerPSM, TransformerPSMConfig

__all__ = ["run"]

EVAL_LENGTHS = [18, 72, 144, 288]

# The PSM of experiment (c) is the paper's: a transformer aggregator and a separate transformer
# inference module. 0.1.x trained it at lr 3e-3 for 400 steps, where it stays near chance (0.29
# at length 18), and fell back to an MLP aggregator read out directly. Measured since (one seed,
# this machine): at lr 1e-3 and 1200 steps the paper's design fits length 18 (0.999) and reaches
# 0.847 at 144; reading the head off the transformer aggregator directly reaches 1.000 / 0.993.
# The learning rate and budget were the obstacle, not the aggregator. ``S3_MLP_PSM`` is the 0.1.x
# variant, still checked by the duality test.
S3_PSM = {"aggregator": "transformer", "inference": "transformer"}
S3_MLP_PSM = {"aggregator": "mlp", "inference": "aggregator"}


def _duality(report: Report) -> None:
    worst, cases = 0.0, []
    for chunk_size, length, options in [
        (1, 37, {}),
        (4, 150, {}),
        (3, 100, {}),
        (1, 37, S3_MLP_PSM),
    ]:
        torch.manual_seed(chunk_size)
        config = TransformerPSMConfig(
            vocab_size=11, d_model=32, n_heads=4, chunk_size=chunk_size, **options
        )
        model = TransformerPSM(config).double().eval()
        ids = torch.randint(0, 11, (2, length))
        with torch.no_grad():
            parallel = model.chunk_states(ids)
            streamed = model.chunk_states(ids, streaming=True)
        worst = max(worst, (parallel - streamed).abs().max().item())
        cases.append(f"c={chunk_size}, T={length}" + (", MLP aggregator" if options else ""))
    report.add_claim(
        "Transformer-PSM: parallel (Blelloch tree) and streaming (binary counter) states are identical (float64)",
        worst,
        0.0,
        "<=",
        details="max |difference| over " + "; ".join(cases) + "; batch 2, d=32, random init",
        reference="PSM: the parallel and streaming evaluations compute the same states",
    )
    gen = torch.Generator().manual_seed(0)
    k, v = (torch.randn(2, 257, 2, 8, generator=gen, dtype=torch.float64) for _ in range(2))
    steps = gla_steps(
        k,
        v,
        torch.nn.functional.logsigmoid(
            torch.randn(2, 257, 2, 8, generator=gen, dtype=torch.float64)
        ),
    )
    error = (
        (affine_states(steps, method="linear_scan") - affine_states(steps, method="tree"))
        .abs()
        .max()
        .item()
    )
    report.add_claim(
        "associative case (GLA): kernelkit.linear_scan equals the generic PSM tree (float64)",
        error,
        1e-10,
        "<=",
        details=f"T=257, 2 heads, dk=dv=8; operators available: {', '.join([*AFFINE_STEPS, 'mlstm'])}",
        source="package",
    )


def _scaling(report: Report, quick: bool) -> None:
    exponents = list(range(4, 17))
    rows = []
    for exponent in exponents:
        n = 2**exponent
        items = torch.zeros(1, n, 1)
        _, _, scanner = online_prefix(torch.add, items, torch.zeros(1))
        rows.append(
            {
                "n": n,
                "calls_per_chunk": scanner.calls / n,
                "peak_live_states": scanner.peak_live_states,
                "peak_stored_states": 2 * scanner.peak_live_states,
                "worst_push_calls": scanner.peak_push_calls,
            }
        )
    logs = np.log2([r["n"] for r in rows])
    live = np.array([r["peak_live_states"] for r in rows], dtype=float)
    slope, intercept = np.polyfit(logs, live, 1)
    calls = np.array([r["calls_per_chunk"] for r in rows])
    for row in rows:
        report.add_metrics(experiment="scaling", **row)
    report.add_claim(
        "streaming memory is O(log n): peak live states minus (log2 n + 1), worst over n = 2^4..2^16",
        float(max(live - (logs + 1))),
        0.0,
        "<=",
        details=f"log fit: live = {slope:.3f} log2 n + {intercept:.3f}",
        reference="PSM: O(log N)-memory streaming inference",
    )
    report.add_claim(
        "streaming compute is O(1) amortised: aggregator calls per chunk, worst over n = 2^4..2^16",
        float(calls.max()),
        2.0,
        "<=",
        details=f"constant fit (mean) {calls.mean():.4f}; at n=2^16 {calls[-1]:.5f} (exactly 2 - popcount(n)/n)",
        reference="PSM: O(1) amortised aggregator calls per chunk",
    )
    fig, ax = new_figure()
    ax.plot([r["n"] for r in rows], live, "o-", label="peak live states")
    ax.plot([r["n"] for r in rows], calls, "s-", label="aggregator calls per chunk")
    ax.plot(
        [r["n"] for r in rows],
        slope * logs + intercept,
        "--",
        label=f"fit {slope:.2f} log2 n + {intercept:.2f}",
    )
    ax.set_xscale("log", base=2)
    ax.set_xlabel("chunks pushed n")
    ax.set_title("binary-counter scanner: memory and compute")
    ax.legend()
    report.save_figure(fig, "scaling")


def _state_tracking(report: Report, out_dir: Path, quick: bool) -> None:
    steps = 1200 if quick else 3000
    samples = 64 if quick else 512
    seeds = range(3 if quick else 5)
    results, fits = {}, {}
    psm_long, psm_fit = [], []
    with torch_threads(1):
        # The PSM on every seed (its claims); the baselines on seed 0 (reported beside them).
        runs = [("psm", seed) for seed in seeds] + [("transformer", 0), ("rnn", 0)]
        for model, seed in runs:
            config = TrainConfig(
                task="S3",
                model=model,
                **(S3_PSM if model == "psm" else {}),
                d_model=64,
                n_heads=4,
                steps=steps,
                batch_size=32 if quick else 64,
                lr=1e-3,
                min_train_length=4,
                train_length=18,
                checkpoint_every=0,
                seed=seed,
            )
            seed_everything(seed)
            result = train(
                config,
                out_dir / "checkpoints" / f"{model}-{seed}",
                resume=False,
                show_progress=False,
            )
            rows = evaluate(result.model, config, EVAL_LENGTHS, samples=samples)
            if model == "psm":
                psm_long.append(rows[EVAL_LENGTHS.index(144)]["accuracy"])
                psm_fit.append(rows[EVAL_LENGTHS.index(18)]["accuracy"])
            if seed == 0:
                results[model] = rows
                fits[model] = rows[EVAL_LENGTHS.index(18)]["accuracy"]
            parameters = sum(p.numel() for p in result.model.parameters())
            for row in rows:
                report.add_metrics(
                    experiment="S3",
                    model=model,
                    seed=seed,
                    parameters=parameters,
                    steps=steps,
                    final_loss=result.history[-1]["loss"],
                    **row,
                )
    chance = 1 / 6
    report.add_claim(
        "S3: PSM (c=1, transformer aggregator and inference) trained on lengths 4-18 stays accurate at 8x the training length (accuracy at 144)",
        psm_long,
        0.9,
        ">=",
        reference="PSM: length generalisation of state tracking (low error to ~160-180 tokens on S5)",
        details=f"per seed {list(seeds)}; {steps} AdamW steps per model, chance {chance:.3f}; "
        "the paper's design (transformer aggregator and inference module), AdamW lr 1e-3; "
        "threshold 0.9 fixed in 0.1.0",
    )
    report.add_claim(
        "S3: PSM (c=1, transformer aggregator and inference) fits the training length (accuracy at 18)",
        psm_fit,
        0.9,
        ">=",
        source="package",
        details=f"per seed; a premise for the length claim; {steps} steps, same budget and width for "
        f"the baselines; their accuracy at 18 (seed 0): transformer {fits['transformer']:.3f}, "
        f"linear RNN {fits['rnn']:.3f} (a baseline that does not fit 18 says nothing about "
        "length generalisation)",
    )
    fig, ax = new_figure()
    for model, rows in results.items():
        label = "PSM (c=1, transformer aggregator)" if model == "psm" else model
        ax.plot(EVAL_LENGTHS, [r["accuracy"] for r in rows], "o-", label=label)
    ax.axhline(chance, color="grey", linestyle=":", label="chance")
    ax.set_xscale("log")
    ax.set_xlabel("test length")
    ax.set_ylabel("accuracy (all positions)")
    ax.set_title(f"S3 state tracking, trained on lengths 4-18 ({steps} steps)")
    ax.legend()
    report.save_figure(fig, "s3_length_generalisation")


def run(out_dir: str | os.PathLike, quick: bool = True) -> Report:
    """Run (a), (b) and (c) and write the report into ``out_dir``."""
    out_dir = Path(out_dir)
    report = Report("psm", out_dir, quick=quick)
    _duality(report)
    _scaling(report, quick)
    _state_tracking(report, out_dir, quick)
    report.write()
    return report
