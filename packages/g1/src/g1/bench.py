"""Benchmarks: verification with the cached optimum against recomputing it on every check
(G1's way), per task, as a ratio; plus generation and verification throughput."""

from __future__ import annotations

import functools
import statistics
import time

from g1.instance import generate
from g1.policies import oracle_completion
from g1.tasks import TASKS
from g1.verify import verify
from kernelkit.bench import Comparison, compare

__all__ = ["QUICK_TASKS", "run"]

QUICK_TASKS = (
    "degree",
    "bfs",
    "shortest_path",
    "betweenness_centrality",
    "min_vertex_cover",
    "dominating_set",
    "traveling_salesman_problem",
    "isomorphic_mapping",
    "max_weight_matching",
    "wiener_index",
)


def _latencies(function, calls: int) -> list[float]:
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return times


def run(quick: bool = True, device: str | None = None) -> list[Comparison]:
    """One :class:`Comparison` per task: A = recompute the optimum per check, B = cached.

    ``meta`` adds per-task median and p99 verification latency, and instances generated per
    second. ``device`` is accepted for the common interface; everything here runs on the CPU.
    """
    tasks = QUICK_TASKS if quick else tuple(TASKS)
    results = []
    for task in tasks:
        instances = [generate(task, seed, split="test") for seed in range(3 if quick else 10)]
        records = [instance.to_record() for instance in instances]
        completions = [oracle_completion(instance) for instance in instances]

        def cached(records=records, completions=completions) -> None:
            for record, completion in zip(records, completions, strict=True):
                verify(record, completion)

        def recomputed(records=records, completions=completions) -> None:
            for record, completion in zip(records, completions, strict=True):
                verify(record, completion, recompute=True)

        latencies = sorted(
            _latencies(
                functools.partial(verify, records[0], completions[0]), 200 if quick else 1000
            )
        )
        start = time.perf_counter()
        generated = 0
        while time.perf_counter() - start < (0.3 if quick else 2.0):
            generate(task, 10_000 + generated, split="test")
            generated += 1
        meta = {
            "verify_median_ms": statistics.median(latencies) * 1e3,
            "verify_p99_ms": latencies[int(0.99 * (len(latencies) - 1))] * 1e3,
            "instances_per_s": generated / (time.perf_counter() - start),
            "n_nodes": [instance.graph.number_of_nodes() for instance in instances],
        }
        results.append(
            compare(
                recomputed,
                cached,
                name=f"verify {task}",
                label_a="recompute optimum (G1)",
                label_b="cached optimum",
                repeats=5 if quick else 20,
                device="cpu",
                meta=meta,
            )
        )
    return results
