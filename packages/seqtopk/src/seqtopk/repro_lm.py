"""The byte-level language-model part of ``seqtopk repro`` (issue 20, section 2).

Text from the Python standard library (``seqtopk.lm``), bytes as tokens, a two-layer OLMoE with
16 narrow experts (width 16, so one expert per token holds a sixteenth of the expert memory and
capacity binds), trained from scratch. Per seed, at every sparsity level K:

- pretrain with TopK (K, and 2K for the premise control);
- from that checkpoint, fine-tune with TopK (the control) and with offline SeqTopK (L=0,
  U=K+2, as the table task: L=1 at K=1 would be TopK), the same steps and windows;
- report held-out bits per byte: TopK as trained, SeqTopK online (causal, what decoding
  computes; the claim) and offline (for reference).

Adoption, through the real command line: the TopK-pretrained model at K=2 is saved with
``save_pretrained`` and the byte tokenizer; online SeqTopK with the paper's bounds (L=1, U=4) is
swapped in without training, then ``seqtopk finetune`` runs <= 100 steps with ``--routing
seqtopk`` against the same command with ``--routing topk``.

Quick mode runs one seed of this at a smoke size (it checks that the pipeline runs, no claims);
``--full`` runs the experiment with its claims.
"""

from __future__ import annotations

import copy
import statistics
import tempfile
import time
from pathlib import Path

from kernelkit.repro import Report, new_figure
from kernelkit.utils import torch_threads
from seqtopk._repro_common import (
    equal_budget_bounds,
    paired,
    per_seed,
    premise_meaning,
    spread,
)
from seqtopk.experiment import SmallMoEConfig
from seqtopk.lm import (
    BYTE_OFFSET,
    LMTrainConfig,
    evaluate_lm,
    heldout_windows,
    load_stdlib_corpus,
    save_model,
    train_lm,
)

__all__ = ["LM_MODEL", "run_byte_lm"]

LM_MODEL = SmallMoEConfig(
    hidden_size=64, num_layers=2, num_heads=4, num_experts=16, expert_hidden=16
)
# Sizes per mode, fixed before the runs. Full: a training step (batch 16 x 128 bytes) took
# about 50 ms of one CPU thread, so each seed's 3 pretrainings + 5 fine-tunings plus the
# adoption fine-tunes take about 2.5 minutes of CPU (six seeds: about 15). Quick: one seed at K=2 without the premise
# models, enough steps to see every stage run (about 10 s of CPU beside the table task).
SIZES = {
    False: {
        # The first full run (seeds 0, 1, 2) left the premise unresolved: the second expert
        # helped on every seed, but three seeds' t interval (quantile 4.30) was wider than the
        # effect. Rather than add seeds to that sample, this design was fixed anew before its
        # run: six fresh seeds, the same sizes and thresholds, verdicts from these six alone.
        "seeds": (3, 4, 5, 6, 7, 8),
        "levels": (1, 2),
        "premise": True,
        "pretrain": 600,
        "finetune": 150,
        "cli_steps": 100,
        "windows": 256,
        "cli_train_bytes": None,
    },
    True: {
        "seeds": (0,),
        "levels": (2,),
        "premise": False,
        "pretrain": 30,
        "finetune": 10,
        "cli_steps": 5,
        "windows": 16,
        # The command tokenises its whole train file (about 3 s per 1.6 MB): the smoke gives it
        # the first 64 KB of the training stream, more than its steps read.
        "cli_train_bytes": 65_536,
    },
}
BATCH, SEQ_LEN = 16, 128
PRETRAIN_LR, FINETUNE_LR = 3e-3, 1e-3
ADOPTION_K = 2

# Thresholds and why, written before the first run of this experiment (bits per byte: lower is
# better, so a difference "A - B < 0" says A is better):
# - premise and SeqTopK vs TopK: a paired difference below 0, i.e. any improvement the seed
#   interval can resolve (the model has no reason to match the paper's magnitudes).
# - growth with sparsity: the gain (TopK - SeqTopK) at the sparsest level minus the gain at the
#   densest, above 0.
# - adoption drop: the same 5% as the table task, here relative growth of bits per byte (the
#   paper lost 1.3% of its benchmark average when swapping without training).
# - recovery: after the fine-tuning, the SeqTopK model (online) is at most 0.02 bits per byte
#   worse than the TopK model fine-tuned alike: a non-inferiority margin of under 1% of these
#   models' 2.5-3.5 bits per byte.
_THRESHOLDS = {"gain": 0.0, "relative_drop": 0.05, "recovery": 0.02}


def seqtopk_bounds(k: int) -> tuple[int, int]:
    return equal_budget_bounds(k, LM_MODEL.num_experts)


def _per_seed(values: list[float]) -> str:
    return per_seed(values, 4)


def _spread(values: list[float]) -> str:
    return spread(values, 4)


def _cli_finetune(base: Path, train_file: Path, out: Path, routing: str, steps: int, seed: int):
    from seqtopk.cli import main

    code = main(
        [
            "finetune",
            "--model-dir",
            str(base),
            "--train-file",
            str(train_file),
            "--output-dir",
            str(out),
            "--routing",
            routing,
            "--k",
            str(ADOPTION_K),
            "--min-per-token",
            "1",
            "--block-size",
            str(SEQ_LEN),
            "--batch-size",
            str(BATCH),
            "--max-steps",
            str(steps),
            "--learning-rate",
            str(FINETUNE_LR),
            "--save-steps",
            str(steps),
            "--seed",
            str(seed),
        ]
    )
    if code != 0:
        raise RuntimeError(f"seqtopk finetune --routing {routing} exited with {code}")


def run_byte_lm(report: Report, quick: bool = True, work_dir: str | Path | None = None) -> None:
    """Run the byte-level experiment into ``report`` (metrics rows, claims in full mode, a
    figure, a note). ``work_dir`` holds the saved models (a temporary directory by default)."""
    from transformers import AutoModelForCausalLM

    size = SIZES[quick]
    seeds, levels = size["seeds"], size["levels"]
    corpus = load_stdlib_corpus()
    windows = heldout_windows(corpus.heldout, size["windows"], SEQ_LEN)
    started, cpu_started = time.perf_counter(), time.process_time()
    # (name, K) -> per-seed bits per byte
    bpb: dict[tuple[str, int], list[float]] = {}

    def record(name: str, k: int, seed: int, value: float) -> None:
        bpb.setdefault((name, k), []).append(value)
        report.add_metrics(experiment="byte LM", run=name, k=k, seed=seed, bits_per_byte=value)

    def config(stage: str, routing: str, k: int, seed: int, **bounds) -> LMTrainConfig:
        """The training of ``stage`` ("pretrain" or "finetune"): its steps and learning rate."""
        lr = PRETRAIN_LR if stage == "pretrain" else FINETUNE_LR
        return LMTrainConfig(
            routing=routing,
            k=k,
            steps=size[stage],
            batch_size=BATCH,
            seq_len=SEQ_LEN,
            lr=lr,
            seed=seed,
            **bounds,
        )

    def finetune(model, routing: str, k: int, seed: int, **bounds):
        """Fine-tune ``model`` in place from where pretraining stopped (fresh windows)."""
        tuned = config("finetune", routing, k, seed, **bounds)
        return train_lm(corpus, tuned, model=model, first_step=size["pretrain"])[0]

    with torch_threads(1), tempfile.TemporaryDirectory() as scratch:
        work = Path(work_dir) if work_dir is not None else Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        train_file = work / "train.txt"
        stream = bytes((corpus.train[: size["cli_train_bytes"]] - BYTE_OFFSET).tolist())
        # Cut at a line end, never inside a UTF-8 character (the command reads text).
        train_file.write_bytes(stream[: stream.rindex(b"\n") + 1])
        for seed in seeds:
            premise = {2 * k for k in levels} if size["premise"] else set()
            for k in sorted(set(levels) | premise):
                pretrain = config("pretrain", "topk", k, seed)
                model, _ = train_lm(corpus, pretrain, model_config=LM_MODEL)
                record("TopK pretrained", k, seed, evaluate_lm(model, windows, routing="topk", k=k))
                if k == ADOPTION_K:
                    save_model(model, work / f"seed{seed}" / "base")
                tuned_topk = finetune(copy.deepcopy(model), "topk", k, seed)
                record("TopK", k, seed, evaluate_lm(tuned_topk, windows, routing="topk", k=k))
                if k not in levels:
                    continue
                low, high = seqtopk_bounds(k)
                tuned_seq = finetune(
                    model, "seqtopk", k, seed, min_per_token=low, max_per_token=high
                )
                for mode in ("online", "offline"):
                    value = evaluate_lm(
                        tuned_seq,
                        windows,
                        routing="seqtopk",
                        k=k,
                        min_per_token=low,
                        max_per_token=high,
                        mode=mode,
                    )
                    record(f"SeqTopK {mode}", k, seed, value)

            # Adoption through the command line, from the saved TopK model at K=2.
            base = work / f"seed{seed}" / "base"
            model = AutoModelForCausalLM.from_pretrained(base)
            swapped = evaluate_lm(
                model, windows, routing="seqtopk", k=ADOPTION_K, min_per_token=1, mode="online"
            )
            record("adoption: swapped in, online", ADOPTION_K, seed, swapped)
            for routing in ("seqtopk", "topk"):
                out = work / f"seed{seed}" / f"cli-{routing}"
                _cli_finetune(base, train_file, out, routing, size["cli_steps"], seed)
                tuned = AutoModelForCausalLM.from_pretrained(out)
                value = evaluate_lm(
                    tuned,
                    windows,
                    routing=routing,
                    k=ADOPTION_K,
                    min_per_token=1,
                    mode="online",
                )
                record(f"adoption: finetune --routing {routing}", ADOPTION_K, seed, value)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started

    describe = (
        f"Byte-level LM ({'quick smoke' if quick else 'full'}): seeds {seeds}; corpus "
        f"{len(corpus.train_files)} training and {len(corpus.heldout_files)} held-out files of "
        f"the standard library ({corpus.train.numel():,} and {corpus.heldout.numel():,} bytes, "
        f"sha256 {corpus.sha256[:12]}); OLMoE {LM_MODEL.num_layers} layers, width "
        f"{LM_MODEL.hidden_size}, {LM_MODEL.num_experts} experts of width "
        f"{LM_MODEL.expert_hidden}; TopK pretraining {size['pretrain']} steps (lr {PRETRAIN_LR}), "
        f"fine-tuning {size['finetune']} steps (lr {FINETUNE_LR}), batch {BATCH} x {SEQ_LEN} "
        f"bytes, AdamW cosine; `seqtopk finetune` {size['cli_steps']} steps; held-out "
        f"{size['windows']} windows of {SEQ_LEN} bytes. Took {elapsed:.0f} s ({cpu:.0f} s of "
        "CPU, torch on one thread)."
    )
    if quick:
        report.notes.append(
            describe + " Smoke only (one seed, no claims); `seqtopk repro --full` runs the "
            "experiment with its premise control and claims."
        )
    else:
        report.notes.append(describe)
        _claims(report, bpb, levels)
    _figure(report, bpb, levels)


def _claims(report: Report, bpb, levels) -> None:
    premise_held = {}
    for k in levels:
        gaps = paired(bpb[("TopK", 2 * k)], bpb[("TopK", k)])
        claim = report.add_claim(
            f"byte LM premise control, K={k}: TopK with 2K={2 * k} experts has lower held-out "
            f"bits per byte than TopK with K={k}, so more experts help",
            gaps,
            _THRESHOLDS["gain"],
            "<",
            unit="bits/byte",
            source="package",
            details=f"per-seed differences ({_per_seed(gaps)}); TopK {2 * k}: "
            f"{_spread(bpb[('TopK', 2 * k)])}, TopK {k}: {_spread(bpb[('TopK', k)])}",
        )
        premise_held[k] = claim.verdict == "held"
    gains = {}
    for k in levels:
        low, high = seqtopk_bounds(k)
        meaning = premise_meaning(k, premise_held[k])
        gaps = paired(bpb[("SeqTopK online", k)], bpb[("TopK", k)])
        offline = paired(bpb[("SeqTopK offline", k)], bpb[("TopK", k)])
        gains[k] = [-gap for gap in gaps]
        report.add_claim(
            f"byte LM, K={k} (L={low}, U={high}): SeqTopK fine-tuned from the TopK checkpoint "
            "and evaluated online (causal) has lower held-out bits per byte than TopK fine-tuned "
            "alike, at equal budget",
            gaps,
            _THRESHOLDS["gain"],
            "<",
            unit="bits/byte",
            reference="SeqTopK: reallocating the same expert budget across the sequence helps",
            details=f"{meaning}; per-seed differences ({_per_seed(gaps)}); SeqTopK online "
            f"{_spread(bpb[('SeqTopK online', k)])} vs TopK {_spread(bpb[('TopK', k)])}; "
            f"offline (non-causal, reference) differences ({_per_seed(offline)})",
        )
    sparse, dense = min(levels), max(levels)
    growth = paired(gains[sparse], gains[dense])
    report.add_claim(
        f"byte LM: the online gain over TopK (TopK - SeqTopK bits per byte) is larger at K={sparse}"
        f" than at K={dense} (of {LM_MODEL.num_experts} experts): the gain grows with sparsity",
        growth,
        _THRESHOLDS["gain"],
        ">",
        unit="bits/byte",
        reference="SeqTopK: +7.55 at K=2 against +1.75 at K=8 on OLMoE",
        details=f"per seed ({_per_seed(growth)}); premise held at K={sparse}: "
        f"{premise_held[sparse]}, at K={dense}: {premise_held[dense]}",
    )
    topk = bpb[("TopK pretrained", ADOPTION_K)]
    swapped = bpb[("adoption: swapped in, online", ADOPTION_K)]
    relative = [(s - t) / t for s, t in zip(swapped, topk, strict=True)]
    report.add_claim(
        f"byte LM adoption, K={ADOPTION_K}: online SeqTopK (L=1, U={ADOPTION_K + 2}) swapped "
        "into the TopK-pretrained model without training raises held-out bits per byte by at "
        "most 5%",
        relative,
        _THRESHOLDS["relative_drop"],
        "<=",
        reference="SeqTopK: the swap alone moves OLMoE's average from 29.74 to 29.34",
        details=f"relative change per seed ({_per_seed(relative)}); TopK {_spread(topk)} -> "
        f"swapped {_spread(swapped)}",
    )
    tuned_seq = bpb[("adoption: finetune --routing seqtopk", ADOPTION_K)]
    tuned_topk = bpb[("adoption: finetune --routing topk", ADOPTION_K)]
    recovery = paired(tuned_seq, tuned_topk)
    report.add_claim(
        f"byte LM adoption, K={ADOPTION_K}: after `seqtopk finetune --routing seqtopk` (<= 100 "
        "steps) online SeqTopK is within 0.02 bits per byte of the model fine-tuned by "
        "`seqtopk finetune --routing topk` alike",
        recovery,
        _THRESHOLDS["recovery"],
        "<",
        unit="bits/byte",
        reference="SeqTopK: under 100 fine-tuning steps learn the allocation",
        details=f"per-seed differences ({_per_seed(recovery)}); swapped {_spread(swapped)} -> "
        f"SeqTopK fine-tuned {_spread(tuned_seq)}; TopK fine-tuned {_spread(tuned_topk)}",
    )


def _figure(report: Report, bpb, levels) -> None:
    figure, axes = new_figure(width=8.0, height=3.4)
    columns = [key for key in bpb if key[0] != "TopK pretrained" or key[1] == ADOPTION_K]
    columns.sort(key=lambda key: (key[0].startswith("adoption"), key[1], key[0]))
    for position, key in enumerate(columns):
        values = bpb[key]
        colour = "tab:blue" if key[0].startswith("TopK") else "tab:orange"
        if key[0].startswith("adoption"):
            colour = "tab:green"
        axes.scatter([position] * len(values), values, color=colour, s=16)
        axes.hlines(statistics.fmean(values), position - 0.3, position + 0.3, color="black")
    labels = [
        f"{name.replace('adoption: ', '').replace(' ', chr(10), 1)}\nK={k}" for name, k in columns
    ]
    axes.set_xticks(range(len(labels)), labels, fontsize=5)
    axes.set_ylabel("held-out bits per byte")
    axes.set_title("byte-level LM: per seed (dots) and mean (bar)", fontsize=8)
    report.save_figure(figure, "byte_lm_bits_per_byte")


if (
    __name__ == "__main__"
):  # pragma: no cover - the LM part alone: python -m seqtopk.repro_lm OUT [--full]
    import sys

    full = "--full" in sys.argv[2:]
    alone = Report("seqtopk", Path(sys.argv[1]), quick=not full)
    run_byte_lm(alone, quick=not full)
    alone.write()
