"""The ``g1`` command: generate, verify, train, eval, repro, bench."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from g1 import __version__, bench, repro
from g1.evaluate import EvalConfig, evaluate
from g1.instance import generate_dataset
from g1.prompts import PROMPT_TEMPLATES
from g1.train import TrainConfig, train
from g1.verify import verify_detailed
from kernelkit.cli import add_dataclass_arguments, add_repro_and_bench, dataclass_from_args, run
from kernelkit.io import atomic_write_text
from kernelkit.utils import progress

__all__ = ["GenerateConfig", "main"]


@dataclass
class GenerateConfig:
    """What ``g1 generate`` writes."""

    out: str = field(
        metadata={"help": "output: a .jsonl file, or a directory for datasets.save_to_disk"}
    )
    tasks: tuple[str, ...] = field(default=(), metadata={"help": "task names (empty: all 50)"})
    n_per_task: int = field(default=100, metadata={"help": "instances per task"})
    seed: int = field(default=0, metadata={"help": "dataset seed"})
    split: str = field(
        default="train", metadata={"help": "train or test (disjoint up to isomorphism)"}
    )
    encoding: str = field(
        default="edge_list", metadata={"help": "edge_list, adjacency, incident or arrows"}
    )
    stage: str = field(default="rl", metadata={"help": "prompt template: rl, sft or eval"})
    n_nodes: int | None = field(
        default=None, metadata={"help": "fix the graph size (default: the task's range)"}
    )


def _generate(config: GenerateConfig) -> int:
    stream = generate_dataset(
        list(config.tasks) or None,
        config.n_per_task,
        config.seed,
        config.split,
        encoding=config.encoding,
        stage=config.stage,
        n_nodes=config.n_nodes,
    )
    total = config.n_per_task * (len(config.tasks) or 50)
    rows = [instance.to_record() for instance in progress(stream, desc="g1 generate", total=total)]
    out = Path(config.out)
    if out.suffix == ".jsonl":
        atomic_write_text(out, "".join(json.dumps(row) + "\n" for row in rows))
    else:
        from datasets import Dataset

        Dataset.from_list(rows).save_to_disk(str(out))
        atomic_write_text(out / "prompt_templates.json", json.dumps(PROMPT_TEMPLATES, indent=2))
    print(f"wrote {len(rows)} instances to {out}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    scored = correct = 0
    lines = []
    with open(args.completions, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            row = json.loads(line)
            if "completion" not in row:
                raise ValueError(
                    f"{args.completions}:{number}: each line needs a 'completion' field beside the instance columns"
                )
            result = verify_detailed(row, row["completion"])
            scored += 1
            correct += int(result.correct)
            lines.append(
                json.dumps(
                    {
                        "task": row["task"],
                        "score": result.score,
                        "stage": result.stage,
                        "reason": result.reason,
                    }
                )
            )
    if args.out:
        atomic_write_text(args.out, "\n".join(lines) + "\n")
    print(f"{correct}/{scored} correct ({correct / max(1, scored):.3f})")
    return 0


def _train(args: argparse.Namespace) -> int:
    trainer = train(dataclass_from_args(TrainConfig, args))
    trainer.save_model()
    logged = [row for row in trainer.state.log_history if "reward" in row]
    summary = {
        "model": trainer.args.output_dir,
        "steps": trainer.state.global_step,
        "world_size": trainer.args.world_size,
        "last_logged_reward": logged[-1]["reward"] if logged else None,
    }
    print(json.dumps(summary))
    return 0


def _eval(args: argparse.Namespace) -> int:
    result = evaluate(dataclass_from_args(EvalConfig, args))
    print(result.table())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="g1", description="The G1 graph-reasoning suite: generate, verify, train, evaluate."
    )
    parser.add_argument("--version", action="version", version=f"g1 {__version__}")
    subparsers = parser.add_subparsers(required=True, metavar="command")

    generate_parser = subparsers.add_parser(
        "generate", help="write instances to JSONL or a datasets directory"
    )
    add_dataclass_arguments(generate_parser, GenerateConfig)
    generate_parser.set_defaults(
        handler=lambda args: _generate(dataclass_from_args(GenerateConfig, args))
    )

    verify_parser = subparsers.add_parser(
        "verify", help="score a JSONL of instance rows with a 'completion' field"
    )
    verify_parser.add_argument("completions", type=Path, help="JSONL: g1 records plus 'completion'")
    verify_parser.add_argument(
        "--out", type=Path, default=None, help="write per-line results here (JSONL)"
    )
    verify_parser.set_defaults(handler=_verify)

    train_parser = subparsers.add_parser(
        "train", help="GRPO with trl (G1 hyperparameters by default)"
    )
    add_dataclass_arguments(train_parser, TrainConfig)
    train_parser.set_defaults(handler=_train)

    eval_parser = subparsers.add_parser("eval", help="accuracy per task and tier on the test split")
    add_dataclass_arguments(eval_parser, EvalConfig)
    eval_parser.set_defaults(handler=_eval)

    add_repro_and_bench(subparsers, package="g1", repro_run=repro.run, bench_run=bench.run)
    return run(parser, argv)


if __name__ == "__main__":
    sys.exit(main())
