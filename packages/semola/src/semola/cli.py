"""The ``semola`` command: train, discover, eval, repro, bench."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from kernelkit.cli import add_dataclass_arguments, add_repro_and_bench, dataclass_from_args, run
from semola import __version__
from semola.data import make_task
from semola.loss import SEMoLALossConfig
from semola.readout import compare_algebras, symmetry_signature
from semola.training import TrainConfig, build_trainer, evaluate, fit

__all__ = ["main"]


def _configs(args: argparse.Namespace) -> tuple[TrainConfig, SEMoLALossConfig]:
    return dataclass_from_args(TrainConfig, args), dataclass_from_args(
        SEMoLALossConfig, args, prefix="loss-"
    )


def _train(args: argparse.Namespace) -> int:
    config, loss_config = _configs(args)
    task = make_task(config.task, num_samples=config.num_samples, seed=config.seed)
    trainer = build_trainer(task, config, loss_config)
    result = fit(trainer, task, config, checkpoint_dir=args.out)
    metrics = evaluate(trainer, task)
    print(
        json.dumps(
            {"config": asdict(config), "metrics": metrics, "last": result.history[-1]}, indent=2
        )
    )
    return 0


def _discovery_summary(trainer, task) -> dict:
    basis = trainer.augmenter.basis().detach()
    summary = {"generators": basis.tolist()}
    if task.reference is not None:
        comparison = compare_algebras(basis, task.reference)
        summary["principal_cosines"] = list(comparison.cosines)
        summary["score"] = comparison.score
    signature = symmetry_signature(
        trainer.base_model, trainer.augmenter, task.x_test, output_action=task.output_action
    )
    summary["relative_equivariance_error"] = signature.relative_equivariance_error
    return summary


def _discover(args: argparse.Namespace) -> int:
    config, loss_config = _configs(args)
    config.method = "semola"
    task = make_task(config.task, num_samples=config.num_samples, seed=config.seed)
    trainer = build_trainer(task, config, loss_config)
    fit(trainer, task, config, checkpoint_dir=args.out / "checkpoint" if args.out else None)
    summary = _discovery_summary(trainer, task)
    print(json.dumps(summary, indent=2))
    if args.out is not None:
        from semola.repro import plot_generators

        figure = plot_generators(
            trainer.augmenter.basis().detach(),
            task.reference,
            title=f"learned vs reference ({task.name})",
        )
        args.out.mkdir(parents=True, exist_ok=True)
        figure.savefig(args.out / "generators.png", dpi=110)
        print(f"figure: {args.out / 'generators.png'}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    config, loss_config = _configs(args)
    task = make_task(config.task, num_samples=config.num_samples, seed=config.seed)
    trainer = build_trainer(task, config, loss_config)
    if not (args.checkpoint / "manifest.json").is_file():
        raise ValueError(
            f"--checkpoint {str(args.checkpoint)!r} holds no checkpoint (no manifest.json); run `semola train --out` first"
        )
    # fit() resumes from the checkpoint; when it is complete no step is left to run.
    fit(trainer, task, config, checkpoint_dir=args.checkpoint)
    report = {"metrics": evaluate(trainer, task)}
    if config.method == "semola":
        report.update(_discovery_summary(trainer, task))
    print(json.dumps(report, indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from semola import bench, repro

    parser = argparse.ArgumentParser(
        prog="semola", description="learnable Lie-algebra augmentations (SEMoLA)"
    )
    parser.add_argument("--version", action="version", version=f"semola {__version__}")
    subparsers = parser.add_subparsers(required=True, metavar="command")

    def with_configs(sub: argparse.ArgumentParser) -> argparse.ArgumentParser:
        add_dataclass_arguments(sub, TrainConfig)
        add_dataclass_arguments(sub, SEMoLALossConfig, prefix="loss-")
        return sub

    train = with_configs(
        subparsers.add_parser("train", help="train a method on a task (resumable with --out)")
    )
    train.add_argument(
        "--out", type=Path, default=None, help="checkpoint directory (resumes if present)"
    )
    train.set_defaults(handler=_train)

    discover = with_configs(
        subparsers.add_parser(
            "discover", help="learn generators, print and plot them against the reference"
        )
    )
    discover.add_argument(
        "--out", type=Path, default=None, help="directory for the checkpoint and generators.png"
    )
    discover.set_defaults(handler=_discover)

    evaluate_cmd = with_configs(subparsers.add_parser("eval", help="evaluate a trained checkpoint"))
    evaluate_cmd.add_argument(
        "--checkpoint", type=Path, required=True, help="directory written by `semola train --out`"
    )
    evaluate_cmd.set_defaults(handler=_eval)

    add_repro_and_bench(subparsers, package="semola", repro_run=repro.run, bench_run=bench.run)
    return run(parser, argv)


if __name__ == "__main__":
    sys.exit(main())
