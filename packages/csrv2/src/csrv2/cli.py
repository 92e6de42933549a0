"""The ``csrv2`` command: train, finetune, encode, index, search, eval, bench, repro.

Embeddings travel between commands as safetensors artifacts (``embeddings`` [N, d] and optional
integer ``labels`` [N]); codes as artifacts with ``indices`` and ``values`` [N, k].
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from csrv2 import __version__, bench, repro
from csrv2.data import encode_texts, load_embeddings, load_labelled_texts, save_embeddings
from csrv2.finetuning import FinetuneConfig, finetune
from csrv2.index import SparseIndex
from csrv2.metrics import (
    dead_latent_fraction,
    effective_latents,
    knn_accuracy,
    logistic_accuracy,
    nmse,
    usage_gini,
)
from csrv2.model import SparseAutoencoder
from csrv2.training import TrainConfig, train
from kernelkit.cli import add_dataclass_arguments, add_repro_and_bench, dataclass_from_args, run
from kernelkit.io import load_artifact, save_artifact
from kernelkit.topk import SparseCodes

__all__ = ["main"]

CODES_KIND = "csrv2.Codes"


def _add_input(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--embeddings", type=Path, help="embeddings artifact directory")
    source.add_argument(
        "--data", type=Path, help=".jsonl or .csv texts, embedded with --backbone first"
    )
    parser.add_argument("--text-field", default="text", help="text column of --data")
    parser.add_argument(
        "--label-field", default=None, help="label column of --data (needed by CSRv2's loss)"
    )
    parser.add_argument(
        "--backbone",
        default=None,
        help="sentence-transformers model path (default: bundled MiniLM)",
    )


def _read_input(
    args: argparse.Namespace, cache: Path | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    if args.embeddings is not None:
        return load_embeddings(args.embeddings)
    texts, labels, _ = load_labelled_texts(args.data, args.text_field, args.label_field)
    embeddings = encode_texts(texts, args.backbone, cache_dir=cache, show_progress=True)
    return embeddings, labels


def _train(args: argparse.Namespace) -> int:
    config = dataclass_from_args(TrainConfig, args)
    embeddings, labels = _read_input(args, args.out / "embeddings")
    if args.data is not None:
        save_embeddings(args.out / "embeddings", embeddings, labels)
    result = train(embeddings, labels, config, out_dir=args.out)
    last = result.history[-1]
    print(json.dumps({"model": str(args.out / "model"), **last}))
    return 0


def _finetune(args: argparse.Namespace) -> int:
    config = dataclass_from_args(TrainConfig, args)
    finetune_config = dataclass_from_args(FinetuneConfig, args, prefix="e2e-")
    texts, labels, _ = load_labelled_texts(args.data, args.text_field, args.label_field)
    result = finetune(texts, labels, config, finetune_config, args.backbone, out_dir=args.out)
    losses = [row for row in result.log_history if "loss" in row]
    print(json.dumps({"model": str(args.out / "model"), **(losses[-1] if losses else {})}))
    return 0


def _encode(args: argparse.Namespace) -> int:
    head = SparseAutoencoder.from_pretrained(args.model)
    embeddings, labels = _read_input(args, None)
    with torch.no_grad():
        codes = head.encode(embeddings, args.k)
    tensors = {"indices": codes.indices, "values": codes.values}
    if labels is not None:
        tensors["labels"] = labels
    save_artifact(args.out, tensors, {"dim": codes.dim, "k": codes.k}, kind=CODES_KIND)
    print(json.dumps({"codes": str(args.out), "count": len(codes), "k": codes.k}))
    return 0


def _load_codes(directory: Path) -> SparseCodes:
    tensors, config = load_artifact(directory, kind=CODES_KIND)
    return SparseCodes(tensors["indices"], tensors["values"], int(config["dim"]))


def _index(args: argparse.Namespace) -> int:
    codes = _load_codes(args.codes)
    index = SparseIndex(codes.dim, similarity=args.similarity, pruning=args.pruning)
    index.add(codes)
    index.save(args.out)
    print(json.dumps({"index": str(args.out), "size": len(index), "bytes": index.memory_bytes()}))
    return 0


def _search(args: argparse.Namespace) -> int:
    index = SparseIndex.load(args.index)
    result = index.search(_load_codes(args.queries), args.top_k, method=args.method)
    rows = [
        {"query": q, "ids": ids, "scores": scores}
        for q, (ids, scores) in enumerate(
            zip(result.ids.tolist(), result.scores.tolist(), strict=True)
        )
    ]
    text = json.dumps(rows)
    if args.out is not None:
        args.out.write_text(text, encoding="utf-8")
    else:
        print(text)
    return 0


def _eval(args: argparse.Namespace) -> int:
    head = SparseAutoencoder.from_pretrained(args.model)
    embeddings, labels = _read_input(args, None)
    with torch.no_grad():
        codes, reconstruction = head(embeddings)
    metrics = {
        "count": len(codes),
        "k": codes.k,
        "dead_latent_pct": 100 * dead_latent_fraction(codes),
        "effective_latents": effective_latents(codes),
        "usage_gini": usage_gini(codes),
        "nmse": nmse(embeddings, reconstruction),
        "mean_l0": float(codes.nnz().float().mean()),
    }
    if labels is not None:
        # A seeded 80/20 split of the given rows: accuracy of classifiers fitted on the codes.
        order = torch.randperm(len(codes), generator=torch.Generator().manual_seed(0))
        cut = int(0.8 * len(order))
        fit, held = order[:cut], order[cut:]
        metrics["knn_acc"] = knn_accuracy(codes[fit], labels[fit], codes[held], labels[held])
        metrics["logreg_acc"] = logistic_accuracy(
            codes[fit], labels[fit], codes[held], labels[held]
        )
    print(json.dumps(metrics, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="csrv2", description="Ultra-sparse embeddings (CSR / CSRv2) and sparse retrieval"
    )
    parser.add_argument("--version", action="version", version=f"csrv2 {__version__}")
    sub = parser.add_subparsers(required=True, metavar="command")

    p = sub.add_parser("train", help="train a sparse head on embeddings (or texts)")
    _add_input(p)
    p.add_argument("--out", type=Path, required=True, help="output dir (checkpoints, model/)")
    add_dataclass_arguments(p, TrainConfig)
    p.set_defaults(handler=_train)

    p = sub.add_parser(
        "finetune",
        help="train backbone + head end to end on texts (sentence-transformers trainer; "
        "works under accelerate launch / torchrun)",
    )
    p.add_argument("--data", type=Path, required=True, help=".jsonl or .csv texts")
    p.add_argument("--text-field", default="text", help="text column of --data")
    p.add_argument(
        "--label-field", default=None, help="label column of --data (needed by CSRv2's loss)"
    )
    p.add_argument(
        "--backbone", default=None, help="sentence-transformers model path (default: MiniLM)"
    )
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        help="output dir: stage1/ and stage2/checkpoint-N (rerun to resume), model/",
    )
    add_dataclass_arguments(p, TrainConfig)
    add_dataclass_arguments(p, FinetuneConfig, prefix="e2e-")
    p.set_defaults(handler=_finetune)

    p = sub.add_parser("encode", help="encode embeddings (or texts) into k-sparse codes")
    _add_input(p)
    p.add_argument("--model", type=Path, required=True, help="trained head directory")
    p.add_argument("--k", type=int, default=None, help="active latents (default: the head's k)")
    p.add_argument("--out", type=Path, required=True, help="codes artifact directory")
    p.set_defaults(handler=_encode)

    p = sub.add_parser("index", help="build an inverted index over codes")
    p.add_argument("--codes", type=Path, required=True, help="codes artifact directory")
    p.add_argument("--similarity", choices=("dot", "cosine"), default="cosine")
    p.add_argument(
        "--pruning",
        action="store_true",
        help="exact threshold-algorithm search (impact-ordered lists + forward codes; pays at k=2)",
    )
    p.add_argument("--out", type=Path, required=True, help="index directory")
    p.set_defaults(handler=_index)

    p = sub.add_parser("search", help="search an index with query codes")
    p.add_argument("--index", type=Path, required=True)
    p.add_argument("--queries", type=Path, required=True, help="codes artifact of the queries")
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument("--method", choices=("inverted", "scan"), default="inverted")
    p.add_argument("--out", type=Path, default=None, help="write JSON here instead of stdout")
    p.set_defaults(handler=_search)

    p = sub.add_parser("eval", help="latent usage, NMSE and (with labels) accuracy of a head")
    _add_input(p)
    p.add_argument("--model", type=Path, required=True, help="trained head directory")
    p.set_defaults(handler=_eval)

    add_repro_and_bench(sub, package="csrv2", repro_run=repro.run, bench_run=bench.run)
    p = sub.choices["bench"]
    p.add_argument(
        "--k", type=int, nargs="+", choices=bench.KS, default=list(bench.KS),
        help="code widths to run (default: all)",
    )  # fmt: skip
    p.add_argument(
        "--usage", nargs="+", choices=bench.USAGES, default=list(bench.USAGES),
        help="latent usages to run (default: all)",
    )  # fmt: skip
    p.set_defaults(handler=_bench)
    return parser


def _bench(args: argparse.Namespace) -> int:
    from kernelkit.bench import comparisons_to_markdown
    from kernelkit.io import atomic_write_text

    results = bench.run(
        quick=not args.full, device=args.device, ks=tuple(args.k), usages=tuple(args.usage)
    )
    print(comparisons_to_markdown(results))
    if args.json is not None:
        atomic_write_text(args.json, json.dumps([r.to_dict() for r in results], indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
