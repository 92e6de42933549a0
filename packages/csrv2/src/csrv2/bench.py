"""Search latency and memory of k-sparse codes: ``SparseIndex`` beside dense and sparse anchors.

The database holds synthetic codes (hidden = 4 x 384 = 1536) with values resampled from a
trained head's codes and latents drawn either evenly or from that head's usage (``"skewed"``:
a head trained for a few epochs on 384-d Gaussian-mixture inputs, CSRv2 recipe), so posting
lists are as long as a real head makes them. Every anchor is timed against ``SparseIndex.search``
(float16 values, the numba kernel when installed; the ``scan`` path on a GPU) and, on the CPU,
against the same index built with ``pruning=True`` (threshold algorithm, exact), all three
interleaved in one process on the same codes and queries (one torch thread); each ratio is
anchor time over that index's time, and one more row per cell puts the exhaustive index itself
as the anchor of the pruned one. The anchors:

- dense fp32 matmul + top-k at 384-d, at 4096-d (the paper's e5-Mistral shape) and MRL-32
  (the first 32 dims). At 4096-d the database is scanned in 16,384-row chunks of one random
  block, because N x 4096 fp32 (3.3 GB at 200k, 16 GB at 1M) does not fit a shared machine: the
  arithmetic and memory traffic are those of N rows, only the block's content repeats;
- scipy.sparse CSR SpMM (queries x the transposed database) + per-row ``argpartition``;
- ``sparse-dot-topn`` (exact sparse x sparse keeping the top n, one thread);
- Seismic (``pyseismic-lsr``, approximate, one thread) at two settings, with its recall@10
  against the exact result.

The last three come with ``pip install 'csrv2[bench]'`` and are skipped (with a note in
``meta``) when missing. Batch 1 is online latency (``ONLINE`` single-query calls per timed
run); batch 64 is one call. ``meta`` holds each method's bytes per vector, the postings a query
touches (the sum of its latents' posting-list lengths) and each method's nanoseconds per touched
posting (its time over the postings the inverted index walks, the floor memory latency sets);
for the pruned index also the postings it actually reads per query and its time per posting read.

``run(ks=..., usages=...)`` (``csrv2 bench --k 2 --usage skewed``) restricts the grid, e.g. to the
targets' cell at 1M codes, where the whole grid takes most of an hour on a shared machine.
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import os
import re
import sys
import tempfile
from collections.abc import Callable

import numpy as np
import torch

from csrv2.index import SparseIndex, numba_available
from csrv2.metrics import latent_usage
from csrv2.training import recipe, train
from kernelkit.bench import Comparison, time_interleaved
from kernelkit.topk import SparseCodes
from kernelkit.utils import pick_device, torch_threads

__all__ = ["run", "sample_codes"]

D_IN, HIDDEN, QUERIES, TOP_K = 384, 1536, 64, 10
KS = (2, 4, 8)
USAGES = ("skewed", "even")
BATCHES = (1, QUERIES)
# Single-query calls per timed run at batch 1: enough work to time, few enough for dense 4096-d.
ONLINE = 4
DENSE_CHUNK = 1 << 14
# Seismic (query_cut = k, all of the query): (label, n_postings per latent as a multiple of the
# mean posting-list length or None for every posting, summary_energy, heap_factor). The first
# is the library's usual regime (pruned lists, lossy block summaries); the second keeps every
# posting and exact block summaries, the setting that reached recall@10 = 1.0 here.
SEISMIC_SETTINGS = (("pruned", 2.0, 0.4, 0.9), ("exact summaries", None, 1.0, 1.0))


def sample_codes(
    usage: torch.Tensor,
    values: torch.Tensor,
    n: int,
    k: int,
    generator: torch.Generator,
    dim: int = HIDDEN,
) -> SparseCodes:
    """``n`` codes of width ``dim`` with ``k`` distinct latents each, latents drawn with
    probability ``usage`` (renormalised without replacement) and values resampled from
    ``values``."""
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
    return SparseCodes(indices, values[picks].float(), dim)


def _trained_usage(generator: torch.Generator) -> tuple[dict, torch.Tensor, dict]:
    """Usage counts at k = 2, 4, 8 and the positive code values of a head trained for a few epochs."""
    centres = torch.randn(64, D_IN, generator=generator) * torch.linspace(2, 0.1, D_IN)
    labels = torch.randint(0, 64, (4096,), generator=generator)
    x = centres[labels] + 0.3 * torch.randn(4096, D_IN, generator=generator)
    x = torch.nn.functional.normalize(x, dim=-1)
    head = train(
        x, labels, recipe("csrv2", k=2, hidden=HIDDEN, epochs=3, lr=4e-4), show_progress=False
    ).model
    usage = {}
    # train() picks the GPU when there is one; the sampling below runs on the CPU.
    x = x.to(next(head.parameters()).device)
    with torch.no_grad():
        for k in KS:
            usage[k] = latent_usage(head.encode(x, k)).cpu()
        values = head.encode(x, 2).values.cpu()
    return usage, values[values > 0], {k: int((u > 0).sum()) for k, u in usage.items()}


def _dense_search(queries: torch.Tensor, block: torch.Tensor, n: int) -> Callable[[], object]:
    """Brute-force top-k over ``n`` rows made of ``block`` repeated (chunked matmul + top-k, the
    chunks' winners merged), so the database never needs ``n`` distinct rows in memory."""

    def search():
        best_scores, best_ids = [], []
        for start in range(0, n, len(block)):
            rows = block[: min(len(block), n - start)]
            top = torch.topk(queries @ rows.T, TOP_K, dim=1)
            best_scores.append(top.values)
            best_ids.append(top.indices + start)
        merged = torch.topk(torch.cat(best_scores, dim=1), TOP_K, dim=1)
        return merged.values, torch.cat(best_ids, dim=1).gather(1, merged.indices)

    return search


def _online(search_one: Callable[[int], object], batch: int) -> Callable[[], object]:
    """``batch`` 64: one call on all queries; ``batch`` 1: ``ONLINE`` calls of one query each."""
    if batch == 1:
        return lambda: [search_one(i) for i in range(ONLINE)]
    return lambda: search_one(-1)


def _csr_of(codes: SparseCodes):
    """Rows of ``codes`` as a float32 scipy CSR matrix (their latents are distinct)."""
    from scipy import sparse

    n, k = codes.indices.shape
    indptr = np.arange(0, n * k + 1, k, dtype=np.int64)
    return sparse.csr_matrix(
        (codes.values.numpy().ravel(), codes.indices.numpy().ravel(), indptr), shape=(n, HIDDEN)
    )


def _scipy_search(inverted, queries: SparseCodes) -> Callable[[int], object]:
    def search(row: int):
        q = queries if row < 0 else queries[row : row + 1]
        scores = _csr_of(q) @ inverted
        out = []
        for r in range(scores.shape[0]):
            data = scores.data[scores.indptr[r] : scores.indptr[r + 1]]
            cols = scores.indices[scores.indptr[r] : scores.indptr[r + 1]]
            if len(data) > TOP_K:
                keep = np.argpartition(-data, TOP_K)[:TOP_K]
                data, cols = data[keep], cols[keep]
            out.append(cols[np.argsort(-data, kind="stable")])
        return out

    return search


def _sdtn_search(inverted, queries: SparseCodes) -> Callable[[int], object]:
    from sparse_dot_topn import sp_matmul_topn

    def search(row: int):
        q = queries if row < 0 else queries[row : row + 1]
        return sp_matmul_topn(_csr_of(q), inverted, top_n=TOP_K, sort=True, n_threads=1)

    return search


@contextlib.contextmanager
def _captured_stdout():
    """Seismic's Rust core prints (its build log, its memory report) straight to file
    descriptor 1; this yields a file that receives it instead."""
    sys.stdout.flush()
    saved = os.dup(1)
    with tempfile.TemporaryFile(mode="w+") as capture:
        try:
            os.dup2(capture.fileno(), 1)
            yield capture
        finally:
            os.dup2(saved, 1)
            os.close(saved)


def _seismic_bytes(index) -> float:
    """The index's own memory report (forward index, postings, summaries), in bytes."""
    with _captured_stdout() as capture:
        index.print_space_usage_byte()
        os.fsync(1)
        capture.seek(0)
        report = capture.read()
    found = re.search(r"Total:\s*(\d+)\s*Bytes", report)
    return float(found.group(1)) if found else float("nan")


def _seismic_index(stored: SparseCodes, n_postings: int, summary_energy: float, heap_factor: float):
    import seismic

    order = torch.sort(stored.indices, dim=1)
    indices, values = order.values, stored.values.gather(1, order.indices)
    n, k = indices.shape
    dataset = seismic.SeismicDataset()
    dataset.add_documents_by_id(
        [str(i) for i in range(n)],
        indices.numpy().ravel().astype(np.int64),
        values.numpy().ravel().astype(np.float32),
        np.arange(0, n * k + 1, k, dtype=np.int64),
    )
    with _captured_stdout():
        index = seismic.SeismicIndex.build_from_dataset(
            dataset, n_postings=n_postings, summary_energy=summary_energy, num_threads=1
        )
    return index, heap_factor


def _seismic_search(built, queries: SparseCodes) -> Callable[[int], object]:
    """Seismic's single-query ``search``, once per query also at batch 64: with one thread its
    ``batch_search`` measured 1.2-1.5x slower here (string ids and per-call set-up)."""
    import seismic

    index, heap_factor = built
    string = seismic.get_seismic_string()
    components = [np.array([str(int(j)) for j in row], dtype=string) for row in queries.indices]
    values = [row.numpy().astype(np.float32) for row in queries.values]
    k = queries.indices.shape[1]

    def one(row: int):
        return index.search(
            str(row), components[row], values[row], TOP_K, query_cut=k, heap_factor=heap_factor
        )

    def search(row: int):
        return one(row) if row >= 0 else [one(r) for r in range(len(queries))]

    return search


def _recall_at_k(found: list[list[int]], stored_csr, queries: SparseCodes, exact) -> float:
    """Tie-aware recall@k: the share of the top ``k`` slots filled by documents whose exact score
    reaches the exact ``k``-th score (any of several tied documents counts)."""
    dense_q = queries.to_dense().double().numpy()
    hits = 0
    for row, ids in enumerate(found):
        ids = np.asarray(ids[:TOP_K], dtype=np.int64)
        true = stored_csr[ids] @ dense_q[row] if len(ids) else np.zeros(0)
        hits += int((true >= float(exact.scores[row, -1]) - 1e-6).sum())
    return hits / (len(found) * TOP_K)


def _seismic_ids(results, n_queries: int) -> list[list[int]]:
    """Document ids per query, in query order (``batch_search`` does not keep it)."""
    found: list[list[int]] = [[] for _ in range(n_queries)]
    for per_query in results:
        for query_id, _, doc in per_query:
            found[int(query_id)].append(int(doc))
    return found


def run(
    quick: bool = True,
    device: str | torch.device | None = None,
    *,
    ks: tuple[int, ...] = KS,
    usages: tuple[str, ...] = USAGES,
) -> list[Comparison]:
    """``SparseIndex`` (k = 2, 4, 8; skewed and even usage; batch 1 and 64), exhaustive and
    pruned, against the anchors, as ratios anchor time / index time. On a GPU only the dense
    anchors run, against the ``scan`` path (kernelkit's Triton ``SparseCodes.dot``). ``ks`` and
    ``usages`` restrict the grid."""
    ks, usages = tuple(ks), tuple(usages)
    if not ks or any(k not in KS for k in ks):
        raise ValueError(f"ks must be a non-empty subset of {KS}, got {ks}")
    if not usages or any(u not in USAGES for u in usages):
        raise ValueError(f"usages must be a non-empty subset of {USAGES}, got {usages}")
    dev = pick_device(device)
    n = 200_000 if quick else 1_000_000
    repeats = 5
    generator = torch.Generator().manual_seed(0)
    on_cpu = dev.type == "cpu"
    anchors_missing = [
        name
        for name, module in (
            ("scipy", "scipy"),
            ("sparse-dot-topn", "sparse_dot_topn"),
            ("pyseismic-lsr", "seismic"),
        )
        if on_cpu and importlib.util.find_spec(module) is None
    ]
    results = []
    with torch_threads(1) if on_cpu else contextlib.nullcontext():
        trained, values, live = _trained_usage(generator)
        dense = {
            d: torch.nn.functional.normalize(
                torch.randn(min(n, DENSE_CHUNK if d == 4096 else n), d, generator=generator), -1
            ).to(dev)
            for d in (384, 4096)
        }
        dense[32] = dense[384][:, :32].contiguous()
        dense_queries = {
            d: torch.nn.functional.normalize(
                torch.randn(QUERIES, d, generator=generator), dim=-1
            ).to(dev)
            for d in (384, 4096, 32)
        }
        for usage_name in usages:
            for k in ks:
                usage = trained[k] if usage_name == "skewed" else torch.ones(HIDDEN)
                results += _run_config(
                    usage_name, usage, k, values, live, n, dense, dense_queries, generator,
                    dev, repeats, anchors_missing,
                )  # fmt: skip
    return results


def _run_config(
    usage_name, usage, k, values, live, n, dense, dense_queries, generator, dev, repeats, missing
) -> list[Comparison]:
    codes = sample_codes(usage, values, n, k, generator)
    queries = sample_codes(usage, values, QUERIES, k, generator)
    index = SparseIndex(HIDDEN, value_dtype=torch.float16)
    index.add(codes)
    lengths = index.posting_lengths()
    touched = float(lengths[queries.indices].sum(dim=1).double().mean())
    exact = index.search(queries, TOP_K)
    on_cpu = dev.type == "cpu"
    pruned = None
    if on_cpu and numba_available():
        pruned = SparseIndex(HIDDEN, value_dtype=torch.float16, pruning=True)
        pruned.add(codes)
        found = pruned.search(queries, TOP_K)
        if not (torch.equal(found.ids, exact.ids) and torch.equal(found.scores, exact.scores)):
            raise RuntimeError("the pruned index's results differ from the exhaustive index's")
        walked = float(pruned.postings_walked(queries, TOP_K).double().mean())
    method = "inverted" if on_cpu else "scan"
    kernel = "numba" if numba_available() else "torch"
    queries_dev = queries if on_cpu else queries.to(dev)
    meta = {
        "database": n,
        "k": k,
        "usage": usage_name,
        "hidden": HIDDEN,
        "top_k": TOP_K,
        "live_latents_of_trained_head": live[k],
        "touched_postings_per_query": touched,
        "expected_postings_per_query_even": n * k * k / HIDDEN,
        "sparse_index": f"{method}, {kernel if on_cpu else 'triton/torch scan'}, float16 values",
        "bytes_per_vector_b": index.bytes_per_vector(),
    }
    if pruned is not None:
        meta["pruned_bytes_per_vector"] = pruned.bytes_per_vector()
        meta["pruned_postings_walked_per_query"] = walked
    if missing:
        meta["anchors_not_installed"] = missing

    def sparse_one(row: int, searched: SparseIndex = index):
        q = queries_dev if row < 0 else queries_dev[row : row + 1]
        return searched.search(q, TOP_K, method=method)

    def pruned_one(row: int):
        return sparse_one(row, pruned)

    anchors: list[tuple[str, Callable[[int], object], float, dict]] = []
    for d, label in ((384, "dense fp32 384-d"), (4096, "dense fp32 4096-d"), (32, "MRL-32 fp32")):
        if d == 4096 and k != 2:
            continue  # the paper's shape, timed where its headline ratio is (k = 2)
        search = {
            b: _dense_search(dense_queries[d][:b], dense[d], n) for b in (1, QUERIES)
        }  # fmt: skip
        anchors.append((label, lambda row, s=search: s[1 if row >= 0 else QUERIES](), 4.0 * d, {}))
    if on_cpu and "scipy" not in missing:
        stored = index.codes()
        stored_csr = _csr_of(stored)
        inverted = stored_csr.T.tocsr()
        csr_bytes = (inverted.data.nbytes + inverted.indices.nbytes + inverted.indptr.nbytes) / n
        anchors.append(
            (
                "scipy.sparse CSR SpMM + argpartition",
                _scipy_search(inverted, queries),
                csr_bytes,
                {},
            )
        )
        if "sparse-dot-topn" not in missing:
            anchors.append(
                ("sparse-dot-topn (1 thread)", _sdtn_search(inverted, queries), csr_bytes, {})
            )
        if "pyseismic-lsr" not in missing:
            mean_list = max(1, round(n * k / HIDDEN))
            for label, multiple, energy, heap_factor in SEISMIC_SETTINGS:
                n_postings = n if multiple is None else max(1, round(multiple * mean_list))
                built = _seismic_index(stored, n_postings, energy, heap_factor)
                search = _seismic_search(built, queries)
                recall = _recall_at_k(
                    _seismic_ids(search(-1), len(queries)), stored_csr, queries, exact
                )
                anchors.append(
                    (
                        f"Seismic {label} (n_postings={n_postings}, summary_energy={energy}, "
                        f"heap_factor={heap_factor})",
                        search,
                        _seismic_bytes(built[0]) / n,
                        {"seismic_recall_at_10": recall},
                    )
                )
    exhaustive_label = f"SparseIndex k={k} ({method})"
    pruned_label = f"SparseIndex pruned k={k} (threshold algorithm)"
    if pruned is not None:
        anchors.append((exhaustive_label, sparse_one, index.bytes_per_vector(), {}))
    out = []
    for label, anchor_one, anchor_bytes, extra in anchors:
        for batch in BATCHES:
            timed = {label: _online(anchor_one, batch)}
            if label != exhaustive_label:
                timed[exhaustive_label] = _online(sparse_one, batch)
            if pruned is not None:
                timed[pruned_label] = _online(pruned_one, batch)
            # Seconds per call at 4096-d: fewer repeats, its own spread is small.
            timings = time_interleaved(
                timed, warmup=1, repeats=3 if "4096" in label else repeats, device=dev
            )
            queries_timed = ONLINE if batch == 1 else QUERIES
            postings = touched * queries_timed
            name = f"top-{TOP_K}, {n} codes, k={k}, {usage_name} usage, batch {batch}: {label}"
            for b_label in timed:
                if b_label == label:
                    continue
                c = Comparison(
                    name if b_label == exhaustive_label else f"{name} (vs pruned)",
                    timings[label],
                    timings[b_label],
                    str(dev),
                    {**meta, **extra, "batch": batch},
                )
                c.meta["bytes_per_vector_a"] = None if math.isnan(anchor_bytes) else anchor_bytes
                c.meta["ns_per_touched_posting_a"] = c.a.median_s * 1e9 / postings
                c.meta["ns_per_touched_posting_b"] = c.b.median_s * 1e9 / postings
                if b_label == pruned_label:
                    c.meta["bytes_per_vector_b"] = meta["pruned_bytes_per_vector"]
                    c.meta["ns_per_walked_posting_b"] = (
                        c.b.median_s * 1e9 / (walked * queries_timed)
                    )
                out.append(c)
    return out
