"""Reproduction reports: the paper's claims checked against what we measure.

A :class:`Claim` pairs a statement from a paper with a measured value and the threshold it must
meet; whether it held is computed from those, never set by hand, so a claim cannot be "tuned"
after the fact without the threshold visibly changing in code. A :class:`Report` gathers claims,
a metrics table and figures, and writes Markdown and JSON.

Every package exposes ``<pkg>.repro.run(out_dir, quick=True) -> Report``; this module's own
:func:`run` checks kernelkit's fast paths against their references.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kernelkit.io import atomic_write_text

__all__ = ["COMPARISONS", "Claim", "Report", "new_figure", "run"]

COMPARISONS = {
    "<=": lambda m, t: m <= t,
    "<": lambda m, t: m < t,
    ">=": lambda m, t: m >= t,
    ">": lambda m, t: m > t,
}


@dataclass(frozen=True)
class Claim:
    """One checkable statement: ``measured <comparison> threshold``.

    ``statement`` quotes or paraphrases the paper; ``details`` says how it was measured here
    (scale, seeds, spread). A NaN measurement never holds.
    """

    statement: str
    measured: float
    threshold: float
    comparison: str = ">="
    unit: str = ""
    details: str = ""

    def __post_init__(self) -> None:
        if self.comparison not in COMPARISONS:
            raise ValueError(
                f"comparison must be one of {sorted(COMPARISONS)}, got {self.comparison!r}"
            )
        for name in ("measured", "threshold"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"{name} must be a number, got {type(value).__name__} ({value!r})")

    @property
    def held(self) -> bool:
        if math.isnan(self.measured):
            return False
        return bool(COMPARISONS[self.comparison](self.measured, self.threshold))

    def to_dict(self) -> dict[str, Any]:
        return {
            "statement": self.statement,
            "measured": self.measured,
            "threshold": self.threshold,
            "comparison": self.comparison,
            "unit": self.unit,
            "details": self.details,
            "held": self.held,
        }


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|")


def new_figure(*, width: float = 5.0, height: float = 3.5):
    """A matplotlib ``(figure, axes)`` pair on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height))


@dataclass
class Report:
    """Claims, a metrics table and figures for one package's reproduction run."""

    package: str
    out_dir: Path
    quick: bool = True
    claims: list[Claim] = field(default_factory=list)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.out_dir = Path(self.out_dir)

    def add_claim(
        self,
        statement: str,
        measured: float,
        threshold: float,
        comparison: str = ">=",
        **kwargs: Any,
    ) -> Claim:
        claim = Claim(statement, float(measured), float(threshold), comparison, **kwargs)
        self.claims.append(claim)
        return claim

    def add_metrics(self, **row: Any) -> None:
        """Append one row to the metrics table (columns are the union of all rows' keys)."""
        self.metrics.append(row)

    def save_figure(self, figure: Any, name: str) -> Path:
        """Save a matplotlib figure as ``out_dir/<name>.png``, close it and record its path."""
        import matplotlib.pyplot as plt

        path = self.out_dir / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.tight_layout()
        figure.savefig(path, dpi=110)
        plt.close(figure)
        self.figures.append(path)
        return path

    @property
    def all_held(self) -> bool:
        return all(c.held for c in self.claims)

    def summary(self) -> str:
        held = sum(c.held for c in self.claims)
        return f"{self.package}: {held}/{len(self.claims)} claims held, {len(self.metrics)} metric rows, {len(self.figures)} figures"

    def to_markdown(
        self, *, relative_to: str | os.PathLike | None = None, heading_level: int = 2
    ) -> str:
        """Markdown: a claims table, the metrics table, notes, and figures.

        Figure links are relative to ``relative_to`` (default: ``out_dir``), so the same report
        can be embedded in a summary written elsewhere.
        """
        base = Path(relative_to) if relative_to is not None else self.out_dir
        h = "#" * heading_level
        lines = [f"{h} {self.package} ({'quick' if self.quick else 'full'} mode)", ""]
        if self.claims:
            lines += [
                "| claim | measured | threshold | held | details |",
                "|---|---:|---:|:---:|---|",
            ]
            for c in self.claims:
                lines.append(
                    f"| {_fmt(c.statement)} | {_fmt(c.measured)}{c.unit} | {c.comparison} {_fmt(c.threshold)}{c.unit} "
                    f"| {'yes' if c.held else 'NO'} | {_fmt(c.details)} |"
                )
            lines.append("")
        if self.metrics:
            columns = list(dict.fromkeys(key for row in self.metrics for key in row))
            lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
            for row in self.metrics:
                lines.append("| " + " | ".join(_fmt(row.get(col, "")) for col in columns) + " |")
            lines.append("")
        for note in self.notes:
            lines += [note, ""]
        for path in self.figures:
            link = os.path.relpath(path, base)
            lines += [f"![{path.stem}]({link})", ""]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "package": self.package,
            "quick": self.quick,
            "claims": [c.to_dict() for c in self.claims],
            "metrics": self.metrics,
            "figures": [str(p) for p in self.figures],
            "notes": self.notes,
        }

    def write(self) -> Path:
        """Write ``report.md`` and ``report.json`` into ``out_dir``; return the Markdown path."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(
            self.out_dir / "report.json", json.dumps(self.to_dict(), indent=2, default=str)
        )
        md = self.out_dir / "report.md"
        atomic_write_text(md, self.to_markdown())
        return md


def run(out_dir: str | os.PathLike, quick: bool = True) -> Report:
    """kernelkit's reproduction: every fast path agrees with its readable reference.

    Random inputs at several shapes (with ties for top-k); the largest deviation of each fast
    path from its reference is the measured value, the dtype tolerance the threshold.
    """
    import torch

    from kernelkit.backend import resolve_impl
    from kernelkit.scan import linear_scan
    from kernelkit.topk import topk_codes, topk_mask
    from kernelkit.utils import seed_everything

    report = Report("kernelkit", Path(out_dir), quick=quick)
    gen = seed_everything(0)
    fast = resolve_impl("auto", torch.device("cpu"))
    trials = 5 if quick else 50

    scan_err, dot_err, tie_mismatch = 0.0, 0.0, 0
    for trial in range(trials):
        length = 16 + 97 * trial
        a = torch.rand(3, length, 8, generator=gen, dtype=torch.float64) * 1.8 - 0.9
        b = torch.randn(3, length, 8, generator=gen, dtype=torch.float64)
        h0 = torch.randn(3, 8, generator=gen, dtype=torch.float64)
        scan_err = max(
            scan_err,
            (linear_scan(a, b, h0, impl=fast) - linear_scan(a, b, h0, impl="reference"))
            .abs()
            .max()
            .item(),
        )
        # Few distinct values make ties common, which is where tie-breaking shows.
        x = torch.randint(0, 5, (64, 48), generator=gen).to(torch.float64)
        k = 1 + trial % 8
        codes, queries = topk_codes(x, k), topk_codes(x[:8], k)
        dot_err = max(
            dot_err,
            (queries.dot(codes, impl=fast) - queries.dot(codes, impl="reference"))
            .abs()
            .max()
            .item(),
        )
        expected_mask = torch.zeros_like(x, dtype=torch.bool)
        for row, values in enumerate(x.tolist()):
            # Python's sort is stable, so among equal values the lower index comes first.
            ranked = sorted(range(len(values)), key=lambda j, v=values: -v[j])[:k]
            expected_mask[row, ranked] = True
        tie_mismatch += int((topk_mask(x, k) != expected_mask).sum())

    report.add_claim(
        "linear_scan: the parallel path equals the sequential recurrence (float64)",
        scan_err,
        1e-10,
        "<=",
        details=f"{trials} random [3, T, 8] inputs, T up to {16 + 97 * (trials - 1)}, |a| < 0.9, impl={fast}",
    )
    report.add_claim(
        "SparseCodes.dot equals dense scoring of the decoded codes (float64)",
        dot_err,
        1e-12,
        "<=",
        details=f"{trials} trials, 8 queries x 64 codes, D=48, k in 1..8, impl={fast}",
    )
    report.add_claim(
        "topk_mask breaks ties by lowest index (mismatched entries)",
        tie_mismatch,
        0,
        "<=",
        details="integer-valued inputs with 5 distinct values, against a stable sort",
    )
    report.add_metrics(check="linear_scan max |fast - reference|", value=scan_err)
    report.add_metrics(check="SparseCodes.dot max |fast - reference|", value=dot_err)
    report.add_metrics(check="topk tie-breaking mismatches", value=tie_mismatch)

    fig, ax = new_figure()
    lengths = [2**p for p in range(4, 12 if quick else 15)]
    errors = []
    for length in lengths:
        a = torch.rand(2, length, 4, generator=gen, dtype=torch.float64) * 1.8 - 0.9
        b = torch.randn(2, length, 4, generator=gen, dtype=torch.float64)
        errors.append(
            max(
                (linear_scan(a, b, impl=fast) - linear_scan(a, b, impl="reference"))
                .abs()
                .max()
                .item(),
                1e-18,
            )
        )
    ax.loglog(lengths, errors, marker="o")
    ax.set_xlabel("sequence length T")
    ax.set_ylabel("max |parallel - sequential| (float64)")
    ax.set_title("linear_scan: parallel vs sequential")
    report.save_figure(fig, "linear_scan_error")
    report.write()
    return report
