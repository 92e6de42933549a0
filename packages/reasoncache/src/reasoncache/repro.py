"""Quick reproduction on CPU: demonstrations distilled into a cache, against ICL and LoRA.

1. A cache built from the real KV of 16 demonstrations equals ICL with them (max |Δlogit|).
2. One unseen fixed key->value map taught by ICL (N demonstrations), a trained cache (m slots)
   and LoRA on q/v (peft) with about the parameter count of the m=8 cache; accuracy, context
   tokens and KV entries per query.
3. The expressivity toy (see :mod:`reasoncache.expressivity`), both directions.
"""

from __future__ import annotations

import os

import torch

from kernelkit.repro import Report, new_figure
from kernelkit.utils import seed_everything, torch_threads
from reasoncache.cache import ReasonCache, ReasonCacheConfig
from reasoncache.expressivity import ExpressivityConfig, run_expressivity
from reasoncache.initialize import cache_from_text
from reasoncache.inject import forward_with_cache
from reasoncache.recall import (
    BOS,
    RecallConfig,
    RecallTask,
    icl_accuracy,
    load_pretrained_recall_model,
    pretrain_recall_model,
    shipped_recall_model_path,
)

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


def _query_batch(task, mapping):
    keys = torch.arange(task.config.num_keys)
    tokens = torch.stack(
        [torch.full_like(keys, BOS), task.key_token(keys), task.value_token(mapping[keys])], 1
    )
    labels = tokens.clone()
    labels[:, :2] = -100
    return tokens, labels


def _train_cache(model, task, mapping, slots: int, steps: int) -> ReasonCache:
    cache = ReasonCache(model, ReasonCacheConfig(num_slots=slots, init="random"))
    optimizer = torch.optim.AdamW(cache.parameters(), lr=1e-2, weight_decay=0.0)
    tokens, labels = _query_batch(task, mapping)
    for _ in range(steps):
        loss = forward_with_cache(model, cache, tokens, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return cache


def _lora_accuracy(model, task, mapping, rank: int, steps: int) -> tuple[float, int]:
    import copy

    from peft import LoraConfig, get_peft_model

    peft_model = get_peft_model(
        copy.deepcopy(model),
        LoraConfig(r=rank, lora_alpha=rank, target_modules=["q_proj", "v_proj"], lora_dropout=0.0),
    )
    parameters = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=1e-2, weight_decay=0.0)
    tokens, labels = _query_batch(task, mapping)
    for _ in range(steps):
        loss = peft_model(input_ids=tokens, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        predictions = peft_model(input_ids=tokens[:, :2]).logits[:, -1].argmax(-1)
    accuracy = (predictions == tokens[:, 2]).float().mean().item()
    return accuracy, sum(p.numel() for p in parameters)


@torch.no_grad()
def _cache_accuracy(model, task, mapping, cache) -> float:
    tokens, _ = _query_batch(task, mapping)
    logits = forward_with_cache(model, cache, tokens[:, :2]).logits
    return (logits[:, -1].argmax(-1) == tokens[:, 2]).float().mean().item()


def run(out_dir: str | os.PathLike, quick: bool = True) -> Report:
    report = Report("reasoncache", out_dir, quick=quick)
    with torch_threads(1):
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
        steps = 150 if quick else 400
        icl = {}
        for demos in (1, 4, 16) if quick else (1, 4, 16, 32):
            icl[demos] = icl_accuracy(model, task, mapping, demos, generator, trials)
            report.add_metrics(
                method=f"ICL N={demos}",
                accuracy=round(icl[demos], 3),
                context_tokens=2 + 2 * demos,
                kv_entries=2 + 2 * demos,
                trained_parameters=0,
            )
        cached = {}
        for slots in (2, 8, 16):
            trained = _train_cache(model, task, mapping, slots, steps)
            cached[slots] = _cache_accuracy(model, task, mapping, trained)
            report.add_metrics(
                method=f"cache m={slots}",
                accuracy=round(cached[slots], 3),
                context_tokens=2,
                kv_entries=2 + slots,
                trained_parameters=trained.num_trainable_parameters(),
            )
        cache_parameters = ReasonCache(
            model, ReasonCacheConfig(num_slots=8)
        ).num_trainable_parameters()
        per_rank = sum(
            (layer.self_attn.q_proj.in_features + layer.self_attn.q_proj.out_features)
            + (layer.self_attn.v_proj.in_features + layer.self_attn.v_proj.out_features)
            for layer in model.model.layers
        )
        rank = max(1, round(cache_parameters / per_rank))
        lora, lora_parameters = _lora_accuracy(model, task, mapping, rank, steps)
        report.add_metrics(
            method=f"LoRA q,v r={rank}",
            accuracy=round(lora, 3),
            context_tokens=2,
            kv_entries=2,
            trained_parameters=lora_parameters,
        )
        best_icl = max(icl.values())
        report.add_claim(
            f"trained cache (m=8, {2 + 8} KV entries) accuracy minus best ICL accuracy "
            f"(up to {2 + 2 * max(icl)} KV entries)",
            cached[8] - best_icl,
            0.0,
            ">=",
        )
        report.add_claim(
            "trained cache (m=8) accuracy minus ICL at the same KV budget (N=4, 10 KV entries)",
            cached[8] - icl[4],
            0.0,
            ">=",
        )
        report.add_claim(
            f"trained cache (m=8, {cache_parameters} params) accuracy minus LoRA accuracy "
            f"(r={rank}, {lora_parameters} params)",
            cached[8] - lora,
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
    axis.plot([2 + 2 * n for n in icl], list(icl.values()), "o-", label="ICL (N demos)")
    axis.plot([2 + m for m in cached], list(cached.values()), "s-", label="trained cache (m)")
    axis.plot([2], [lora], "^", label=f"LoRA r={rank}")
    axis.set_xscale("log")
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
    report.write()
    return report
