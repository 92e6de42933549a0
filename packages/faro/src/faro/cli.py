"""The ``faro`` console script: train, certify, evaluate, frontier, bench, repro."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from faro import __version__
from kernelkit.cli import add_dataclass_arguments, add_repro_and_bench, dataclass_from_args, run
from kernelkit.io import atomic_write_text
from kernelkit.testing import tiny_sequence_classifier
from kernelkit.validation import check_model_path

__all__ = ["CertifyCommand", "FrontierCommand", "TrainCommand", "main"]

TINY_MODEL = "tiny-llama"


@dataclass
class TrainCommand:
    """``faro train``: ProxyGDA on a transformers reward model (trl RewardTrainer underneath)."""

    train_data: Path = field(
        metadata={
            "help": "JSONL file or datasets directory with prompt, chosen, rejected, group (+ orientation, label, twins)"
        }
    )
    output_dir: Path = field(metadata={"help": "where checkpoints and the final model go"})
    model: str = field(
        default=TINY_MODEL,
        metadata={
            "help": f"model path/id, or '{TINY_MODEL}' for a 2-layer Llama built from config with a byte tokenizer"
        },
    )
    eval_data: Path | None = field(
        default=None, metadata={"help": "validation pairs for the best-feasible-iterate selection"}
    )
    constraint: str = field(
        default="demographic_parity",
        metadata={"help": "demographic_parity, equalized_odds or counterfactual"},
    )
    epsilon: float = field(default=0.05, metadata={"help": "slack in rate units"})
    num_groups: int = field(default=2, metadata={"help": "number of groups K"})
    anchor_group: int = field(default=0, metadata={"help": "group the others are compared with"})
    num_outcomes: int = field(default=2, metadata={"help": "values of the EO outcome column"})
    multiplier_bound: float = field(default=10.0, metadata={"help": "multipliers live in [0, B]"})
    dual_lr: float = field(default=0.05, metadata={"help": "multiplier ascent step"})
    learning_rate: float = field(
        default=1e-4, metadata={"help": "primal learning rate (trl RewardConfig default)"}
    )
    epochs: float = field(default=1.0, metadata={"help": "training epochs"})
    lr_scheduler: str = field(
        default="linear", metadata={"help": "transformers scheduler: linear, cosine, constant, ..."}
    )
    warmup: float = field(
        default=0.0, metadata={"help": "warm-up: a fraction of the steps if < 1, else steps"}
    )
    batch_size: int = field(default=16, metadata={"help": "pairs per device and step"})
    save_steps: int = field(default=200, metadata={"help": "steps between checkpoints"})
    fairness_eval_steps: int = field(
        default=50, metadata={"help": "steps between validation-feasibility checks"}
    )
    resume: bool = field(
        default=False, metadata={"help": "resume from the last checkpoint in output_dir"}
    )
    seed: int = field(default=0, metadata={"help": "random seed"})


@dataclass
class CertifyCommand:
    """``faro certify`` / ``faro evaluate``: a saved reward model on held-out pairs."""

    model: Path = field(metadata={"help": "directory written by faro train (model + tokenizer)"})
    data: Path = field(metadata={"help": "held-out JSONL file or datasets directory"})
    constraint: str = field(
        default="demographic_parity", metadata={"help": "constraint to certify / report"}
    )
    epsilon: float = field(default=0.05, metadata={"help": "slack in rate units"})
    delta: float = field(default=0.05, metadata={"help": "failure probability of the certificate"})
    num_groups: int = field(default=2, metadata={"help": "number of groups K"})
    anchor_group: int = field(default=0, metadata={"help": "group the others are compared with"})
    num_outcomes: int = field(default=2, metadata={"help": "values of the EO outcome column"})
    batch_size: int = field(default=64, metadata={"help": "pairs scored per forward pass"})


@dataclass
class FrontierCommand:
    """``faro frontier``: the accuracy-fairness frontier on planted-bias synthetic data (linear models)."""

    out: Path = field(
        default=Path("faro-frontier"),
        metadata={"help": "output directory for frontier.png and frontier.json"},
    )
    num_pairs: int = field(default=10_000, metadata={"help": "training pairs"})
    steps: int = field(default=600, metadata={"help": "gradient steps per run"})
    epsilons: tuple[float, ...] = field(
        default=(0.2, 0.1, 0.05, 0.02), metadata={"help": "slacks to sweep"}
    )
    constraints: tuple[str, ...] = field(
        default=("demographic_parity", "equalized_odds", "counterfactual"),
        metadata={"help": "constraint types"},
    )
    annotator_skew: float = field(default=1.0, metadata={"help": "planted bias against group 1"})
    base_rate_shift: float = field(
        default=0.0, metadata={"help": "genuine quality shift of group 1 (utility std units)"}
    )
    seed: int = field(default=0, metadata={"help": "data seed"})


def _train(args: argparse.Namespace) -> int:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.trainer_utils import get_last_checkpoint

    from faro.data import load_preferences
    from faro.trainer import FaroConfig, ProxyGDATrainer

    command: TrainCommand = dataclass_from_args(TrainCommand, args)
    # trl defaults to bf16, which needs a GPU that supports it
    on_gpu = torch.cuda.is_available()
    precision = dict(bf16=on_gpu and torch.cuda.is_bf16_supported(), use_cpu=not on_gpu)
    if command.model == TINY_MODEL:
        model, tokenizer = tiny_sequence_classifier(seed=command.seed)
    else:
        source = check_model_path("--model", command.model)
        model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=1)
        tokenizer = AutoTokenizer.from_pretrained(source)
    train = load_preferences(command.train_data)
    evaluation = load_preferences(command.eval_data) if command.eval_data is not None else None
    config = FaroConfig(
        output_dir=str(command.output_dir),
        constraint=command.constraint,
        epsilon=command.epsilon,
        num_groups=command.num_groups,
        anchor_group=command.anchor_group,
        num_outcomes=command.num_outcomes,
        multiplier_bound=command.multiplier_bound,
        dual_lr=command.dual_lr,
        learning_rate=command.learning_rate,
        num_train_epochs=command.epochs,
        lr_scheduler_type=command.lr_scheduler,
        warmup_steps=command.warmup,
        per_device_train_batch_size=command.batch_size,
        per_device_eval_batch_size=command.batch_size,
        save_strategy="steps",
        save_steps=command.save_steps,
        fairness_eval_steps=command.fairness_eval_steps,
        seed=command.seed,
        report_to=[],
        **precision,
    )
    trainer = ProxyGDATrainer(
        model, args=config, train_dataset=train, eval_dataset=evaluation, processing_class=tokenizer
    )
    checkpoint = (
        get_last_checkpoint(str(command.output_dir))
        if command.resume and command.output_dir.is_dir()
        else None
    )
    if command.resume and checkpoint is None:
        print(f"no checkpoint in {command.output_dir}; starting from scratch")
    trainer.train(resume_from_checkpoint=checkpoint)
    final = command.output_dir / "final"
    trainer.save_model(str(final))
    summary = {
        "best_iterate": trainer.best_iterate,
        "multipliers": trainer.lagrangian.multipliers.tolist(),
        "world_size": trainer.args.world_size,
    }
    # save_model writes on the main process only; the summary follows it (the multipliers are
    # identical on every rank).
    if trainer.is_world_process_zero():
        atomic_write_text(final / "faro_training.json", json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    print(f"reward model: {final}")
    return 0


def _load_saved(command: CertifyCommand):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from faro.data import load_preferences

    source = check_model_path("--model", command.model, allow_hub_id=False)
    model = AutoModelForSequenceClassification.from_pretrained(source)
    tokenizer = AutoTokenizer.from_pretrained(source)
    return model, tokenizer, load_preferences(command.data)


def _constraint_of(command: CertifyCommand):
    from faro.constraints import make_constraint

    return make_constraint(
        command.constraint,
        command.epsilon,
        num_groups=command.num_groups,
        anchor=command.anchor_group,
        num_outcomes=command.num_outcomes,
    )


def _certify(args: argparse.Namespace) -> int:
    from faro.certificate import certify

    command: CertifyCommand = dataclass_from_args(CertifyCommand, args)
    constraint = _constraint_of(command)
    model, tokenizer, data = _load_saved(command)
    certificate = certify(
        model, data, constraint, command.delta, tokenizer=tokenizer, batch_size=command.batch_size
    )
    print(json.dumps(certificate.to_dict(), indent=2))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from faro.metrics import evaluate

    command: CertifyCommand = dataclass_from_args(CertifyCommand, args)
    constraint = _constraint_of(command)
    model, tokenizer, data = _load_saved(command)
    row = evaluate(model, data, [constraint], tokenizer=tokenizer, batch_size=command.batch_size)
    for key, value in row.items():
        print(f"{key:40s} {value:.6g}")
    return 0


def _frontier(args: argparse.Namespace) -> int:
    from faro.data import synthetic_preferences
    from faro.frontier import plot_frontier, sweep_frontier
    from faro.linear import LinearTrainingConfig
    from kernelkit.repro import new_figure

    command: FrontierCommand = dataclass_from_args(FrontierCommand, args)
    options = dict(annotator_skew=command.annotator_skew, base_rate_shift=command.base_rate_shift)
    train = synthetic_preferences(command.num_pairs, seed=command.seed, **options)
    validation = synthetic_preferences(
        max(command.num_pairs // 4, 100), seed=command.seed + 1, **options
    )
    test = synthetic_preferences(command.num_pairs, seed=command.seed + 2, **options)
    config = LinearTrainingConfig(steps=command.steps, learning_rate=1.0, eval_every=25)
    rows = sweep_frontier(
        train,
        validation,
        test,
        constraints=command.constraints,
        epsilons=command.epsilons,
        config=config,
    )
    command.out.mkdir(parents=True, exist_ok=True)
    serialisable = [
        {k: (None if isinstance(v, float) and math.isinf(v) else v) for k, v in row.items()}
        for row in rows
    ]
    atomic_write_text(command.out / "frontier.json", json.dumps(serialisable, indent=2))
    figure, axes = new_figure(width=6.0, height=4.0)
    plot_frontier(rows, axes)
    figure.tight_layout()
    figure.savefig(command.out / "frontier.png", dpi=110)
    for row in rows:
        print(
            f"{row['constraint']:20s} eps={row['epsilon']:<6g} acc={row['accuracy']:.4f} pareto={row['pareto']}"
        )
    print(f"frontier: {command.out / 'frontier.png'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from faro import bench, repro

    parser = argparse.ArgumentParser(
        prog="faro", description="Fairness-aware reward optimisation (ProxyGDA)."
    )
    parser.add_argument("--version", action="version", version=f"faro {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    train = subparsers.add_parser("train", help="train a reward model under a fairness constraint")
    add_dataclass_arguments(train, TrainCommand)
    train.set_defaults(handler=_train)
    certify = subparsers.add_parser(
        "certify", help="held-out violation with a confidence bound and a verdict"
    )
    add_dataclass_arguments(certify, CertifyCommand)
    certify.set_defaults(handler=_certify)
    evaluate = subparsers.add_parser(
        "evaluate", help="accuracy, calibration and per-group metrics as one table"
    )
    add_dataclass_arguments(evaluate, CertifyCommand)
    evaluate.set_defaults(handler=_evaluate)
    frontier = subparsers.add_parser(
        "frontier", help="sweep the slack on synthetic data and plot the frontier"
    )
    add_dataclass_arguments(frontier, FrontierCommand)
    frontier.set_defaults(handler=_frontier)
    add_repro_and_bench(subparsers, package="faro", repro_run=repro.run, bench_run=bench.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
