"""``reasoncache`` console script: train, generate, eval, pretrain-recall, repro, bench."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kernelkit.cli import add_dataclass_arguments, add_repro_and_bench, dataclass_from_args
from reasoncache import bench, repro
from reasoncache.cache import ReasonCache, ReasonCacheConfig
from reasoncache.recall import RecallConfig
from reasoncache.train import TrainConfig, train_cache

__all__ = ["main"]


@dataclass
class ModelArguments:
    model: str = field(metadata={"help": "path of a local transformers causal LM (no downloads)"})


def _load(model_path: str):
    from transformers import AutoModelForCausalLM, AutoTokenizer

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
                raise SystemExit(f"{path}:{number} is not valid JSON: {err}") from err
    return examples


def _train(args: argparse.Namespace) -> int:
    model, tokenizer = _load(args.model)
    examples = _read_examples(args.examples)
    demonstrations = args.demonstrations.read_text("utf-8") if args.demonstrations else None
    train_cache(
        model,
        tokenizer,
        examples,
        dataclass_from_args(ReasonCacheConfig, args),
        dataclass_from_args(TrainConfig, args),
        demonstrations=demonstrations,
        questions=[e["prompt"] for e in examples if isinstance(e, dict) and "prompt" in e],
        resume_from_checkpoint=args.resume,
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
    from torch.utils.flop_counter import FlopCounterMode

    from reasoncache.inject import generate_with_cache

    model, tokenizer = _load(args.model)
    cache = ReasonCache.from_pretrained(args.cache, model)
    examples = [e for e in _read_examples(args.examples) if isinstance(e, dict)]
    correct, flops, context = 0, 0, 0
    for example in examples:
        batch = tokenizer([example["prompt"]], return_tensors="pt")
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            tokens = generate_with_cache(
                model,
                cache,
                batch.input_ids,
                batch.attention_mask,
                max_new_tokens=args.max_new_tokens,
                do_sample=False,
            )
        flops += counter.get_total_flops()
        context += batch.input_ids.shape[1]
        answer = tokenizer.decode(tokens[0, batch.input_ids.shape[1] :], skip_special_tokens=True)
        correct += answer.strip().startswith(example["completion"].strip())
    count = max(len(examples), 1)
    print(
        json.dumps(
            {
                "accuracy": correct / count,
                "context_tokens_per_query": context / count,
                "kv_entries_per_query": cache.num_slots + context / count,
                "flops_per_query": flops / count,
            },
            indent=2,
        )
    )
    return 0


def _pretrain_recall(args: argparse.Namespace) -> int:
    from kernelkit.utils import torch_threads
    from reasoncache.recall import RecallConfig, pretrain_recall_model, save_recall_model

    config = dataclass_from_args(RecallConfig, args)
    with torch_threads(args.threads):
        model = pretrain_recall_model(config)
    print(f"recall model saved to {save_recall_model(model, config, args.out)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="reasoncache", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a cache with the model frozen")
    add_dataclass_arguments(train, ModelArguments)
    train.add_argument("--examples", type=Path, required=True, help="JSON Lines training data")
    train.add_argument("--demonstrations", type=Path, default=None, help="text for init/teacher")
    train.add_argument("--resume", default=None, help="checkpoint directory to resume from")
    add_dataclass_arguments(train, ReasonCacheConfig)
    add_dataclass_arguments(train, TrainConfig)
    train.set_defaults(handler=_train)

    generate = commands.add_parser("generate", help="greedy generation with a saved cache")
    add_dataclass_arguments(generate, ModelArguments)
    generate.add_argument("--cache", type=Path, required=True, help="saved cache directory")
    generate.add_argument("--prompt", nargs="+", required=True, help="one or more prompts")
    generate.add_argument("--max-new-tokens", type=int, default=64)
    generate.set_defaults(handler=_generate)

    evaluate = commands.add_parser("eval", help="accuracy, context, KV entries, FLOPs per query")
    add_dataclass_arguments(evaluate, ModelArguments)
    evaluate.add_argument("--cache", type=Path, required=True, help="saved cache directory")
    evaluate.add_argument("--examples", type=Path, required=True, help="JSONL prompt/completion")
    evaluate.add_argument("--max-new-tokens", type=int, default=16)
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
    args = parser.parse_args(argv)
    return args.handler(args)
