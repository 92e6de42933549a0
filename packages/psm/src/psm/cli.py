"""``psm`` command line: train, eval, repro, bench."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from kernelkit.cli import add_dataclass_arguments, add_repro_and_bench, dataclass_from_args, run

__all__ = ["main"]


def _train(args: argparse.Namespace) -> int:
    from psm.training import TrainConfig, evaluate, train

    config = dataclass_from_args(TrainConfig, args)
    result = train(config, args.out, resume=not args.no_resume)
    print(f"trained {config.model} on {config.task}: final loss {result.history[-1]['loss']:.4f}")
    rows = evaluate(result.model, config, args.eval_lengths, samples=args.samples)
    print(json.dumps(rows, indent=2))
    return 0


def _eval(args: argparse.Namespace) -> int:
    from psm.training import evaluate, load_checkpoint

    model, config, meta = load_checkpoint(args.checkpoint)
    rows = evaluate(model, config, args.lengths, samples=args.samples)
    print(f"{config.model} on {config.task} after {meta['step']} steps")
    print(json.dumps(rows, indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from psm import __version__, bench, repro
    from psm.training import TrainConfig

    parser = argparse.ArgumentParser(prog="psm", description="prefix-scannable models")
    parser.add_argument("--version", action="version", version=f"psm {__version__}")
    subparsers = parser.add_subparsers(required=True, metavar="command")

    train = subparsers.add_parser(
        "train", help="train a model on a synthetic task (checkpoints, resumes)"
    )
    add_dataclass_arguments(train, TrainConfig)
    train.add_argument("--out", type=Path, required=True, help="checkpoint directory")
    train.add_argument(
        "--no-resume", action="store_true", help="start over even if --out holds a checkpoint"
    )
    train.add_argument(
        "--eval-lengths",
        type=int,
        nargs="+",
        default=[18, 72, 144, 288],
        help="lengths to evaluate after training",
    )
    train.add_argument("--samples", type=int, default=256, help="evaluation sequences per length")
    train.set_defaults(handler=_train)

    evaluate = subparsers.add_parser("eval", help="accuracy by length of a trained checkpoint")
    evaluate.add_argument("checkpoint", type=Path, help="directory written by `psm train`")
    evaluate.add_argument("--lengths", type=int, nargs="+", default=[18, 72, 144, 288])
    evaluate.add_argument("--samples", type=int, default=256, help="sequences per length")
    evaluate.set_defaults(handler=_eval)

    add_repro_and_bench(subparsers, package="psm", repro_run=repro.run, bench_run=bench.run)
    return run(parser, argv)


if __name__ == "__main__":
    sys.exit(main())
