"""Reproduction reports: the paper's claims checked against what we measure.

A :class:`Claim` pairs a statement with what was measured and the threshold it must meet. A
stochastic claim carries its per-seed ``samples``; its ``measured`` value is their mean and its
``interval`` a 95% Student-t interval over the seeds. The ``verdict`` is computed from those, never
set by hand:

- ``"held"`` when the whole interval lies on the claim's side of the threshold;
- ``"not held"`` when the whole interval lies on the other side;
- ``"inconclusive"`` otherwise: the seeds cannot tell the two apart.

A deterministic claim (one measurement, or an exact check) has a zero-width interval and is
either held or not held. A claim's ``source`` says whose statement it is: ``"paper"`` (with the
section or table it restates in ``reference``) or ``"package"`` (our own check: an equivalence
test, a premise control, a heuristic of ours).

A :class:`Report` gathers claims, a metrics table and figures, and writes Markdown and JSON plus
one figure of every claim's interval against its threshold.

Every package exposes ``<pkg>.repro.run(out_dir, quick=True) -> Report``; this module's own
:func:`run` checks kernelkit's fast paths against their references.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kernelkit.io import atomic_write_text

__all__ = [
    "COMPARISONS",
    "SOURCES",
    "VERDICTS",
    "Claim",
    "Report",
    "new_figure",
    "run",
    "t_quantile_975",
]

COMPARISONS = {
    "<=": lambda m, t: m <= t,
    "<": lambda m, t: m < t,
    ">=": lambda m, t: m >= t,
    ">": lambda m, t: m > t,
}
SOURCES = ("paper", "package")
VERDICTS = ("held", "not held", "inconclusive")

# Two-sided 95% Student-t quantiles t_{0.975, df} for df = 1..30 (standard tables, 4 digits).
_T_975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def t_quantile_975(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` degrees of freedom.

    Tabulated for ``df <= 30``; beyond that the Cornish-Fisher expansion around the normal
    quantile, accurate to better than 1e-3 there.
    """
    if isinstance(df, bool) or not isinstance(df, int) or df < 1:
        raise ValueError(f"df must be an int >= 1, got {df!r}")
    if df <= len(_T_975):
        return _T_975[df - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


@dataclass(frozen=True)
class Claim:
    """One checkable statement: ``measured <comparison> threshold``, with its uncertainty.

    ``statement`` quotes or paraphrases the paper (or states our own check); ``details`` says how
    it was measured here (scale, data, why the threshold is what it is; write the threshold's
    reason before the run). ``samples`` are the per-seed measurements, and ``measured`` must be
    their mean: build stochastic claims with :meth:`from_samples`. ``interval`` overrides the
    seed interval when a claim has its own (e.g. a bootstrap over test items); then
    ``interval_method`` must say how it was computed. A NaN anywhere never holds.
    """

    statement: str
    measured: float
    threshold: float
    comparison: str = ">="
    unit: str = ""
    details: str = ""
    samples: tuple[float, ...] = ()
    source: str = "paper"
    reference: str = ""
    explicit_interval: tuple[float, float] | None = None
    explicit_interval_method: str = ""

    def __post_init__(self) -> None:
        if self.comparison not in COMPARISONS:
            raise ValueError(
                f"comparison must be one of {sorted(COMPARISONS)}, got {self.comparison!r}"
            )
        for name in ("measured", "threshold"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"{name} must be a number, got {type(value).__name__} ({value!r})")
        if self.source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {self.source!r}")
        object.__setattr__(self, "samples", _checked_samples(self.samples))
        if self.samples:
            mean = _mean(self.samples)
            same = (math.isnan(mean) and math.isnan(self.measured)) or math.isclose(
                mean, self.measured, rel_tol=1e-9, abs_tol=1e-12
            )
            if not same:
                raise ValueError(
                    f"measured must be the mean of samples ({mean!r}), got {self.measured!r}"
                )
        if self.explicit_interval is not None:
            low, high = (float(v) for v in self.explicit_interval)
            if not low <= high:
                raise ValueError(
                    f"explicit_interval must be (low, high) with low <= high, got {self.explicit_interval!r}"
                )
            if not self.explicit_interval_method:
                raise ValueError("explicit_interval needs explicit_interval_method to say how")
            object.__setattr__(self, "explicit_interval", (low, high))

    @classmethod
    def from_samples(
        cls,
        statement: str,
        samples: Sequence[float],
        threshold: float,
        comparison: str = ">=",
        **kwargs: Any,
    ) -> Claim:
        """A claim measured once per seed: ``measured`` is the mean of ``samples``."""
        values = _checked_samples(samples)
        if not values:
            raise ValueError("samples must hold at least one measurement, got none")
        return cls(statement, _mean(values), threshold, comparison, samples=values, **kwargs)

    @property
    def seeds(self) -> int:
        """How many independent measurements the claim rests on (1 for a single measurement)."""
        return max(len(self.samples), 1)

    @property
    def interval(self) -> tuple[float, float]:
        """The 95% interval for the measured value (zero width for a single measurement)."""
        if self.explicit_interval is not None:
            return self.explicit_interval
        if len(self.samples) < 2:
            return (self.measured, self.measured)
        n = len(self.samples)
        mean = self.measured
        std = math.sqrt(sum((v - mean) ** 2 for v in self.samples) / (n - 1))
        half = t_quantile_975(n - 1) * std / math.sqrt(n)
        return (mean - half, mean + half)

    @property
    def interval_method(self) -> str:
        if self.explicit_interval is not None:
            return self.explicit_interval_method
        if len(self.samples) < 2:
            return "single measurement"
        return f"95% Student-t interval over {len(self.samples)} seeds"

    @property
    def verdict(self) -> str:
        low, high = self.interval
        if any(math.isnan(v) for v in (self.measured, low, high, *self.samples)):
            return "not held"
        check = COMPARISONS[self.comparison]
        # The interval is on the claim's side when its worst end still passes, and on the other
        # side when even its best end fails; the worst end of ">=" is the low end.
        worst, best = (low, high) if self.comparison in (">=", ">") else (high, low)
        if check(worst, self.threshold):
            return "held"
        if not check(best, self.threshold):
            return "not held"
        return "inconclusive"

    @property
    def held(self) -> bool:
        return self.verdict == "held"

    def to_dict(self) -> dict[str, Any]:
        return {
            "statement": self.statement,
            "source": self.source,
            "reference": self.reference,
            "measured": self.measured,
            "samples": list(self.samples),
            "seeds": self.seeds,
            "interval": list(self.interval),
            "interval_method": self.interval_method,
            "threshold": self.threshold,
            "comparison": self.comparison,
            "unit": self.unit,
            "details": self.details,
            "verdict": self.verdict,
            "held": self.held,
        }


def _checked_samples(samples: Sequence[float]) -> tuple[float, ...]:
    for i, value in enumerate(samples):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(
                f"samples[{i}] must be a number, got {type(value).__name__} ({value!r})"
            )
    return tuple(float(v) for v in samples)


def _mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values)


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
        measured: float | Sequence[float],
        threshold: float,
        comparison: str = ">=",
        **kwargs: Any,
    ) -> Claim:
        """Record a claim. ``measured`` is one number, or a sequence of per-seed measurements
        (then the claim's value is their mean and its interval is over the seeds)."""
        # A list, tuple, 1-d array or tensor of seeds; a 0-d array or tensor is one number.
        is_samples = hasattr(measured, "__len__") and getattr(measured, "ndim", 1) != 0
        if is_samples and not isinstance(measured, str):
            claim = Claim.from_samples(
                statement, [float(v) for v in measured], float(threshold), comparison, **kwargs
            )
        else:
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

    def counts(self) -> dict[str, dict[str, int]]:
        """Verdict counts, paper claims apart from package claims:
        ``{"paper": {"held": n, "not held": n, "inconclusive": n}, "package": {...}}``."""
        table = {source: dict.fromkeys(VERDICTS, 0) for source in SOURCES}
        for claim in self.claims:
            table[claim.source][claim.verdict] += 1
        return table

    def summary(self) -> str:
        parts = []
        for source, row in self.counts().items():
            total = sum(row.values())
            if total:
                parts.append(
                    f"{source} claims {row['held']} held / {row['not held']} not held / "
                    f"{row['inconclusive']} inconclusive (of {total})"
                )
        claims = "; ".join(parts) if parts else "no claims"
        return f"{self.package}: {claims}; {len(self.metrics)} metric rows, {len(self.figures)} figures"

    def claims_figure(self) -> Any:
        """One panel per claim: its seeds, mean and interval against the threshold line."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(len(self.claims), 1, figsize=(6.5, 0.9 + 0.75 * len(self.claims)))
        axes = [axes] if len(self.claims) == 1 else list(axes)
        colours = {"held": "tab:green", "not held": "tab:red", "inconclusive": "tab:orange"}
        for ax, claim in zip(axes, self.claims, strict=True):
            low, high = claim.interval
            colour = colours[claim.verdict]
            ax.axvline(claim.threshold, color="black", linestyle="--", linewidth=1)
            ax.plot([low, high], [0, 0], color=colour, linewidth=4, solid_capstyle="butt")
            ax.plot([claim.measured], [0], "o", color="black", markersize=4)
            if len(claim.samples) > 1:
                ax.plot(claim.samples, [0.25] * len(claim.samples), "|", color=colour)
            points = [claim.threshold, low, high, *claim.samples]
            finite = [v for v in points if math.isfinite(v)]
            if finite:
                span = max(finite) - min(finite) or max(abs(max(finite)), 1e-12)
                ax.set_xlim(min(finite) - 0.15 * span, max(finite) + 0.15 * span)
            ax.set_yticks([])
            ax.set_ylim(-0.5, 0.5)
            label = claim.statement if len(claim.statement) <= 70 else claim.statement[:67] + "..."
            ax.set_title(
                f"{label}  [{claim.verdict}, n={claim.seeds}]", fontsize=7, loc="left", pad=2
            )
            ax.tick_params(axis="x", labelsize=6)
        fig.suptitle(f"{self.package}: 95% intervals vs thresholds (dashed)", fontsize=8)
        return fig

    def to_markdown(
        self, *, relative_to: str | os.PathLike | None = None, heading_level: int = 2
    ) -> str:
        """Markdown: verdict counts, a claims table, the metrics table, notes, and figures.

        Figure links are relative to ``relative_to`` (default: ``out_dir``), so the same report
        can be embedded in a summary written elsewhere.
        """
        base = Path(relative_to) if relative_to is not None else self.out_dir
        h = "#" * heading_level
        lines = [f"{h} {self.package} ({'quick' if self.quick else 'full'} mode)", ""]
        if self.claims:
            for source, row in self.counts().items():
                if sum(row.values()):
                    lines.append(
                        f"- {source} claims: {row['held']} held, {row['not held']} not held, "
                        f"{row['inconclusive']} inconclusive"
                    )
            lines += [
                "",
                "Intervals: 95% Student-t over the seeds, unless a claim's details name another "
                "method; a claim measured once (seeds = 1) is decided by that measurement.",
                "",
                "| claim | source | measured (mean) | 95% interval | seeds | threshold | verdict | details |",
                "|---|---|---:|---|---:|---:|:---:|---|",
            ]
            for c in self.claims:
                source = c.source + (f" ({_fmt(c.reference)})" if c.reference else "")
                low, high = c.interval
                interval = (
                    "-"
                    if c.seeds == 1 and c.explicit_interval is None
                    else (f"[{_fmt(low)}, {_fmt(high)}]{c.unit}")
                )
                verdict = {"held": "held", "not held": "NOT HELD", "inconclusive": "inconclusive"}
                details = c.details
                if c.explicit_interval is not None:
                    details = f"{details} (interval: {c.interval_method})".strip()
                lines.append(
                    f"| {_fmt(c.statement)} | {source} | {_fmt(c.measured)}{c.unit} | {interval} "
                    f"| {c.seeds} | {c.comparison} {_fmt(c.threshold)}{c.unit} "
                    f"| {verdict[c.verdict]} | {_fmt(details)} |"
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
            "counts": self.counts(),
            "claims": [c.to_dict() for c in self.claims],
            "metrics": self.metrics,
            "figures": [str(p) for p in self.figures],
            "notes": self.notes,
        }

    def write(self) -> Path:
        """Write ``report.md``, ``report.json`` and the claims figure (``claims.png``, when there
        are claims) into ``out_dir``; return the Markdown path."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        claims_png = self.out_dir / "claims.png"
        if self.claims and claims_png not in self.figures:
            self.save_figure(self.claims_figure(), "claims")
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
        source="package",
    )
    report.add_claim(
        "SparseCodes.dot equals dense scoring of the decoded codes (float64)",
        dot_err,
        1e-12,
        "<=",
        details=f"{trials} trials, 8 queries x 64 codes, D=48, k in 1..8, impl={fast}",
        source="package",
    )
    report.add_claim(
        "topk_mask breaks ties by lowest index (mismatched entries)",
        tie_mismatch,
        0,
        "<=",
        details="integer-valued inputs with 5 distinct values, against a stable sort",
        source="package",
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
