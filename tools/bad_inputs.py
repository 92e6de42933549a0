"""Run every package's bad-input harness and write the table in the root README.

Each package registers its public functions in ``tests/test_bad_inputs.py`` (see
``kernelkit.testing_inputs``). This tool runs them all, prints one row per package and, with
``--write``, replaces the table between the README's ``bad-inputs`` markers. The package tests
check their own row against the README (the root ``conftest.py``), so a stale table fails
``uv run pytest``; this tool is how to refresh it.

    uv run tools/bad_inputs.py [--write]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

from _workspace import ROOT, members

from kernelkit.testing import Tally, assert_handles_bad_inputs

README = ROOT / "README.md"
START, END = "<!-- bad-inputs:start -->", "<!-- bad-inputs:end -->"
HEADER = (
    "| package | public functions | bad inputs tried | clear errors | correct results "
    "| unclear crashes or silent wrong results |\n|---|---:|---:|---:|---:|---:|"
)


def row(package: str, functions: int, tally: Tally) -> str:
    return (
        f"| {package} | {functions} | {tally.tried} | {tally.clear_errors} | "
        f"{tally.correct_results} | {len(tally.failures)} |"
    )


def counted_with() -> str:
    """The line under the table naming what the draws and the results depend on: the counts are
    exact for these library versions and this harness (another hypothesis draws other examples)."""
    import hashlib
    from importlib.metadata import version

    import kernelkit.testing_inputs as harness

    pins = ", ".join(f"{name} {version(name)}" for name in ("hypothesis", "numpy", "torch"))
    # The harness itself, by content: a package tested beside an older kernelkit (its declared
    # floor) runs other variants under the same version number.
    digest = hashlib.sha256(Path(harness.__file__).read_bytes()).hexdigest()[:12]
    return f"Counted with {pins} and the harness kernelkit/testing_inputs.py {digest}."


def _readme_table() -> str:
    return README.read_text(encoding="utf-8").split(START, 1)[1].split(END, 1)[0]


def readme_counted_with() -> str | None:
    """The README table's ``Counted with ...`` line."""
    lines = [line for line in _readme_table().splitlines() if line.startswith("Counted with ")]
    return lines[0] if lines else None


def readme_rows() -> dict[str, str]:
    """The README table's rows by package."""
    table = _readme_table()
    return {
        line.split("|")[1].strip(): line
        for line in table.splitlines()
        if line.startswith("| ") and not line.startswith("| package |")
    }


def run_package(path: Path) -> tuple[int, Tally]:
    test_file = path / "tests" / "test_bad_inputs.py"
    spec = importlib.util.spec_from_file_location(f"bad_inputs_{path.name}", test_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return len(module.FUNCTIONS), assert_handles_bad_inputs(module.FUNCTIONS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite the README's table")
    args = parser.parse_args(argv)
    rows, total, total_functions = [], Tally(), 0
    for member in members():
        functions, tally = run_package(member.path)
        rows.append(row(member.path.name, functions, tally))
        total.add(tally)
        total_functions += functions
        print(rows[-1], flush=True)
    rows.append(row("**all**", total_functions, total))
    print(rows[-1])
    if args.write:
        text = README.read_text(encoding="utf-8")
        before, rest = text.split(START, 1)
        after = rest.split(END, 1)[1]
        table = "\n".join([HEADER, *rows, "", counted_with()])
        README.write_text(f"{before}{START}\n{table}\n{END}{after}", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
