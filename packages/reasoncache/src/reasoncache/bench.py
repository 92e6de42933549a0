"""Per-query cost of many-shot ICL with N demonstrations versus a cache of m slots.

Each comparison times one query's forward pass (prefill of the context for ICL; for the cache,
only the query tokens attend over the m precomputed slots). Ratios are ICL time / cache time;
``meta`` records prefill tokens and KV entries per query, which is what stays flat for the cache.
"""

from __future__ import annotations

import torch

from kernelkit.bench import Comparison, compare
from kernelkit.utils import pick_device
from reasoncache.cache import ReasonCache, ReasonCacheConfig
from reasoncache.inject import forward_with_cache
from reasoncache.recall import RecallConfig, RecallTask, tiny_recall_model

__all__ = ["run"]


def run(quick: bool = True, device: str | torch.device | None = None) -> list[Comparison]:
    device = pick_device(device)
    config = RecallConfig()
    model = tiny_recall_model(config).to(device).eval()
    task = RecallTask(config)
    generator = torch.Generator().manual_seed(0)
    mapping = task.random_maps(1, generator)
    slots = 8
    cache = ReasonCache(model, ReasonCacheConfig(num_slots=slots)).to(device)
    query = task.key_token(torch.tensor([[3]])).to(device)
    results = []
    for demos in (4, 16, 64, 256) if quick else (4, 16, 64, 256, 1024):
        context = task.sequences(mapping, demos, generator).to(device)
        icl_input = torch.cat([context, query], dim=1)

        @torch.no_grad()
        def icl(tokens=icl_input):
            return model(input_ids=tokens).logits[:, -1]

        @torch.no_grad()
        def cached():
            return forward_with_cache(model, cache, query).logits[:, -1]

        results.append(
            compare(
                icl,
                cached,
                name=f"ICL N={demos} vs cache m={slots}",
                label_a=f"ICL N={demos}",
                label_b=f"cache m={slots}",
                repeats=5 if quick else 20,
                device=device,
                threads=1,
                meta={
                    "icl_prefill_tokens": icl_input.shape[1],
                    "cache_prefill_tokens": query.shape[1],
                    "icl_kv_entries": icl_input.shape[1],
                    "cache_kv_entries": slots + query.shape[1],
                },
            )
        )
    return results
