"""What the tools know about the workspace: its members, their versions and import names."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Member:
    """One workspace member: a publishable package under packages/ or shared/."""

    dist_name: str
    path: Path
    version: str

    @property
    def import_name(self) -> str:
        return self.dist_name.replace("-", "_")

    @property
    def pyproject(self) -> Path:
        return self.path / "pyproject.toml"

    def metadata(self) -> dict:
        return tomllib.loads(self.pyproject.read_text(encoding="utf-8"))


def members() -> list[Member]:
    """Every member named by the root pyproject's workspace globs, kernelkit first."""
    root = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    found = []
    for pattern in root["tool"]["uv"]["workspace"]["members"]:
        for path in sorted(ROOT.glob(pattern)):
            if (path / "pyproject.toml").is_file():
                project = tomllib.loads((path / "pyproject.toml").read_text(encoding="utf-8"))[
                    "project"
                ]
                found.append(Member(project["name"], path, project["version"]))
    return sorted(found, key=lambda m: (m.dist_name != "kernelkit", m.dist_name))


def member(dist_name: str) -> Member:
    """The member called ``dist_name``; ``SystemExit`` with the known names otherwise."""
    for m in members():
        if m.dist_name == dist_name:
            return m
    known = ", ".join(m.dist_name for m in members())
    raise SystemExit(f"unknown package {dist_name!r}; the workspace has: {known}")
