"""``pjax-torch``: train a model by projections (and Adam for comparison), reproduce, benchmark."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from kernelkit.cli import add_dataclass_arguments, add_repro_and_bench, dataclass_from_args, run
from kernelkit.utils import torch_threads
from pjax_torch import __version__, bench, repro
from pjax_torch.train import TrainConfig, train


def _train(args: argparse.Namespace) -> int:
    config = dataclass_from_args(TrainConfig, args)
    with torch_threads(1):
        result = train(config)
    summary = {"final_metric": result["final_metric"]}
    if "adam" in result:
        summary["adam_final_metric"] = result["adam"]["metric"][-1]
    print(json.dumps(summary))
    print(f"results: {config.out_dir}/results.json")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="pjax-torch",
        description="Feasibility-seeking training with exact projection operators",
    )
    parser.add_argument("--version", action="version", version=f"pjax-torch {__version__}")
    subparsers = parser.add_subparsers(required=True, metavar="command")
    train_parser = subparsers.add_parser(
        "train", help="train an MLP/CNN/RNN by projections (and by Adam)"
    )
    add_dataclass_arguments(train_parser, TrainConfig)
    train_parser.set_defaults(handler=_train)
    add_repro_and_bench(subparsers, package="pjax-torch", repro_run=repro.run, bench_run=bench.run)
    return run(parser, argv)


if __name__ == "__main__":
    sys.exit(main())
