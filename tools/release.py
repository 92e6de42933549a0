"""Release one package: changelog check, version bump, build, install-alone check, tag.

    uv run tools/release.py <dist-name> --bump patch|minor|major|none [--tag] [--dry-run]

1. The package's CHANGELOG.md must have entries under ``## [Unreleased]`` (with ``--bump none``,
   under the current version's heading instead: the first release of a package's 0.1.0).
2. The version in its pyproject.toml is bumped (SemVer) and the Unreleased entries move under a
   new ``## [<version>] - <date>`` heading; ``uv lock`` records the new version.
3. ``uv build --package`` writes the sdist and wheel to ``dist/<dist-name>/``.
4. The wheel (with kernelkit's, for the paper packages) is installed alone into a fresh virtual
   environment, imported, its version compared and its console script run with ``--help``.
5. With ``--tag``, the bump is committed and tagged ``<dist-name>-v<version>``.

``--dry-run`` checks the changelog and runs steps 3-4 on the current version, changing nothing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from _wheels import build_and_check, build_sdist
from _workspace import ROOT, member

UNRELEASED = "## [Unreleased]"


def bumped(version: str, part: str) -> str:
    match = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)", version)
    if match is None:
        raise SystemExit(f"version {version!r} is not MAJOR.MINOR.PATCH")
    major, minor, patch = map(int, match.groups())
    if part == "major":
        return f"{major + 1}.0.0"
    if part == "minor":
        return f"{major}.{minor + 1}.0"
    return f"{major}.{minor}.{patch + 1}"


def section_entries(changelog: str, heading: str) -> str:
    """The body of the section whose heading line starts with ``heading``; it must list changes."""
    match = re.search(rf"^{re.escape(heading)}.*$", changelog, flags=re.MULTILINE)
    if match is None:
        raise SystemExit(f"CHANGELOG.md has no '{heading}' section")
    body = changelog[match.end() :].split("\n## ", 1)[0]
    if not re.search(r"^\s*[-*] \S", body, flags=re.MULTILINE):
        raise SystemExit(
            f"CHANGELOG.md's '{heading}' section lists no changes; write them before releasing"
        )
    return body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package", help="distribution name, e.g. kernelkit or densenet-limits")
    parser.add_argument(
        "--bump",
        choices=("patch", "minor", "major", "none"),
        required=True,
        help="'none' releases the current version as its changelog section stands",
    )
    parser.add_argument("--tag", action="store_true", help="commit the bump and tag the release")
    parser.add_argument(
        "--dry-run", action="store_true", help="check and build the current version only"
    )
    args = parser.parse_args(argv)

    m = member(args.package)
    changelog_path = m.path / "CHANGELOG.md"
    changelog = changelog_path.read_text(encoding="utf-8")
    if args.bump == "none":
        section_entries(changelog, f"## [{m.version}]")
    else:
        section_entries(changelog, UNRELEASED)

    if not args.dry_run and args.bump != "none":
        new_version = bumped(m.version, args.bump)
        pyproject = m.pyproject.read_text(encoding="utf-8")
        pyproject, count = re.subn(
            r'^version = "[^"]+"$',
            f'version = "{new_version}"',
            pyproject,
            count=1,
            flags=re.MULTILINE,
        )
        if count != 1:
            raise SystemExit(f"no top-level version line found in {m.pyproject}")
        m.pyproject.write_text(pyproject, encoding="utf-8")
        heading = f"{UNRELEASED}\n\n## [{new_version}] - {dt.date.today().isoformat()}"
        changelog_path.write_text(changelog.replace(UNRELEASED, heading, 1), encoding="utf-8")
        subprocess.run(["uv", "lock"], cwd=ROOT, check=True)
        m = member(args.package)
        print(f"{m.dist_name}: version {m.version}")

    dist = ROOT / "dist" / m.dist_name
    build_sdist(m, dist)
    with tempfile.TemporaryDirectory(prefix=f"release-{m.dist_name}-") as work:
        version = build_and_check(m.dist_name, Path(work), wheel_dir=dist)
    print(f"{m.dist_name} {version}: wheel installs alone, imports and runs its console script")

    if args.tag and not args.dry_run:
        tag = f"{m.dist_name}-v{m.version}"
        subprocess.run(
            ["git", "add", str(m.pyproject), str(changelog_path), "uv.lock"], cwd=ROOT, check=True
        )
        subprocess.run(
            ["git", "commit", "-m", f"Release {m.dist_name} {m.version}"], cwd=ROOT, check=True
        )
        subprocess.run(["git", "tag", tag], cwd=ROOT, check=True)
        print(f"tagged {tag}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
