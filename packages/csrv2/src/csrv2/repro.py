"""CSRv2's headline claims at laptop scale: MiniLM embeddings of the bundled chatterbot corpus.

For each k in {2, 4}, three heads with 16x as many latents as embedding dimensions are
trained on the frozen MiniLM embeddings: CSR (fixed k, self-supervised contrastive term), CSR +
k-annealing, and CSRv2-linear (annealing + supervised contrastive term with the task's labels).
CSR and CSR + annealing use no labels, so one head of each serves both tasks: it is trained on
the training texts of both tasks (test utterances and retrieval queries left out). CSRv2 gets
one head per task, trained on that task's training texts and labels. They are compared with an
MRL head trained on the same labels (prefixes 2, 4, 8, ... 64), PCA truncation and the dense
384-d embedding, all through :mod:`csrv2.evaluate`. Every head gets the same number of
optimizer steps (batch 256, Adam lr 3e-3).

The MiniLM embeddings of the corpus are computed once and cached (safetensors) in
:func:`embedding_cache_dir`, so only the first run on a machine imports sentence-transformers and
encodes. Thresholds come from the paper's
e5-Mistral numbers, scaled down as stated in each claim; they were fixed before the first run.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import torch

from csrv2.baselines import PCABasis, train_matryoshka
from csrv2.bench import sample_codes
from csrv2.data import (
    chatterbot_classification,
    chatterbot_retrieval,
    encode_texts,
    gaussian_mixture_embeddings,
)
from csrv2.evaluate import (
    ClassificationData,
    RetrievalData,
    evaluate_classification,
    evaluate_retrieval,
)
from csrv2.index import SparseIndex
from csrv2.metrics import (
    dead_latent_fraction,
    expected_postings_per_query,
    latent_usage,
    nmse,
    posting_imbalance,
)
from csrv2.training import recipe, train
from kernelkit.bench import compare
from kernelkit.repro import Report, new_figure
from kernelkit.topk import SparseCodes
from kernelkit.utils import torch_threads

__all__ = ["run"]

HIDDEN_MULTIPLE = 16
KS = (2, 4)
RECIPE_NAMES = ("csr", "csr+anneal", "csrv2")
UNSUPERVISED = ("csr", "csr+anneal")
BATCH_SIZE = 256
LR = 3e-3
STEPS = {True: 60, False: 300}  # optimizer steps per head, quick / full
MAX_SEQ_LENGTH = {True: 64, False: 128}
# Full-mode ablation only (the paper's default stays 0.1): on unit-norm embeddings the
# per-element MSE is about 1/d, so at 0.1 the supervised term outweighs reconstruction ~100x.
ABLATION_CL_COEF = 0.01
# The balance regulariser's weight in the balance experiment (full mode): on unit-norm 384-d
# inputs the MSE terms are ~1/d, so 0.01 puts the balance term (1 at even usage) on their scale.
BALANCE_COEF = 0.01
# Codes per synthetic database drawn from a head's latent usage to time its search, quick / full.
BALANCE_DATABASE = {
    True: 200_000,
    False: 1_000_000,
}  # tokens; 6% of the corpus' texts are longer than 32


def embedding_cache_dir() -> Path:
    """Where the corpus embeddings are kept between runs: ``$CSRV2_CACHE_DIR`` or
    ``~/.cache/csrv2/repro-embeddings`` (keyed by a hash of the texts and the token limit)."""
    root = os.environ.get("CSRV2_CACHE_DIR")
    return Path(root) if root else Path.home() / ".cache" / "csrv2" / "repro-embeddings"


def _embed_all(texts: list[str], quick: bool, max_seq_length: int) -> dict[str, torch.Tensor]:
    unique = sorted(set(texts))
    embeddings = encode_texts(
        unique,
        cache_dir=embedding_cache_dir() / ("quick" if quick else "full"),
        max_seq_length=max_seq_length,
        batch_size=128,
    )
    return {text: embeddings[i] for i, text in enumerate(unique)}


def _stack(lookup: dict[str, torch.Tensor], texts: list[str]) -> torch.Tensor:
    return torch.stack([lookup[t] for t in texts])


def run(out_dir: str | os.PathLike, quick: bool = True) -> Report:
    """Train and evaluate every recipe and baseline; return the report (also written to disk)."""
    out_dir = Path(out_dir)
    report = Report("csrv2", out_dir, quick=quick)
    started, cpu_started = time.perf_counter(), time.process_time()
    with torch_threads(1):
        _run(report, quick)
    report.notes.append(
        f"Total time {time.perf_counter() - started:.0f} s wall clock, "
        f"{time.process_time() - cpu_started:.0f} s CPU, on this machine (torch on 1 thread)."
    )
    report.write()
    return report


def _data(quick: bool):
    """The chatterbot tasks with their MiniLM embeddings (cached between runs)."""
    classification = chatterbot_classification(max_per_class=80 if quick else 150)
    retrieval = chatterbot_retrieval()
    all_texts = (
        classification.train_texts
        + classification.test_texts
        + retrieval.queries
        + retrieval.documents
        + retrieval.train_texts
    )
    lookup = _embed_all(all_texts, quick, MAX_SEQ_LENGTH[quick])
    cls_data = ClassificationData(
        _stack(lookup, classification.train_texts),
        classification.train_labels,
        _stack(lookup, classification.test_texts),
        classification.test_labels,
    )
    ret_data = RetrievalData(
        _stack(lookup, retrieval.queries), _stack(lookup, retrieval.documents), retrieval.relevant
    )
    ret_train = _stack(lookup, retrieval.train_texts)
    return classification, retrieval, all_texts, lookup, cls_data, ret_data, ret_train


def _fit_head(name: str, k: int, x, labels, seed: int, hidden: int, steps: int, **extra):
    epochs = max(1, round(steps / math.ceil(len(x) / BATCH_SIZE)))
    config = recipe(
        name,
        k=k,
        hidden=hidden,
        epochs=epochs,
        batch_size=BATCH_SIZE,
        lr=LR,
        seed=1227 + seed,
        **extra,
    )
    return train(x, labels, config, show_progress=False).model


# The balance experiment's second, separately fixed run (quick scale): the first (seeds 0-2,
# quick scale) left both claims inconclusive, with the search-time interval straddling 1.2x.
# Eight fresh seeds, the same heads, coefficient, database and thresholds, fixed before the run;
# its verdicts come from these seeds alone.
BALANCE_REPLICATION_SEEDS = range(3, 11)


def run_balance_replication(out_dir: str | os.PathLike, quick: bool = True) -> Report:
    """Only the balance experiment, over ``BALANCE_REPLICATION_SEEDS``; returns the report."""
    report = Report("csrv2", Path(out_dir), quick=quick)
    started, cpu_started = time.perf_counter(), time.process_time()
    with torch_threads(1):
        _, retrieval, _, _, _, ret_data, ret_train = _data(quick)
        hidden = HIDDEN_MULTIPLE * ret_train.shape[1]
        balance_experiment(
            report,
            lambda seed, coef: _fit_head(
                "csrv2",
                2,
                ret_train,
                retrieval.train_labels,
                seed,
                hidden,
                STEPS[quick],
                batch_by_label=True,
                balance_coef=coef,
            ),
            ret_data,
            ret_train,
            BALANCE_REPLICATION_SEEDS,
            BALANCE_DATABASE[quick],
        )
    report.notes.append(
        f"Total time {time.perf_counter() - started:.0f} s wall clock, "
        f"{time.process_time() - cpu_started:.0f} s CPU (torch on 1 thread)."
    )
    report.write()
    return report


def _run(report: Report, quick: bool) -> None:
    classification, retrieval, all_texts, lookup, cls_data, ret_data, ret_train = _data(quick)
    held_out = set(classification.test_texts) | set(retrieval.queries)
    shared_texts = sorted(set(classification.train_texts + retrieval.train_texts) - held_out)
    shared_train = _stack(lookup, shared_texts)
    every_text = _stack(lookup, sorted(set(all_texts)))
    d_in = cls_data.train.shape[1]
    hidden = HIDDEN_MULTIPLE * d_in
    steps = STEPS[quick]
    report.notes.append(
        f"Data: {len(classification.train_texts)}/{len(classification.test_texts)} train/test "
        f"utterances in {len(classification.label_names)} categories; {len(retrieval.queries)} "
        f"queries over {len(retrieval.documents)} answers, {len(retrieval.train_texts)} training "
        f"texts; {len(shared_texts)} training texts for the label-free CSR heads; "
        f"{len(every_text)} distinct texts in all. MiniLM-L6 (d={d_in}, max "
        f"{MAX_SEQ_LENGTH[quick]} tokens), heads with hidden={hidden}, {steps} Adam steps per "
        f"head at batch {BATCH_SIZE}, lr {LR:g}."
    )

    results: dict[tuple[str, int], dict[str, float]] = {}

    def add_row(method: str, active: int, cls_row: dict, ret_row: dict, extra=None) -> None:
        row = {
            "method": method,
            "active_dims": active,
            "knn_acc": cls_row["knn_acc"],
            "logreg_acc": cls_row["logreg_acc"],
            "ndcg10": ret_row["ndcg10"],
            "mrr10": ret_row["mrr10"],
        }
        for key in ("dead_pct", "effective_latents"):
            if key in cls_row:
                row[f"cls_{key}"] = cls_row[key]
                row[f"ret_{key}"] = ret_row[key]
        row.update(extra or {})
        results[(method, active)] = row
        report.add_metrics(**row)

    identity_cls = evaluate_classification(lambda x: x, cls_data)
    identity_ret = evaluate_retrieval(lambda x: x, ret_data)
    add_row("dense", d_in, identity_cls, identity_ret)

    mrl_dims = (2, 4, 32) if quick else (2, 4, 8, 16, 32, 64)
    mrl_epochs = 5 if quick else 10
    pca_cls, pca_ret = PCABasis(cls_data.train), PCABasis(ret_train)
    mrl_cls = train_matryoshka(cls_data.train, cls_data.train_labels, epochs=mrl_epochs, lr=1e-3)
    mrl_ret = train_matryoshka(ret_train, retrieval.train_labels, epochs=mrl_epochs, lr=1e-3)
    for m in mrl_dims:
        with torch.no_grad():
            add_row(
                "MRL",
                m,
                evaluate_classification(lambda x, m=m: mrl_cls.embed(x, m), cls_data),
                evaluate_retrieval(lambda x, m=m: mrl_ret.embed(x, m), ret_data),
            )
        add_row(
            "PCA",
            m,
            evaluate_classification(lambda x, m=m: pca_cls.project(x, m), cls_data),
            evaluate_retrieval(lambda x, m=m: pca_ret.project(x, m), ret_data),
        )

    def fit(name: str, k: int, x: torch.Tensor, labels: torch.Tensor | None, seed: int, **extra):
        return _fit_head(name, k, x, labels, seed, hidden, steps, **extra)

    def evaluate_head(label: str, k: int, seed: int, extra: dict) -> tuple[dict, dict, dict]:
        name = label.split(" ")[0]
        if name in UNSUPERVISED:
            cls_head = ret_head = fit(name, k, shared_train, None, seed, **extra)
        else:
            cls_head = fit(name, k, cls_data.train, cls_data.train_labels, seed, **extra)
            # Retrieval groups are 2-3 texts: batches keep each group whole, so that every
            # anchor of the supervised term has a positive (random batches of 256 from 1,900
            # texts leave most anchors with only themselves).
            ret_head = fit(
                name, k, ret_train, retrieval.train_labels, seed, batch_by_label=True, **extra
            )
        with torch.no_grad():
            cls_row = evaluate_classification(cls_head.encode, cls_data)
            ret_row = evaluate_retrieval(ret_head.encode, ret_data, extra_texts=ret_train)
            _, recon = cls_head(cls_data.test)
            _, ret_recon = ret_head(ret_data.documents)
            extra_metrics = {
                "cls_nmse": nmse(cls_data.test, recon),
                "ret_nmse": nmse(ret_data.documents, ret_recon),
            }
            if name in UNSUPERVISED:
                extra_metrics["all_dead_pct"] = 100 * dead_latent_fraction(
                    cls_head.encode(every_text)
                )
        return cls_row, ret_row, extra_metrics

    variants = [(name, {}) for name in RECIPE_NAMES]
    if not quick:
        variants.append(("csrv2 (b_pre=mean)", {"pre_bias_init": "mean"}))
    for k in KS if quick else (*KS, 8):
        ablations = [(f"csrv2 (cl_coef={ABLATION_CL_COEF:g})", {"cl_coef": ABLATION_CL_COEF})]
        for label, extra in variants + (ablations if k == 2 and not quick else []):
            cls_row, ret_row, extra_metrics = evaluate_head(label, k, 0, extra)
            add_row(label, k, cls_row, ret_row, extra_metrics)

    # The k = 2 comparisons again on further seeds (head initialisation and batch order; the MRL
    # baseline too), for the claims' intervals.
    seeds = range(3 if quick else 5)
    by_seed = [{key: results[key] for key in (("csr", 2), ("csrv2", 2), ("MRL", 2))}]
    for seed in seeds[1:]:
        row = {}
        for label in ("csr", "csrv2"):
            cls_row, ret_row, _ = evaluate_head(label, 2, seed, {})
            row[(label, 2)] = {**cls_row, **ret_row}
        mrl_cls_seed = train_matryoshka(
            cls_data.train, cls_data.train_labels, epochs=mrl_epochs, lr=1e-3, seed=1227 + seed
        )
        mrl_ret_seed = train_matryoshka(
            ret_train, retrieval.train_labels, epochs=mrl_epochs, lr=1e-3, seed=1227 + seed
        )
        with torch.no_grad():
            row[("MRL", 2)] = {
                **evaluate_classification(lambda x, head=mrl_cls_seed: head.embed(x, 2), cls_data),
                **evaluate_retrieval(lambda x, head=mrl_ret_seed: head.embed(x, 2), ret_data),
            }
        by_seed.append(row)
        for (method, k), values in row.items():
            report.add_metrics(
                method=method,
                active_dims=k,
                seed=seed,
                logreg_acc=values["logreg_acc"],
                ndcg10=values["ndcg10"],
            )

    _full_csrv2_row(report, retrieval, ret_data, hidden, quick)
    annealing = _annealing_experiment(report, quick, seeds)
    _claims(report, results, by_seed, annealing, len(every_text), hidden)
    if not quick:
        # Six more retrieval heads: too slow for the quick budget on two cores.
        balance_experiment(
            report,
            lambda seed, coef: fit(
                "csrv2",
                2,
                ret_train,
                retrieval.train_labels,
                seed,
                batch_by_label=True,
                balance_coef=coef,
            ),
            ret_data,
            ret_train,
            seeds,
            BALANCE_DATABASE[quick],
        )
    _figures(report, results, d_in)


def _full_csrv2_row(report: Report, retrieval, ret_data, hidden: int, quick: bool) -> None:
    """The full CSRv2: MiniLM finetuned end to end with the CSRv2 loss (``csrv2.finetune``, stage
    1 the head on frozen embeddings, stage 2 backbone and head), at small scale, for retrieval at
    k = 2 beside the frozen-backbone rows. A metrics row (one seed in quick mode): its cost,
    about a minute of CPU, does not fit three seeds in the quick budget."""
    import tempfile

    from csrv2.finetuning import FinetuneConfig, finetune
    from kernelkit.topk import topk_codes

    epochs = max(1, round(STEPS[quick] / math.ceil(len(retrieval.train_texts) / BATCH_SIZE)))
    config = recipe("csrv2", k=2, hidden=hidden, epochs=epochs, batch_size=BATCH_SIZE, lr=LR)
    e2e_steps = 30 if quick else 300
    finetune_config = FinetuneConfig(
        mode="full",
        max_steps=e2e_steps,
        batch_size=32,
        max_seq_length=MAX_SEQ_LENGTH[quick],
        save_steps=10 * e2e_steps,
    )
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        result = finetune(
            list(retrieval.train_texts),
            retrieval.train_labels,
            config,
            finetune_config,
            out_dir=scratch,
            show_progress=False,
        )

        def codes(texts):
            return result.model.encode(
                list(texts), convert_to_tensor=True, convert_to_sparse_tensor=False
            ).float()

        with torch.no_grad():
            data = RetrievalData(
                codes(retrieval.queries), codes(retrieval.documents), ret_data.relevant
            )
            row = evaluate_retrieval(lambda x: topk_codes(x, 2), data)
    report.add_metrics(
        method="csrv2, backbone finetuned (full CSRv2)",
        active_dims=2,
        ndcg10=row["ndcg10"],
        mrr10=row["mrr10"],
        note=f"stage 1: the head on frozen MiniLM ({STEPS[quick]} steps); stage 2: MiniLM and "
        f"head, {e2e_steps} steps of batch 32, backbone lr 1e-5; one seed; "
        f"{time.perf_counter() - started:.0f} s",
    )


# The annealing experiment on a corpus large enough for every latent to be used: 20,000 (quick;
# 50,000 full) unit-norm vectors of an anisotropic Gaussian mixture in MiniLM's 384 dimensions
# (the research note's fallback for a large embedded corpus), hidden 1536 (4x), 300 steps.
# The chatterbot corpus has 1,874 texts: at hidden 6144 and k = 2 at most 61% of the latents can
# be live there, which caps the ratio the claim measures.
ANNEAL_HIDDEN = 1536
ANNEAL_STEPS = 300


def _annealing_experiment(report: Report, quick: bool, seeds: range) -> dict:
    num = 20_000 if quick else 50_000
    live: dict[tuple[str, int], list[float]] = {}
    for seed in seeds:
        x, _ = gaussian_mixture_embeddings(num, seed=seed)
        epochs = max(1, round(ANNEAL_STEPS / math.ceil(num / BATCH_SIZE)))
        for k in (2,) if quick else KS:
            for name in UNSUPERVISED:
                config = recipe(
                    name,
                    k=k,
                    hidden=ANNEAL_HIDDEN,
                    epochs=epochs,
                    batch_size=BATCH_SIZE,
                    lr=LR,
                    seed=1227 + seed,
                )
                model = train(x, None, config, show_progress=False).model
                with torch.no_grad():
                    value = 100 - 100 * dead_latent_fraction(model.encode(x))
                live.setdefault((name, k), []).append(value)
                report.add_metrics(
                    experiment="annealing, Gaussian mixture",
                    method=name,
                    k=k,
                    seed=seed,
                    live_pct=value,
                    vectors=num,
                    hidden=ANNEAL_HIDDEN,
                )
    return {"live": live, "num": num, "epochs": epochs}


def balance_experiment(
    report: Report,
    fit_head,
    ret_data: RetrievalData,
    ret_train: torch.Tensor,
    seeds: range,
    database: int,
) -> dict[float, list[dict[str, float]]]:
    """CSRv2 retrieval heads at k=2 without and with the balance term (``BALANCE_COEF``), seed by
    seed: nDCG@10 on the chatterbot Q->A task, the posting imbalance of their codes, and the
    time of exact inverted search over ``database`` codes drawn from each head's latent usage
    and values (64 queries, top 10, float16 index), both heads' searches timed interleaved.

    ``fit_head(seed, balance_coef)`` trains one head. Adds the metrics rows and two claims.
    """
    rows: dict[float, list[dict[str, float]]] = {0.0: [], BALANCE_COEF: []}
    time_ratios = []
    for seed in seeds:
        searches = {}
        for coef in rows:
            head = fit_head(seed, coef)
            with torch.no_grad():
                quality = evaluate_retrieval(head.encode, ret_data, extra_texts=ret_train)
                codes = SparseCodes.cat(
                    [head.encode(x) for x in (ret_data.documents, ret_train, ret_data.queries)]
                )
            generator = torch.Generator().manual_seed(seed)
            usage = latent_usage(codes)
            values = codes.values[codes.values > 0]
            index = SparseIndex(codes.dim, value_dtype=torch.float16)
            index.add(sample_codes(usage, values, database, 2, generator, dim=codes.dim))
            queries = sample_codes(usage, values, 64, 2, generator, dim=codes.dim)
            index.posting_lengths()
            searches[coef] = lambda index=index, queries=queries: index.search(queries, 10)
            row = {
                "ndcg10": quality["ndcg10"],
                "posting_imbalance": posting_imbalance(codes),
                "expected_postings_per_query": expected_postings_per_query(codes, database),
            }
            rows[coef].append(row)
            report.add_metrics(
                experiment="balance regulariser, k=2 retrieval heads",
                balance_coef=coef,
                seed=seed,
                database=database,
                **row,
            )
        timing = compare(
            searches[0.0],
            searches[BALANCE_COEF],
            name=f"balance experiment, seed {seed}",
            label_a="without balance term",
            label_b=f"balance_coef={BALANCE_COEF:g}",
            repeats=9,
        )
        time_ratios.append(timing.ratio)
        report.add_metrics(
            experiment="balance regulariser, k=2 retrieval heads",
            seed=seed,
            search_time_ratio_off_over_on=timing.ratio,
        )
    off, on = rows[0.0], rows[BALANCE_COEF]
    per_seed = "; ".join(
        f"seed {seed}: imbalance {a['posting_imbalance']:.2f} -> {b['posting_imbalance']:.2f}, "
        f"nDCG@10 {a['ndcg10']:.1f} -> {b['ndcg10']:.1f}, time ratio {r:.2f}"
        for seed, a, b, r in zip(seeds, off, on, time_ratios, strict=True)
    )
    report.add_claim(
        f"The balance term (balance_coef={BALANCE_COEF:g}) makes exact k=2 inverted search at "
        f"least 1.2x faster",
        time_ratios,
        1.2,
        ">=",
        unit="x",
        source="package",
        details=(
            f"per seed, search time without / with the term over {database} codes drawn from "
            f"each head's latent usage (64 queries, top 10), timed interleaved; {per_seed}. "
            "Threshold: the smallest speed-up worth a loss term, fixed before the run"
        ),
    )
    report.add_claim(
        f"The balance term (balance_coef={BALANCE_COEF:g}) costs at most 2 nDCG@10 points at k=2",
        [b["ndcg10"] - a["ndcg10"] for a, b in zip(off, on, strict=True)],
        -2.0,
        ">=",
        unit=" pts",
        source="package",
        details=(
            "per seed, nDCG@10 with minus without the term, CSRv2 retrieval heads on the "
            f"chatterbot Q->A task; {per_seed}. Threshold fixed before the run"
        ),
    )
    return rows


def _claims(
    report: Report, results: dict, by_seed: list, annealing: dict, n_texts: int, hidden: int
) -> None:
    live = annealing["live"]
    for k, paper in ((2, "12% -> 73% live (6x)"), (4, "31% -> 76.5% live (2.5x)")):
        if ("csr", k) not in live:
            continue
        csr, annealed = live[("csr", k)], live[("csr+anneal", k)]
        report.add_claim(
            f"k-annealing at least doubles the live latents at k={k} (paper, e5: {paper})",
            [a / max(c, 1e-9) for a, c in zip(annealed, csr, strict=True)],
            2.0,
            ">=",
            unit="x",
            reference="CSRv2, k-annealing (e5-Mistral, dead-latent figure)",
            details=(
                f"per seed, live-latent ratio CSR+anneal / CSR on {annealing['num']} vectors of an "
                f"anisotropic Gaussian mixture (384-d, unit norm), hidden {ANNEAL_HIDDEN}, "
                f"{annealing['epochs']} epochs of batch {BATCH_SIZE}; live % CSR "
                + ", ".join(f"{v:.1f}" for v in csr)
                + ", CSR+anneal "
                + ", ".join(f"{v:.1f}" for v in annealed)
                + f". On the {n_texts} chatterbot texts at hidden {hidden} (0.1.x's setting) at "
                f"most {min(100.0, 100 * k * n_texts / hidden):.0f}% of latents can be live; "
                f"there CSR {100 - results[('csr', k)]['all_dead_pct']:.1f}% and CSR+anneal "
                f"{100 - results[('csr+anneal', k)]['all_dead_pct']:.1f}% (seed 0)"
            ),
        )
    seeds = len(by_seed)
    for metric, label, paper in (
        ("logreg_acc", "classification accuracy", "+19.1 (52.50 -> 71.59 AP)"),
        ("ndcg10", "retrieval nDCG@10", "+21.3 (16.14 -> 37.48)"),
    ):
        report.add_claim(
            f"CSRv2 beats CSR at k=2 on {label} by >= 5 points (paper, e5: {paper})",
            [row[("csrv2", 2)][metric] - row[("csr", 2)][metric] for row in by_seed],
            5.0,
            ">=",
            unit=" pts",
            reference="CSRv2, Table: CSRv2 vs CSR at k=2",
            details=f"per seed ({seeds}); CSR "
            + ", ".join(f"{row[('csr', 2)][metric]:.1f}" for row in by_seed)
            + "; CSRv2 "
            + ", ".join(f"{row[('csrv2', 2)][metric]:.1f}" for row in by_seed)
            + "; retrieval heads trained on batches of whole Q/A groups",
        )
    for metric, label, paper in (
        ("logreg_acc", "classification accuracy", "+36.8 (34.84 -> 71.59 AP)"),
        ("ndcg10", "retrieval nDCG@10", "+20.9 (16.63 -> 37.48)"),
    ):
        report.add_claim(
            f"CSRv2 at k=2 beats MRL at 2 dims on {label} by >= 5 points (paper, e5: {paper})",
            [row[("csrv2", 2)][metric] - row[("MRL", 2)][metric] for row in by_seed],
            5.0,
            ">=",
            unit=" pts",
            reference="CSRv2, Table: CSRv2 vs MRL at equal active dimensions",
            details=f"per seed ({seeds}); MRL-2 "
            + ", ".join(f"{row[('MRL', 2)][metric]:.1f}" for row in by_seed)
            + " (trained with dims 2 and 4); CSRv2 "
            + ", ".join(f"{row[('csrv2', 2)][metric]:.1f}" for row in by_seed),
        )


def _figures(report: Report, results: dict, d_in: int) -> None:
    methods = sorted({method for method, _ in results} - {"dense"})
    for metric, title in (("logreg_acc", "classification accuracy (%)"), ("ndcg10", "nDCG@10")):
        fig, ax = new_figure()
        for method in methods:
            points = sorted((a, row[metric]) for (m, a), row in results.items() if m == method)
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=method)
        ax.axhline(
            results[("dense", d_in)][metric], color="k", linestyle="--", label=f"dense {d_in}-d"
        )
        ax.set_xscale("log", base=2)
        ax.set_xlabel("active dimensions (k for sparse heads)")
        ax.set_ylabel(title)
        ax.legend(fontsize=7)
        report.save_figure(fig, f"quality_vs_k_{metric}")
