"""Run every package's benchmarks; write reports/bench.json and reports/bench.md.

    uv run tools/bench.py [--full] [--device cuda] [--out reports] [--only kernelkit ...]

Each package that has ``<import_name>.bench.run(quick, device)`` returns a list of
``kernelkit.bench.Comparison``; the results are ratios of two callables timed side by side in
this one process, never absolute times to compare across machines.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

from _workspace import ROOT, members

from kernelkit.bench import comparisons_to_markdown
from kernelkit.io import atomic_write_text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="full sizes instead of quick ones")
    parser.add_argument(
        "--device", default=None, help="torch device (default: cuda if present, else cpu)"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "reports", help="output directory")
    parser.add_argument("--only", nargs="+", default=None, help="distribution names to run")
    args = parser.parse_args(argv)

    results, tables = {}, []
    for m in members():
        if args.only is not None and m.dist_name not in args.only:
            continue
        try:
            module = importlib.import_module(f"{m.import_name}.bench")
        except ModuleNotFoundError as err:
            if err.name not in (m.import_name, f"{m.import_name}.bench"):
                raise
            print(f"{m.dist_name}: no bench module, skipped")
            continue
        comparisons = module.run(quick=not args.full, device=args.device)
        results[m.dist_name] = [c.to_dict() for c in comparisons]
        table = f"## {m.dist_name}\n\n{comparisons_to_markdown(comparisons)}"
        tables.append(table)
        print(table)

    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "bench.json", json.dumps(results, indent=2))
    atomic_write_text(
        args.out / "bench.md",
        "# Benchmarks\n\nRatios are median A / median B, timed interleaved in one process.\n\n"
        + "\n".join(tables),
    )
    print(f"wrote {args.out / 'bench.json'} and {args.out / 'bench.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
