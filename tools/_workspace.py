"""What the tools know about the workspace: its members, their versions and import names."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def normalized(dist_name: str) -> str:
    """The name as wheel and sdist file names spell it (PEP 427/625): runs of ``-_.`` become ``_``."""
    return re.sub(r"[-_.]+", "_", dist_name).lower()


@dataclass(frozen=True)
class Member:
    """One workspace member: a publishable package under packages/ or shared/."""

    dist_name: str
    path: Path
    version: str

    @property
    def pyproject(self) -> Path:
        return self.path / "pyproject.toml"

    def metadata(self) -> dict:
        return tomllib.loads(self.pyproject.read_text(encoding="utf-8"))

    @property
    def import_name(self) -> str:
        """The one package the wheel ships (``src/<import_name>``); it may differ from the
        distribution name, which has to be free on the public index (``faro-fairness-rm``)."""
        packages = self.metadata()["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
        if len(packages) != 1:
            raise ValueError(f"{self.dist_name}: expected one wheel package, got {packages}")
        return Path(packages[0]).name

    @property
    def cli_name(self) -> str:
        """The console script, named after the import name (``faro``, ``mpnn-gen``)."""
        return self.import_name.replace("_", "-")

    @property
    def file_stem(self) -> str:
        """How the wheel and sdist file names start: ``faro_fairness_rm-0.1.0``."""
        return f"{normalized(self.dist_name)}-{self.version}"

    def kernelkit_floor(self) -> str | None:
        """The lowest kernelkit version the package declares (``kernelkit[plot]>=0.2.0``)."""
        for requirement in self.metadata()["project"].get("dependencies", []):
            match = re.fullmatch(r"kernelkit(\[[^\]]*\])?\s*>=\s*([0-9.]+)\s*(,.*)?", requirement)
            if match:
                return match.group(2)
        return None


def members(root: Path = ROOT) -> list[Member]:
    """Every member named by the root pyproject's workspace globs, kernelkit first.

    ``root`` is this checkout unless a tool works on another one (a release rehearsed in a copy).
    """
    workspace = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    found = []
    for pattern in workspace["tool"]["uv"]["workspace"]["members"]:
        for path in sorted(root.glob(pattern)):
            if (path / "pyproject.toml").is_file():
                project = tomllib.loads((path / "pyproject.toml").read_text(encoding="utf-8"))[
                    "project"
                ]
                found.append(Member(project["name"], path, project["version"]))
    return sorted(found, key=lambda m: (m.dist_name != "kernelkit", m.dist_name))


def member(dist_name: str, root: Path = ROOT) -> Member:
    """The member called ``dist_name``; ``SystemExit`` with the known names otherwise."""
    for m in members(root):
        if m.dist_name == dist_name:
            return m
    known = ", ".join(m.dist_name for m in members(root))
    raise SystemExit(f"unknown package {dist_name!r}; the workspace has: {known}")
