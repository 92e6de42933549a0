"""Quick reproduction on CPU: demonstrations distilled into a cache, against ICL and LoRA.

1. A cache built from the real KV of 16 demonstrations equals ICL with them (max |Δlogit|).
2. One unseen fixed key->value map taught by ICL (N demonstrations), a trained cache (m slots)
   and LoRA on q/v (peft) with about the parameter count of the m=8 cache; accuracy, context
   tokens and KV entries per query.
3. A harder new task (a conjunctive map, 16 entries, that no lookup in context solves): ICL,
   caches of m = 8 and 32 slots and LoRA matched to each.
4. The expressivity toy (see :mod:`reasoncache.expressivity`), both directions.
"""

from __future__ import annotations

import os
import tempfile

import torch

from kernelkit.repro import Report, new_figure
from kernelkit.utils import seed_everything, torch_threads
from reasoncache.baselines import (
    CacheMethod,
    EvalResult,
    ICLMethod,
    ModelMethod,
    evaluate,
    match_lora_to_cache,
    train_lora,
)
from reasoncache.cache import ReasonCacheConfig
from reasoncache.expressivity import ExpressivityConfig, run_expressivity
from reasoncache.initialize import cache_from_text
from reasoncache.inject import forward_with_cache
from reasoncache.recall import (
    BOS,
    RecallConfig,
    RecallTask,
    load_pretrained_recall_model,
    pretrain_recall_model,
    shipped_recall_model_path,
)
from reasoncache.train import TrainConfig, train_cache

__all__ = ["run"]


def _recall_model(quick: bool):
    """Quick mode loads the shipped fixture; full mode pretrains from scratch (same recipe)."""
    if quick and shipped_recall_model_path().is_dir():
        model, config = load_pretrained_recall_model()
        return (
            model,
            config,
            (
                f"shipped pretrained weights ({config.pretrain_steps} steps, seed {config.seed}; "
                "regenerate with `reasoncache pretrain-recall`)"
            ),
        )
    config = RecallConfig()
    model = pretrain_recall_model(config)
    return model, config, f"pretrained here for {config.pretrain_steps} steps"


def _query_rows(task: RecallTask, mapping: torch.Tensor, bos: bool) -> list[dict[str, list[int]]]:
    """One scored row per key: ``[BOS] k g(k)`` with the loss on ``g(k)`` only."""
    rows = []
    for key in range(task.config.num_keys):
        ids = [BOS] if bos else []
        ids += [int(task.key_token(torch.tensor(key))), int(task.value_token(mapping[key]))]
        rows.append({"input_ids": ids, "labels": [-100] * (len(ids) - 1) + [ids[-1]]})
    return rows


def _conjunctive_task(task: RecallTask, generator: torch.Generator):
    """A harder new task: the answer depends on the query key *and* the value before it.

    Rows ``BOS k_a v_a k_b y`` with ``y = table[k_b, v_a]`` (a random table: 16 entries for 4
    keys x 4 values; ``k_a`` is a distractor). It is not a lookup of ``k_b`` in the context, so
    the model's induction head (what ICL relies on) does not solve it, and a trained method has
    to combine two content tokens. Returns the rows and the table.
    """
    keys, values = task.config.num_keys, task.config.num_values
    table = torch.randint(0, values, (keys, values), generator=generator)
    rows = []
    for key in range(keys):
        for previous in range(values):
            ids = [
                BOS,
                int(task.key_token(torch.tensor((key + previous) % keys))),
                int(task.value_token(torch.tensor(previous))),
                int(task.key_token(torch.tensor(key))),
                int(task.value_token(table[key, previous])),
            ]
            rows.append({"input_ids": ids, "labels": [-100] * 4 + [ids[-1]]})
    return rows


def _train_config(output_dir: str, steps: int) -> TrainConfig:
    """The repro's optimiser for every trained method (cache and LoRA): AdamW lr 1e-2, full
    batch of the 4 query rows, cosine with 5 % warm-up, no intermediate checkpoints."""
    return TrainConfig(
        output_dir=output_dir,
        learning_rate=1e-2,
        max_steps=steps,
        batch_size=64,
        logging_steps=steps,
        save_steps=10 * steps,
    )


def _icl_result(model, task, mapping, demos: int, generator, trials: int) -> EvalResult:
    """ICL through the harness, averaged over ``trials`` fresh draws of N demonstrations."""
    rows = _query_rows(task, mapping, bos=False)
    # FLOPs depend only on the lengths, which are the same in every trial: count them once.
    results = [
        evaluate(
            ICLMethod(model, task.sequences(mapping[None], demos, generator)[0]),
            rows,
            flop_queries=len(rows) if trial == 0 else 0,
        )
        for trial in range(trials)
    ]
    first = results[0]
    first.method = f"ICL N={demos}"
    first.accuracy = sum(r.accuracy for r in results) / trials
    first.nll = sum(r.nll for r in results) / trials
    return first


def _add_result(report: Report, result: EvalResult) -> None:
    report.add_metrics(
        method=result.method,
        accuracy=round(result.accuracy, 3),
        context_tokens=result.context_tokens,
        kv_entries=result.kv_entries,
        flops=int(result.flops),
        trained_parameters=result.trained_parameters,
    )


def run(out_dir: str | os.PathLike, quick: bool = True) -> Report:
    report = Report("reasoncache", out_dir, quick=quick)
    with torch_threads(1), tempfile.TemporaryDirectory() as scratch:
        seed_everything(0)
        model, recall_config, origin = _recall_model(quick)
        model.requires_grad_(False)
        task = RecallTask(recall_config)
        generator = torch.Generator().manual_seed(1)
        mapping = task.random_maps(1, generator)[0]
        report.notes.append(f"recall model: {origin}; new task = one fixed unseen map")

        demo_tokens = task.sequences(mapping[None], 16, generator)
        cache = cache_from_text(model, demo_tokens)
        keys = torch.arange(task.config.num_keys)
        queries = task.key_token(keys)[:, None]
        icl_logits = model(input_ids=torch.cat([demo_tokens.expand(len(keys), -1), queries], 1))
        cache_logits = forward_with_cache(model, cache, queries).logits
        gap = (icl_logits.logits[:, -1:] - cache_logits).abs().max().item()
        report.add_claim(
            "a cache from the real KV of 16 demonstrations equals ICL with them (max |Δlogit|)",
            gap,
            1e-5,
            "<=",
        )

        trials = 16 if quick else 64
        steps = 300 if quick else 600
        train_rows = _query_rows(task, mapping, bos=True)
        icl: dict[int, EvalResult] = {}
        for demos in (1, 4, 16) if quick else (1, 4, 16, 32):
            icl[demos] = _icl_result(model, task, mapping, demos, generator, trials)
            _add_result(report, icl[demos])
        cached: dict[int, EvalResult] = {}
        for slots in (2, 8, 16):
            trained = train_cache(
                model,
                None,
                train_rows,
                ReasonCacheConfig(num_slots=slots, init="random"),
                _train_config(os.path.join(scratch, f"cache{slots}"), steps),
            )
            cached[slots] = evaluate(CacheMethod(model, trained), train_rows)
            _add_result(report, cached[slots])
        match = match_lora_to_cache(model, 8)
        lora_model = train_lora(
            model, None, train_rows, match, _train_config(os.path.join(scratch, "lora"), steps)
        )
        lora = evaluate(ModelMethod(lora_model, name=f"LoRA q,v r={match.rank}"), train_rows)
        _add_result(report, lora)
        report.notes.append(
            f"LoRA matched to the m=8 cache by match_lora_to_cache: rank {match.rank} on "
            f"{', '.join(match.target_modules)}, {match.lora_parameters} vs "
            f"{match.cache_parameters} parameters ({match.relative_gap:+.0%})"
        )
        best_icl = max(icl.values(), key=lambda r: r.accuracy)
        report.add_claim(
            f"trained cache (m=8, {cached[8].kv_entries:.0f} KV entries) accuracy minus best ICL "
            f"accuracy ({best_icl.method}, {best_icl.kv_entries:.0f} KV entries)",
            cached[8].accuracy - best_icl.accuracy,
            0.0,
            ">=",
        )
        report.add_claim(
            "trained cache (m=8) accuracy minus ICL at the same KV budget (N=4, 10 KV entries)",
            cached[8].accuracy - icl[4].accuracy,
            0.0,
            ">=",
        )
        report.add_claim(
            f"trained cache (m=8, {match.cache_parameters} params) accuracy minus LoRA accuracy "
            f"(r={match.rank}, {match.lora_parameters} params)",
            cached[8].accuracy - lora.accuracy,
            0.0,
            ">=",
        )

        # Harder setting: a conjunctive map that no lookup in context solves.
        hard_rows = _conjunctive_task(task, generator)
        order = torch.randint(0, len(hard_rows), (16,), generator=generator).tolist()
        hard_demos = [BOS] + [t for i in order for t in hard_rows[i]["input_ids"][1:]]
        hard = {
            "zero-shot": evaluate(ModelMethod(model), hard_rows),
            "ICL N=16": evaluate(
                ICLMethod(model, hard_demos),
                [{"input_ids": r["input_ids"][1:], "labels": r["labels"][1:]} for r in hard_rows],
            ),
        }
        for slots in (8, 32):
            trained = train_cache(
                model,
                None,
                hard_rows,
                ReasonCacheConfig(num_slots=slots, init="random"),
                _train_config(os.path.join(scratch, f"hard-cache{slots}"), steps),
            )
            hard[f"cache m={slots}"] = evaluate(CacheMethod(model, trained), hard_rows)
            hard_match = match_lora_to_cache(model, slots)
            adapter = train_lora(
                model,
                None,
                hard_rows,
                hard_match,
                _train_config(os.path.join(scratch, f"hard-lora{slots}"), steps),
            )
            hard[f"LoRA r={hard_match.rank} (params of m={slots})"] = evaluate(
                ModelMethod(adapter), hard_rows
            )
        for name, result in hard.items():
            result.method = f"conjunctive: {name}"
            _add_result(report, result)
        lora_hard = hard[f"LoRA r={match.rank} (params of m=8)"]
        report.add_claim(
            "harder conjunctive map (16 entries): trained cache (m=8) accuracy minus LoRA "
            f"accuracy (r={match.rank}, matched parameters)",
            hard["cache m=8"].accuracy - lora_hard.accuracy,
            0.0,
            ">=",
        )

        toy_config = ExpressivityConfig(steps=200 if quick else 600)
        toy = run_expressivity(toy_config)
        rank1, qk = toy["rank1_prefix_teacher"], toy["qk_lora_teacher"]
        lora_keys = [k for k in rank1 if k.startswith("lora")]
        prefix_keys = [k for k in rank1 if k.startswith("prefix")]
        report.add_claim(
            "rank-1 contexts, prefix teacher: best prefix residual (prefix reaches it)",
            min(rank1[k] for k in prefix_keys),
            0.1,
            "<=",
        )
        report.add_claim(
            "rank-1 contexts, prefix teacher: best LoRA residual (capped by input rank)",
            min(rank1[k] for k in lora_keys),
            0.5,
            ">=",
        )
        report.add_claim(
            "Q/K-LoRA teacher: best LoRA residual (LoRA reaches a new attention pattern)",
            min(qk[k] for k in lora_keys),
            0.1,
            "<=",
        )
        report.add_claim(
            "Q/K-LoRA teacher: best prefix residual (a prefix cannot change relative attention)",
            min(qk[k] for k in prefix_keys),
            0.5,
            ">=",
        )
        for target, row in toy.items():
            report.add_metrics(method=f"toy {target}", **{k: round(v, 4) for k, v in row.items()})

    figure, axis = new_figure()
    for label, marker, results in (
        ("ICL (N demos)", "o-", icl.values()),
        ("trained cache (m slots)", "s-", cached.values()),
        (f"LoRA r={match.rank} (params of m=8)", "^", [lora]),
    ):
        results = list(results)
        axis.plot(
            [r.kv_entries for r in results], [r.accuracy for r in results], marker, label=label
        )
    axis.set_xscale("log")
    axis.minorticks_off()
    ticks = sorted({int(r.kv_entries) for r in [*icl.values(), *cached.values(), lora]})
    axis.set_xticks(ticks, [str(t) for t in ticks])
    axis.set_xlabel("KV entries per query")
    axis.set_ylabel("accuracy on the new map")
    axis.legend()
    report.save_figure(figure, "accuracy_vs_kv")

    figure, axis = new_figure()
    names = lora_keys + prefix_keys
    positions = torch.arange(len(names)).float()
    axis.bar(positions - 0.2, [rank1[k] for k in names], 0.4, label="(i) rank-1, prefix teacher")
    axis.bar(positions + 0.2, [qk[k] for k in names], 0.4, label="(ii) Q/K-LoRA teacher")
    axis.set_xticks(positions.tolist(), names, rotation=30)
    axis.set_ylabel("residual (0 = perfect, 1 = no gain)")
    axis.legend()
    report.save_figure(figure, "expressivity")

    figure, axis = new_figure()
    names = list(hard)
    axis.bar(range(len(names)), [hard[n].accuracy for n in names])
    axis.axhline(1 / task.config.num_values, color="grey", linestyle="--", label="chance")
    axis.set_xticks(range(len(names)), [n.replace(" (", "\n(") for n in names], fontsize=7)
    axis.set_ylabel("accuracy on the conjunctive map")
    axis.set_ylim(0, 1.05)
    axis.legend()
    report.save_figure(figure, "conjunctive")
    report.write()
    return report
