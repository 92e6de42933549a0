"""Build a member's wheel and prove it installs and imports alone in a fresh virtual env.

Third-party versions are pinned to the workspace lock (``uv export``) so that the check tests
what the lock tested and reuses uv's cache instead of resolving, and downloading, anew.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from _workspace import ROOT, Member, member


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        raise RuntimeError(
            f"command failed ({result.returncode}): {' '.join(map(str, cmd))}\n{result.stdout}\n{result.stderr}"
        )
    return result


def build_wheel(m: Member, out_dir: Path) -> Path:
    """``uv build --package`` into ``out_dir``; return the wheel's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    before = set(out_dir.glob("*.whl"))
    _run(["uv", "build", "--package", m.dist_name, "--wheel", "--out-dir", str(out_dir)], cwd=ROOT)
    new = sorted(set(out_dir.glob("*.whl")) - before) or sorted(
        out_dir.glob(f"{m.file_stem}-*.whl")
    )
    if not new:
        raise RuntimeError(f"uv build produced no wheel for {m.dist_name} in {out_dir}")
    return new[-1]


def build_sdist(m: Member, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    _run(["uv", "build", "--package", m.dist_name, "--sdist", "--out-dir", str(out_dir)], cwd=ROOT)
    return sorted(out_dir.glob(f"{m.file_stem}.tar.gz"))[-1]


def lock_constraints(path: Path) -> Path:
    """Write the locked third-party versions as a pip constraints file."""
    result = _run(
        [
            "uv",
            "export",
            "--frozen",
            "--all-packages",
            "--all-extras",
            "--no-hashes",
            "--no-emit-workspace",
            "--no-header",
            "--no-annotate",
        ],
        cwd=ROOT,
    )
    path.write_text(result.stdout, encoding="utf-8")
    return path


def install_alone(wheels: list[Path], venv: Path, constraints: Path) -> Path:
    """Create ``venv`` and install just ``wheels`` (and their dependencies); return its python."""
    _run(["uv", "venv", "--python", sys.executable, str(venv)])
    python = venv / "bin" / "python"
    _run(
        [
            "uv",
            "pip",
            "install",
            "--python",
            str(python),
            "--constraint",
            str(constraints),
            *map(str, wheels),
        ]
    )
    return python


def smoke_check(m: Member, python: Path) -> str:
    """Import the package in ``python``, compare its version, run its console script's --help."""
    code = (
        f"import {m.import_name} as p; v = p.__version__; "
        f"assert v == {m.version!r}, f'installed {{v}}, expected {m.version}'; print(v)"
    )
    out = _run([str(python), "-c", code], env={**os.environ, "PYTHONPATH": ""}).stdout.strip()
    scripts = m.metadata()["project"].get("scripts", {})
    for script in scripts:
        _run([str(python.parent / script), "--help"])
    return out


def build_and_check(dist_name: str, work: Path, wheel_dir: Path | None = None) -> str:
    """Build ``dist_name`` (and kernelkit), install them alone into a fresh env, smoke-check.

    The package's wheel goes to ``wheel_dir`` (default ``work/dist``), kernelkit's to ``work/dist``.
    """
    m = member(dist_name)
    wheels = [build_wheel(m, wheel_dir or work / "dist")]
    if m.dist_name != "kernelkit":
        wheels.append(build_wheel(member("kernelkit"), work / "dist"))
    constraints = lock_constraints(work / "constraints.txt")
    python = install_alone(wheels, work / "venv", constraints)
    return smoke_check(m, python)
