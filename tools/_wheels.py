"""Build a member's wheel and prove it installs and imports alone in a fresh virtual env.

Third-party versions are pinned to the workspace lock (``uv export``) so that the check tests
what the lock tested and reuses uv's cache instead of resolving, and downloading, anew.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from _releases import kernelkit_source
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


def build_project_wheel(source: Path, out_dir: Path) -> Path:
    """Build the wheel of a project folder outside the workspace (an exported release)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    before = set(out_dir.glob("*.whl"))
    _run(["uv", "build", "--wheel", "--out-dir", str(out_dir), str(source)], cwd=source)
    new = sorted(set(out_dir.glob("*.whl")) - before)
    if len(new) != 1:
        raise RuntimeError(f"uv build of {source} produced {len(new)} new wheels in {out_dir}")
    return new[0]


_FLOOR_WHEELS: dict[str, tuple[Path, str]] = {}
_FLOOR_LOCK = threading.Lock()


def kernelkit_wheel(version: str) -> tuple[Path, str]:
    """kernelkit ``version``'s wheel, built from its release (see ``_releases``), and its origin.

    Built once per process: every package of a test run shares the floor's wheel.
    """
    with _FLOOR_LOCK:
        return _kernelkit_wheel(version)


def _kernelkit_wheel(version: str) -> tuple[Path, str]:
    if version not in _FLOOR_WHEELS or not _FLOOR_WHEELS[version][0].is_file():
        work = Path(tempfile.mkdtemp(prefix=f"kernelkit-{version}-"))
        atexit.register(shutil.rmtree, work, ignore_errors=True)
        source, origin = kernelkit_source(version, work / "src")
        tree = member("kernelkit")
        if source == tree.path:
            wheel = build_wheel(tree, work / "dist")
        else:
            wheel = build_project_wheel(source, work / "dist")
        _FLOOR_WHEELS[version] = (wheel, origin)
    return _FLOOR_WHEELS[version]


def kernelkit_floor(m: Member) -> str:
    floor = m.kernelkit_floor()
    if floor is None:
        raise RuntimeError(f"{m.dist_name} declares no 'kernelkit>=X' dependency")
    return floor


def smoke_check(m: Member, python: Path, kernelkit_version: str | None = None) -> str:
    """Import the package in ``python``, compare its version (and kernelkit's), run its console
    script's --help."""
    code = (
        f"import {m.import_name} as p; v = p.__version__; "
        f"assert v == {m.version!r}, f'installed {{v}}, expected {m.version}'; print(v)"
    )
    if kernelkit_version is not None:
        code += (
            "; import kernelkit; "
            f"assert kernelkit.__version__ == {kernelkit_version!r}, kernelkit.__version__"
        )
    out = _run([str(python), "-c", code], env={**os.environ, "PYTHONPATH": ""}).stdout.strip()
    for script in m.metadata()["project"].get("scripts", {}):
        _run([str(python.parent / script), "--help"])
    return out


@dataclass(frozen=True)
class Checked:
    """What an install-alone check installed: the package's version, kernelkit's and its origin."""

    version: str
    kernelkit: str
    kernelkit_origin: str


def build_and_check(dist_name: str, work: Path, wheel_dir: Path | None = None) -> Checked:
    """Build ``dist_name``, install it alone into a fresh env and smoke-check it.

    A paper package is installed beside kernelkit at its declared floor (``kernelkit>=X``), built
    from release X's source: a package that uses newer kernelkit API fails here.
    The package's wheel goes to ``wheel_dir`` (default ``work/dist``).
    """
    m = member(dist_name)
    wheels = [build_wheel(m, wheel_dir or work / "dist")]
    kernelkit, origin = m.version, "this build"
    if m.dist_name != "kernelkit":
        kernelkit = kernelkit_floor(m)
        wheel, origin = kernelkit_wheel(kernelkit)
        wheels.append(wheel)
    constraints = lock_constraints(work / "constraints.txt")
    python = install_alone(wheels, work / "venv", constraints)
    return Checked(smoke_check(m, python, kernelkit), kernelkit, origin)


# Held at the locked version by the lowest-dependency check: each torch release is a multi-GB
# download (with its CUDA libraries), so torch's floor is checked separately (README, Release).
HELD_AT_THE_LOCK = ("torch", "triton")


def _requirement_name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;@]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def lowest_check(m: Member, work: Path | None = None) -> dict[str, str]:
    """Install ``m`` alone with its declared dependencies at their floors, run its tests.

    ``uv pip install --resolution lowest-direct`` takes the lowest version that a requirement on
    its command line allows, so the package's declared dependencies are passed there beside its
    wheel (and kernelkit's floor wheel). The test tools come second, constrained to what the
    first step installed. Returns the installed versions of the declared dependencies.
    """
    if work is None:
        with tempfile.TemporaryDirectory(prefix=f"lowest-{m.dist_name}-") as tmp:
            return lowest_check(m, Path(tmp))
    declared = m.metadata()["project"]["dependencies"]
    wheels = [build_wheel(m, work / "dist")]
    requirements = [r for r in declared if _requirement_name(r) != "kernelkit"]
    if m.dist_name != "kernelkit":
        wheels.append(kernelkit_wheel(kernelkit_floor(m))[0])
    locked = lock_constraints(work / "locked.txt").read_text(encoding="utf-8").splitlines()
    held = work / "held.txt"
    held.write_text(
        "\n".join(line for line in locked if _requirement_name(line) in HELD_AT_THE_LOCK) + "\n",
        encoding="utf-8",
    )
    _run(["uv", "venv", "--python", sys.executable, str(work / "venv")])
    python = work / "venv" / "bin" / "python"
    install = ["uv", "pip", "install", "--python", str(python)]
    _run(
        [
            *install,
            "--resolution",
            "lowest-direct",
            "--constraint",
            str(held),
            *map(str, wheels),
            *requirements,
        ]
    )
    frozen = _run(["uv", "pip", "freeze", "--python", str(python)]).stdout.splitlines()
    installed = {
        _requirement_name(line): line.split("==", 1)[-1] for line in frozen if "==" in line
    }
    # The test tools must not move what the first step chose: its versions first, then the lock.
    tools = work / "tools.txt"
    tools.write_text(
        "\n".join(
            [line for line in frozen if "==" in line]
            + [line for line in locked if _requirement_name(line) not in installed]
        )
        + "\n",
        encoding="utf-8",
    )
    testing = member("kernelkit").metadata()["project"]["optional-dependencies"]["testing"]
    _run([*install, "--constraint", str(tools), "pytest", *testing])
    tests = _run_tests(m, python)
    summary = tests.stdout.strip().splitlines()[-1] if tests.stdout.strip() else "(no output)"
    print(f"{m.dist_name}: {summary}", flush=True)
    return {
        name: installed[_requirement_name(r)]
        for r in declared
        if (name := _requirement_name(r)) in installed
    }


def _run_tests(m: Member, python: Path) -> subprocess.CompletedProcess:
    """The package's own tests, in ``python``, on what is installed there (not the tree's src)."""
    return _run(
        [
            str(python),
            "-m",
            "pytest",
            str(m.path / "tests"),
            "-q",
            "-p",
            "no:cacheprovider",
            "-o",
            "addopts=--import-mode=importlib",
            "-m",
            "not gpu",
        ],
        cwd=ROOT,
        env={
            **os.environ,
            "PYTHONPATH": "",
            "CI": "true",
            "VIRTUAL_ENV": str(python.parent.parent),
        },
    )
