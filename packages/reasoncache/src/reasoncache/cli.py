"""``reasoncache`` console script: train, generate, eval, pretrain-recall, repro, bench."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kernelkit.cli import add_dataclass_arguments, add_repro_and_bench, dataclass_from_args, run
from kernelkit.validation import check_model_path
from reasoncache import __version__, bench, repro
from reasoncache.baselines import (
    DEFAULT_LORA_TARGETS,
    CacheMethod,
    ICLMethod,
    ModelMethod,
    evaluate,
    format_demonstrations,
    match_lora_to_cache,
    train_lora,
)
from reasoncache.cache import ReasonCache, ReasonCacheConfig
from reasoncache.recall import RecallConfig
from reasoncache.train import TrainConfig, train_cache

__all__ = ["main"]


@dataclass
class ModelArguments:
    model: str = field(metadata={"help": "path of a local transformers causal LM (no downloads)"})


def _load(model_path: str):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    check_model_path("--model", model_path, allow_hub_id=False)
    tokenizer = AutoTokenizer.from_pretrained(model_path, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(model_path, local_files_only=True)
    return model.eval(), tokenizer


def _read_examples(path: Path) -> list:
    """JSON Lines: each line a string or {"prompt", "completion"}."""
    examples = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                examples.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{number} is not valid JSON: {err}") from err
    return examples


def _read_demonstrations(path: Path | None, count: int | None) -> str | None:
    """A text file as it is, or a JSON Lines file of {"prompt", "completion"} whose first
    ``count`` (default: all) examples are formatted as an ICL context."""
    if path is None:
        return None
    if path.suffix == ".jsonl":
        examples = _read_examples(path)
        return format_demonstrations(examples, count or len(examples))
    if count is not None:
        raise ValueError("--num-demonstrations needs a .jsonl --demonstrations file")
    return path.read_text("utf-8")


def _train(args: argparse.Namespace) -> int:
    # The Trainer reads True as "the newest checkpoint-* in output_dir".
    resume = True if args.resume == "last" else args.resume
    model, tokenizer = _load(args.model)
    examples = _read_examples(args.examples)
    demonstrations = _read_demonstrations(args.demonstrations, args.num_demonstrations)
    cache_config = dataclass_from_args(ReasonCacheConfig, args)
    train_config = dataclass_from_args(TrainConfig, args)
    if args.method == "lora":
        match = match_lora_to_cache(
            model, cache_config.num_slots, args.lora_targets, cache_config.frozen_slots
        )
        train_lora(model, tokenizer, examples, match, train_config, resume_from_checkpoint=resume)
        print(
            f"LoRA r={match.rank} on {','.join(match.target_modules)}: {match.lora_parameters} "
            f"parameters (cache of m={match.num_slots}: {match.cache_parameters}); "
            f"adapter saved to {args.output_dir}"
        )
        return 0
    train_cache(
        model,
        tokenizer,
        examples,
        cache_config,
        train_config,
        demonstrations=demonstrations,
        questions=[e["prompt"] for e in examples if isinstance(e, dict) and "prompt" in e],
        resume_from_checkpoint=resume,
    )
    print(f"cache saved to {args.output_dir}")
    return 0


def _generate(args: argparse.Namespace) -> int:
    from reasoncache.inject import generate_with_cache

    model, tokenizer = _load(args.model)
    cache = ReasonCache.from_pretrained(args.cache, model)
    batch = tokenizer(args.prompt, return_tensors="pt", padding=True)
    tokens = generate_with_cache(
        model,
        cache,
        batch.input_ids,
        batch.attention_mask,
        max_new_tokens=args.max_new_tokens,
        do_sample=False,
    )
    for row in tokenizer.batch_decode(
        tokens[:, batch.input_ids.shape[1] :], skip_special_tokens=True
    ):
        print(row)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    import torch

    model, tokenizer = _load(args.model)
    needed = {"cache": "cache", "lora": "lora", "icl": "demonstrations"}.get(args.method)
    if needed and getattr(args, needed) is None:
        raise ValueError(f"--method {args.method} needs --{needed}")
    if args.method == "cache":
        method = CacheMethod(model, ReasonCache.from_pretrained(args.cache, model))
    elif args.method == "lora":
        from peft import PeftModel

        method = ModelMethod(PeftModel.from_pretrained(model, str(args.lora)).eval())
    elif args.method == "icl":
        text = _read_demonstrations(args.demonstrations, args.num_demonstrations)
        ids = torch.tensor(tokenizer(text, add_special_tokens=False)["input_ids"])
        method = ICLMethod(model, ids)
    else:
        method = ModelMethod(model)
    examples = [e for e in _read_examples(args.examples) if isinstance(e, dict)]
    result = evaluate(
        method, examples, tokenizer, batch_size=args.batch_size, flop_queries=args.flop_queries
    )
    print(json.dumps(result.as_dict(), indent=2))
    return 0


def _pretrain_recall(args: argparse.Namespace) -> int:
    from kernelkit.utils import torch_threads
    from reasoncache.recall import RecallConfig, pretrain_recall_model, save_recall_model

    config = dataclass_from_args(RecallConfig, args)
    with torch_threads(args.threads):
        model = pretrain_recall_model(config)
    print(f"recall model saved to {save_recall_model(model, config, args.out)}")
    return 0


def _add_demonstration_arguments(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument("--demonstrations", type=Path, default=None, help=help_text)
    parser.add_argument(
        "--num-demonstrations",
        type=int,
        default=None,
        help="use the first N examples of a .jsonl --demonstrations file (default: all)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="reasoncache", description=__doc__)
    parser.add_argument("--version", action="version", version=f"reasoncache {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser(
        "train", help="train a cache (or a parameter-matched LoRA baseline), model frozen"
    )
    add_dataclass_arguments(train, ModelArguments)
    train.add_argument(
        "--method",
        choices=("cache", "lora"),
        default="cache",
        help="cache, or the LoRA baseline with the parameter count of a cache of --num-slots",
    )
    train.add_argument(
        "--lora-targets",
        nargs="+",
        default=list(DEFAULT_LORA_TARGETS),
        help="module names LoRA adapts (--method lora)",
    )
    train.add_argument("--examples", type=Path, required=True, help="JSON Lines training data")
    _add_demonstration_arguments(train, "text (or .jsonl examples) for init='text'/the teacher")
    train.add_argument(
        "--resume",
        default=None,
        help="checkpoint directory to resume from, or 'last' for the newest in --output-dir",
    )
    add_dataclass_arguments(train, ReasonCacheConfig)
    add_dataclass_arguments(train, TrainConfig)
    train.set_defaults(handler=_train)

    generate = commands.add_parser("generate", help="greedy generation with a saved cache")
    add_dataclass_arguments(generate, ModelArguments)
    generate.add_argument("--cache", type=Path, required=True, help="saved cache directory")
    generate.add_argument("--prompt", nargs="+", required=True, help="one or more prompts")
    generate.add_argument("--max-new-tokens", type=int, default=64)
    generate.set_defaults(handler=_generate)

    evaluate = commands.add_parser(
        "eval",
        help="one harness for cache, ICL, LoRA and zero-shot: accuracy, context tokens, KV "
        "entries and FLOPs per query (JSON)",
    )
    add_dataclass_arguments(evaluate, ModelArguments)
    evaluate.add_argument(
        "--method", choices=("cache", "icl", "lora", "zero-shot"), default="cache"
    )
    evaluate.add_argument("--cache", type=Path, default=None, help="saved cache (--method cache)")
    evaluate.add_argument("--lora", type=Path, default=None, help="peft adapter (--method lora)")
    _add_demonstration_arguments(evaluate, "ICL context: text, or .jsonl examples (--method icl)")
    evaluate.add_argument("--examples", type=Path, required=True, help="JSONL prompt/completion")
    evaluate.add_argument("--batch-size", type=int, default=32, help="queries per forward pass")
    evaluate.add_argument(
        "--flop-queries", type=int, default=8, help="queries whose FLOPs are counted (averaged)"
    )
    evaluate.set_defaults(handler=_evaluate)

    pretrain = commands.add_parser(
        "pretrain-recall",
        help="pretrain the tiny associative-recall model (regenerates the shipped fixture)",
    )
    pretrain.add_argument("--out", type=Path, required=True, help="output directory")
    pretrain.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    add_dataclass_arguments(pretrain, RecallConfig)
    pretrain.set_defaults(handler=_pretrain_recall)

    add_repro_and_bench(commands, package="reasoncache", repro_run=repro.run, bench_run=bench.run)
    return run(parser, argv)


if __name__ == "__main__":
    sys.exit(main())
