"""Search latency and memory: k-sparse codes in an inverted index vs dense fp32 and MRL-32.

The database holds synthetic codes drawn from the latent-usage distribution of a trained head
(384-d Gaussian-mixture inputs, hidden = 4 x 384 = 1536, CSRv2 recipe), so posting lists are as
skewed as a real head makes them. Each comparison times a batch of 64 queries returning the top
10, interleaved in one process (:func:`kernelkit.bench.compare`); the ratio is dense time over
sparse time. Bytes per vector go into ``meta``: fp32 dense rows against the index's posting-list
storage (int64 id + fp32 value per non-zero, plus offsets).
"""

from __future__ import annotations

import contextlib

import torch

from csrv2.index import SparseIndex
from csrv2.metrics import latent_usage
from csrv2.training import recipe, train
from kernelkit.bench import Comparison, compare
from kernelkit.topk import SparseCodes
from kernelkit.utils import pick_device, torch_threads

__all__ = ["run", "sample_codes"]

D_IN, HIDDEN, QUERIES, TOP_K = 384, 1536, 64, 10


def sample_codes(
    usage: torch.Tensor, values: torch.Tensor, n: int, k: int, generator: torch.Generator
) -> SparseCodes:
    """``n`` codes with ``k`` distinct latents each, latents drawn with probability ``usage``
    (renormalised without replacement) and values resampled from ``values``."""
    p = usage.double() / usage.sum()
    if int((p > 0).sum()) < k:
        raise ValueError(f"usage has fewer than k={k} latents with non-zero probability")
    indices = torch.multinomial(p, n * k, replacement=True, generator=generator).view(n, k)
    while True:
        sorted_rows = torch.sort(indices, dim=1).values
        clash = (sorted_rows[:, 1:] == sorted_rows[:, :-1]).any(dim=1)
        if not bool(clash.any()):
            break
        redo = int(clash.sum())
        indices[clash] = torch.multinomial(p, redo * k, replacement=True, generator=generator).view(
            redo, k
        )
    picks = torch.randint(0, len(values), (n, k), generator=generator)
    return SparseCodes(indices, values[picks].float(), HIDDEN)


def _trained_usage(generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Usage counts at k = 2, 4, 8 and the positive code values of a head trained for a few epochs."""
    centres = torch.randn(64, D_IN, generator=generator) * torch.linspace(2, 0.1, D_IN)
    labels = torch.randint(0, 64, (4096,), generator=generator)
    x = centres[labels] + 0.3 * torch.randn(4096, D_IN, generator=generator)
    x = torch.nn.functional.normalize(x, dim=-1)
    head = train(
        x, labels, recipe("csrv2", k=2, hidden=HIDDEN, epochs=3, lr=4e-4), show_progress=False
    ).model
    usage = {}
    with torch.no_grad():
        for k in (2, 4, 8):
            codes = head.encode(x, k)
            usage[k] = latent_usage(codes)
        values = head.encode(x, 2).values
    return usage, values[values > 0], {k: int((u > 0).sum()) for k, u in usage.items()}


def run(quick: bool = True, device: str | torch.device | None = None) -> list[Comparison]:
    """Sparse search (k = 2, 4, 8) against dense 384-d and MRL-32 brute force, as ratios."""
    dev = pick_device(device)
    n = 200_000 if quick else 1_000_000
    repeats = 5 if quick else 10
    generator = torch.Generator().manual_seed(0)
    results = []
    with torch_threads(1) if dev.type == "cpu" else contextlib.nullcontext():
        usage, values, live = _trained_usage(generator)
        dense_db = torch.nn.functional.normalize(torch.randn(n, D_IN, generator=generator), dim=-1)
        dense_queries = torch.nn.functional.normalize(
            torch.randn(QUERIES, D_IN, generator=generator), dim=-1
        )
        dense_db, dense_queries = dense_db.to(dev), dense_queries.to(dev)
        mrl_db, mrl_queries = dense_db[:, :32].contiguous(), dense_queries[:, :32].contiguous()

        def dense_search(queries=dense_queries, db=dense_db):
            return torch.topk(queries @ db.T, TOP_K, dim=1)

        def mrl_search(queries=mrl_queries, db=mrl_db):
            return torch.topk(queries @ db.T, TOP_K, dim=1)

        for k in (2, 4, 8):
            codes = sample_codes(usage[k], values, n, k, generator)
            queries = sample_codes(usage[k], values, QUERIES, k, generator)
            index = SparseIndex(HIDDEN)
            index.add(codes)
            index.posting_lengths()  # build the posting lists outside the timed region
            method = "inverted" if dev.type == "cpu" else "scan"
            queries_dev = queries.to(dev) if method == "scan" else queries
            sparse_bytes = index.memory_bytes() / n
            p = usage[k].double() / usage[k].sum()
            meta = {
                "database": n,
                "queries": QUERIES,
                "top_k": TOP_K,
                "k": k,
                "hidden": HIDDEN,
                "live_latents_of_trained_head": live[k],
                "expected_pairs_per_query": float(n * k * k * (p * p).sum()),
                "bytes_per_vector_dense_fp32": D_IN * 4,
                "bytes_per_vector_mrl32_fp32": 32 * 4,
                "bytes_per_vector_sparse_index": sparse_bytes,
                "bytes_per_vector_sparse_compact": 6 * k,
            }

            def sparse_search(index=index, queries=queries_dev, method=method):
                return index.search(queries, TOP_K, method=method)

            results.append(
                compare(
                    dense_search,
                    sparse_search,
                    name=f"top-{TOP_K} search, {QUERIES} queries x {n} vectors: dense 384-d vs k={k}",
                    label_a="dense fp32 384-d matmul + topk",
                    label_b=f"SparseIndex k={k} ({method})",
                    repeats=repeats,
                    device=dev,
                    meta={**meta, "memory_ratio_dense_over_sparse": D_IN * 4 / sparse_bytes},
                )
            )
            if k == 2:
                results.append(
                    compare(
                        mrl_search,
                        sparse_search,
                        name=f"top-{TOP_K} search, {QUERIES} queries x {n} vectors: MRL-32 vs k=2",
                        label_a="dense fp32 32-d (MRL-32) matmul + topk",
                        label_b=f"SparseIndex k=2 ({method})",
                        repeats=repeats,
                        device=dev,
                        meta={**meta, "memory_ratio_mrl32_over_sparse": 32 * 4 / sparse_bytes},
                    )
                )
    return results
