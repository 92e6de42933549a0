"""The ``seqtopk`` command: train, eval, finetune, repro, bench."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from kernelkit.cli import add_dataclass_arguments, add_repro_and_bench, dataclass_from_args, run

__all__ = ["main"]


def _train(args: argparse.Namespace) -> int:
    from seqtopk.experiment import SmallMoEConfig, TrainConfig, evaluate, train

    config = dataclass_from_args(TrainConfig, args)
    model_config = dataclass_from_args(SmallMoEConfig, args, prefix="model-")
    model, task, losses = train(config, model_config, out_dir=args.out)
    low, high = config.bounds(model_config.num_experts)
    metrics = evaluate(
        model,
        task,
        routing=config.routing,
        mode="online",
        k=config.k,
        min_per_token=low,
        max_per_token=high,
        seq_len=config.seq_len,
    )
    summary = {"config": asdict(config), "final_loss": losses[-1], "online_eval": metrics}
    print(json.dumps(summary, indent=2))
    return 0


def _finetune(args: argparse.Namespace) -> int:
    from seqtopk.finetune import FinetuneConfig, finetune

    config = dataclass_from_args(FinetuneConfig, args)
    finetune(config)
    print(f"saved the fine-tuned model to {config.output_dir}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from seqtopk.finetune import EvalConfig, evaluate_text

    print(json.dumps(evaluate_text(dataclass_from_args(EvalConfig, args)), indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from seqtopk import __version__, bench, repro
    from seqtopk.experiment import SmallMoEConfig, TrainConfig
    from seqtopk.finetune import EvalConfig, FinetuneConfig

    parser = argparse.ArgumentParser(
        prog="seqtopk", description="sequence-level expert routing for MoE language models"
    )
    parser.add_argument("--version", action="version", version=f"seqtopk {__version__}")
    subparsers = parser.add_subparsers(required=True, metavar="command")

    train_parser = subparsers.add_parser(
        "train", help="train the small MoE LM on the easy/hard mixture task (TopK or SeqTopK)"
    )
    add_dataclass_arguments(train_parser, TrainConfig)
    add_dataclass_arguments(train_parser, SmallMoEConfig, prefix="model-")
    train_parser.add_argument(
        "--out", type=Path, default=None, help="checkpoint directory (resumes when present)"
    )
    train_parser.set_defaults(handler=_train)

    finetune_parser = subparsers.add_parser(
        "finetune",
        help="fine-tune a saved MoE model with Trainer, switched to SeqTopK (or on TopK)",
    )
    add_dataclass_arguments(finetune_parser, FinetuneConfig)
    finetune_parser.set_defaults(handler=_finetune)

    eval_parser = subparsers.add_parser(
        "eval", help="perplexity and next-token accuracy of a saved MoE model on a text file"
    )
    add_dataclass_arguments(eval_parser, EvalConfig)
    eval_parser.set_defaults(handler=_eval)

    add_repro_and_bench(subparsers, package="seqtopk", repro_run=repro.run, bench_run=bench.run)
    return run(parser, argv)


if __name__ == "__main__":
    sys.exit(main())
