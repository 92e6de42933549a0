"""Side-by-side timing of two callables in one process.

The machines we run on are shared and noisy, so an absolute time means little; what a benchmark
reports is the ratio of two medians measured interleaved (A, B, B, A, A, B, ...) after a warm-up,
which cancels most drift. CUDA work is synchronised before each clock read. Peak memory is read
from the CUDA allocator; on the CPU torch exposes no allocator peak, so it is ``None`` there
unless the caller supplies a model-based figure in ``meta``.

``kernelkit.bench.run(quick=True)`` runs kernelkit's own benchmarks (see :func:`run`).
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = [
    "Comparison",
    "Timing",
    "compare",
    "comparisons_to_markdown",
    "run",
    "time_callable",
    "time_interleaved",
]


@dataclass(frozen=True)
class Timing:
    """Repeated wall-clock times of one callable, in seconds."""

    label: str
    times_s: tuple[float, ...]
    peak_memory_bytes: int | None = None

    @property
    def median_s(self) -> float:
        return statistics.median(self.times_s)

    @property
    def min_s(self) -> float:
        return min(self.times_s)

    @property
    def max_s(self) -> float:
        return max(self.times_s)

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "median_s": self.median_s,
            "min_s": self.min_s,
            "max_s": self.max_s,
            "repeats": len(self.times_s),
            "peak_memory_bytes": self.peak_memory_bytes,
        }


@dataclass(frozen=True)
class Comparison:
    """Two timings measured side by side; ``ratio`` is median(A) / median(B)."""

    name: str
    a: Timing
    b: Timing
    device: str
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.a.median_s / self.b.median_s if self.b.median_s > 0 else float("inf")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "device": self.device,
            "a": self.a.to_dict(),
            "b": self.b.to_dict(),
            "ratio_a_over_b": self.ratio,
            "meta": self.meta,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def _device_of(device: str | torch.device | None) -> torch.device:
    return torch.device(device) if device is not None else torch.device("cpu")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], Any], device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def _peak_memory(fn: Callable[[], Any], device: torch.device) -> int | None:
    if device.type != "cuda":
        return None
    _sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    fn()
    _sync(device)
    return torch.cuda.max_memory_allocated(device) - base


def _check_counts(warmup: int, repeats: int) -> None:
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be an int >= 0, got {warmup!r}")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be an int >= 1, got {repeats!r}")


def time_callable(
    fn: Callable[[], Any],
    *,
    label: str = "fn",
    warmup: int = 2,
    repeats: int = 10,
    device: str | torch.device | None = None,
) -> Timing:
    """Time ``fn()`` alone: ``warmup`` untimed calls, then ``repeats`` timed ones."""
    _check_counts(warmup, repeats)
    dev = _device_of(device)
    for _ in range(warmup):
        fn()
    times = tuple(_timed(fn, dev) for _ in range(repeats))
    return Timing(label, times, _peak_memory(fn, dev))


def compare(
    fn_a: Callable[[], Any],
    fn_b: Callable[[], Any],
    *,
    name: str,
    label_a: str = "a",
    label_b: str = "b",
    warmup: int = 2,
    repeats: int = 10,
    device: str | torch.device | None = None,
    meta: dict[str, Any] | None = None,
    threads: int | None = None,
) -> Comparison:
    """Time ``fn_a`` and ``fn_b`` interleaved in one process and return their :class:`Comparison`.

    The order alternates (AB, BA, AB, ...) so that neither callable always runs on a warmer
    cache. ``device`` says which device to synchronise and read peak memory from. ``threads``
    pins torch's CPU thread count for the measurement (recorded in ``meta``); on a loaded
    machine multi-threaded small ops stall unpredictably, which makes ratios meaningless.
    """
    if not callable(fn_a) or not callable(fn_b):
        raise TypeError("fn_a and fn_b must be callables taking no arguments")
    _check_counts(warmup, repeats)
    if threads is None:
        return _compare(fn_a, fn_b, name, label_a, label_b, warmup, repeats, device, meta)
    from kernelkit.utils import torch_threads

    with torch_threads(threads):
        result = _compare(fn_a, fn_b, name, label_a, label_b, warmup, repeats, device, meta)
    result.meta["threads"] = threads
    return result


def _compare(fn_a, fn_b, name, label_a, label_b, warmup, repeats, device, meta) -> Comparison:
    dev = _device_of(device)
    timing_a, timing_b = _interleaved([(label_a, fn_a), (label_b, fn_b)], warmup, repeats, dev)
    return Comparison(name=name, a=timing_a, b=timing_b, device=str(dev), meta=dict(meta or {}))


def time_interleaved(
    fns: Mapping[str, Callable[[], Any]],
    *,
    warmup: int = 2,
    repeats: int = 10,
    device: str | torch.device | None = None,
) -> dict[str, Timing]:
    """Time several callables interleaved in one process: :func:`compare` for more than two.

    Each round runs every callable once, the order rotating from round to round (ABC, BCA, CAB,
    ...) so that none always runs on a warmer or colder cache; with two callables that is
    :func:`compare`'s AB, BA order. Returns one :class:`Timing` per label, in ``fns``' order.
    """
    if not isinstance(fns, Mapping) or not fns:
        raise ValueError(f"fns must be a non-empty mapping of label to callable, got {fns!r}")
    for label, fn in fns.items():
        if not isinstance(label, str):
            raise TypeError(f"fns' labels must be str, got {label!r}")
        if not callable(fn):
            raise TypeError(f"fns[{label!r}] must be a callable taking no arguments, got {fn!r}")
    _check_counts(warmup, repeats)
    timings = _interleaved(list(fns.items()), warmup, repeats, _device_of(device))
    return {timing.label: timing for timing in timings}


def _interleaved(
    labelled: list[tuple[str, Callable[[], Any]]], warmup: int, repeats: int, dev: torch.device
) -> list[Timing]:
    for _ in range(warmup):
        for _, fn in labelled:
            fn()
    times: list[list[float]] = [[] for _ in labelled]
    for i in range(repeats):
        shift = i % len(labelled)
        for j in [*range(shift, len(labelled)), *range(shift)]:
            times[j].append(_timed(labelled[j][1], dev))
    return [
        Timing(label, tuple(t), _peak_memory(fn, dev))
        for (label, fn), t in zip(labelled, times, strict=True)
    ]


def comparisons_to_markdown(comparisons: Sequence[Comparison]) -> str:
    """A Markdown table of comparisons: name, A, B, ratio A/B, device."""
    lines = [
        "| benchmark | A | B | median A / median B | device |",
        "|---|---|---|---:|---|",
    ]
    for c in comparisons:
        lines.append(f"| {c.name} | {c.a.label} | {c.b.label} | {c.ratio:.2f} | {c.device} |")
    return "\n".join(lines) + "\n"


def run(quick: bool = True, device: str | torch.device | None = None) -> list[Comparison]:
    """kernelkit's own benchmarks, as ratios (on the CPU with one torch thread; see :func:`compare`).

    - ``linear_scan``: the sequential reference loop versus the log-depth parallel path;
    - ``SparseCodes.dot``: dense matmul scoring versus sparse-sparse scoring of k-sparse codes at
      k in {2, 8, 32} over 100k codes (10k in quick mode).
    """
    from kernelkit.backend import resolve_impl
    from kernelkit.scan import linear_scan
    from kernelkit.topk import topk_codes

    dev = (
        _device_of(device)
        if device is not None
        else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    )
    fast = resolve_impl("auto", dev)
    repeats = 5 if quick else 15
    threads = 1 if dev.type == "cpu" else None
    gen = torch.Generator().manual_seed(0)
    results = []

    batch, length, width = (4, 1024, 64) if quick else (8, 4096, 64)
    a = (torch.rand(batch, length, width, generator=gen) * 0.5 + 0.5).to(dev)
    b = torch.randn(batch, length, width, generator=gen).to(dev)
    results.append(
        compare(
            lambda: linear_scan(a, b, impl="reference"),
            lambda: linear_scan(a, b, impl=fast),
            name=f"linear_scan [{batch}, {length}, {width}] fp32",
            label_a="sequential reference",
            label_b=f"parallel ({fast})",
            repeats=repeats,
            device=dev,
            threads=threads,
            meta={"shape": [batch, length, width]},
        )
    )

    n_codes, d, n_queries = (10_000 if quick else 100_000), 4096, 32
    dense_codes = torch.randn(n_codes, d, generator=gen).to(dev)
    dense_queries = torch.randn(n_queries, d, generator=gen).to(dev)
    for k in (2, 8, 32):
        codes, queries = topk_codes(dense_codes, k), topk_codes(dense_queries, k)
        codes_dense, queries_dense = codes.to_dense(), queries.to_dense()
        results.append(
            compare(
                lambda qd=queries_dense, cd=codes_dense: qd @ cd.T,
                lambda q=queries, c=codes: q.dot(c, impl=fast),
                name=f"sparse dot k={k}, {n_queries} queries x {n_codes} codes, D={d}",
                label_a="dense matmul",
                label_b=f"SparseCodes.dot ({fast})",
                repeats=repeats,
                device=dev,
                threads=threads,
                meta={
                    "k": k,
                    "codes": n_codes,
                    "dim": d,
                    "bytes_per_vector_dense": d * 4,
                    "bytes_per_vector_sparse": k * (8 + 4),
                },
            )
        )
    return results
