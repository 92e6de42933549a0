"""Release one package: changelog check, version bump, build, install-alone check, tag, publish.

    uv run tools/release.py <dist-name> --bump patch|minor|major|none [--tag] [--dry-run]
                            [--publish-url URL] [--raise-floors]
    uv run tools/release.py <dist-name> [<dist-name> ...] --lowest

1. The package's CHANGELOG.md must list changes under ``## [Unreleased]``. ``--bump none``
   releases the current version as its own changelog section stands, and is refused while
   ``[Unreleased]`` lists changes (they would ship under a version that does not contain them).
2. The version in its pyproject.toml is bumped (SemVer) and the Unreleased entries move under a
   new ``## [<version>] - <date>`` heading; ``uv lock`` records the new version. For kernelkit,
   ``--raise-floors`` also raises every package's ``kernelkit>=`` floor to the new version (with a
   changelog entry in each), for a kernelkit release whose API the packages use.
3. ``uv build --package`` writes the sdist and wheel to ``dist/<dist-name>/``.
4. The wheel is installed alone into a fresh virtual environment (a paper package beside
   kernelkit at its declared floor, built from that kernelkit release's tag or recorded commit),
   imported, its version compared and its console script run with ``--help``.
5. With ``--tag``, the bump is committed and tagged ``<dist-name>-v<version>``, and the release
   commit is recorded in tools/releases.json (committed too: clones without tags still know it).
6. With ``--publish-url``, the sdist and wheel are uploaded with ``uv publish``. Only a tagged or
   recorded release is published. Credentials come from the environment only:
   ``UV_PUBLISH_TOKEN``, or ``UV_PUBLISH_USERNAME`` and ``UV_PUBLISH_PASSWORD``.

``--dry-run`` checks the changelog and runs steps 3-4 on the current version, changing nothing.

``--lowest`` installs the package alone with ``uv pip install --resolution lowest-direct`` (its
declared dependencies at their floors, kernelkit at its floor) and runs the package's tests there.
torch is the exception: it is held at the locked version, because every torch release is a
multi-GB download (see the README's Release section).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _releases import RELEASES, record, release_source, tag_name
from _wheels import HELD_AT_THE_LOCK, build_and_check, build_sdist, lowest_check
from _workspace import ROOT, Member, member, members

UNRELEASED = "## [Unreleased]"
CREDENTIALS = ("UV_PUBLISH_TOKEN", ("UV_PUBLISH_USERNAME", "UV_PUBLISH_PASSWORD"))


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


def _section_body(changelog: str, heading: str) -> str:
    match = re.search(rf"^{re.escape(heading)}.*$", changelog, flags=re.MULTILINE)
    if match is None:
        raise SystemExit(f"CHANGELOG.md has no '{heading}' section")
    return changelog[match.end() :].split("\n## ", 1)[0]


def _lists_changes(body: str) -> bool:
    return re.search(r"^\s*[-*] \S", body, flags=re.MULTILINE) is not None


def section_entries(changelog: str, heading: str) -> str:
    """The body of the section whose heading line starts with ``heading``; it must list changes."""
    body = _section_body(changelog, heading)
    if not _lists_changes(body):
        raise SystemExit(
            f"CHANGELOG.md's '{heading}' section lists no changes; write them before releasing"
        )
    return body


def check_changelog(changelog: str, version: str, bump: str) -> None:
    """The changelog rules for releasing ``version`` with ``bump`` (see the module docstring)."""
    if bump != "none":
        section_entries(changelog, UNRELEASED)
        return
    if _lists_changes(_section_body(changelog, UNRELEASED)):
        raise SystemExit(
            f"--bump none would release {version} again without the changes listed under "
            f"'{UNRELEASED}'; release them with --bump patch|minor|major"
        )
    section_entries(changelog, f"## [{version}]")


def with_changelog_entry(changelog: str, kind: str, entry: str) -> str:
    """``changelog`` with ``- entry`` first under ``### kind`` in its Unreleased section."""
    body = _section_body(changelog, UNRELEASED)
    start = changelog.index(UNRELEASED) + len(UNRELEASED)
    sub = re.search(rf"^### {re.escape(kind)}[ \t]*$", body, flags=re.MULTILINE)
    if sub is not None:
        at = start + sub.end()
        rest = changelog[at:].removeprefix("\n")
        return f"{changelog[:at]}\n\n- {entry}{rest}"
    return f"{changelog[:start]}\n\n### {kind}\n\n- {entry}{changelog[start:]}"


def with_kernelkit_floor(pyproject: str, version: str) -> str:
    """``pyproject`` with its ``kernelkit[...]>=X`` dependency raised to ``>=version``."""
    raised, count = re.subn(
        r'^(\s*"kernelkit(?:\[[^\]]*\])?)>=[0-9.]+(")',
        rf"\g<1>>={version}\g<2>",
        pyproject,
        flags=re.MULTILINE,
    )
    if count != 1:
        raise SystemExit(f"expected one 'kernelkit>=' dependency line, found {count}")
    return raised


def raise_floors(version: str) -> list[Path]:
    """Raise every paper package's kernelkit floor to ``version``; the files changed."""
    changed = []
    for m in members():
        if m.dist_name == "kernelkit" or m.kernelkit_floor() == version:
            continue
        m.pyproject.write_text(
            with_kernelkit_floor(m.pyproject.read_text(encoding="utf-8"), version),
            encoding="utf-8",
        )
        changelog = m.path / "CHANGELOG.md"
        changelog.write_text(
            with_changelog_entry(
                changelog.read_text(encoding="utf-8"),
                "Changed",
                f"Requires `kernelkit>={version}` (the kernelkit API it uses was released in "
                f"{version}).",
            ),
            encoding="utf-8",
        )
        changed += [m.pyproject, changelog]
    return changed


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.strip()


def tag_and_record(m: Member, files: list[Path]) -> str:
    """Commit ``files`` (if changed), tag the commit, record it in tools/releases.json."""
    tag = tag_name(m.dist_name, m.version)
    _git("add", *map(str, files))
    if subprocess.run(["git", "diff", "--cached", "--quiet"], cwd=ROOT).returncode != 0:
        _git("commit", "-m", f"Release {m.dist_name} {m.version}")
    commit = _git("rev-parse", "HEAD")
    _git("tag", tag, commit)
    releases = record(tag, commit, m.path.relative_to(ROOT).as_posix())
    _git("add", str(releases))
    _git("commit", "-m", f"Record the release commit of {tag} in {RELEASES}")
    return tag


def publish(m: Member, dist: Path, url: str) -> list[Path]:
    """Upload this version's sdist and wheel with ``uv publish``; credentials from the env."""
    if not (
        os.environ.get("UV_PUBLISH_TOKEN")
        or (os.environ.get("UV_PUBLISH_USERNAME") and os.environ.get("UV_PUBLISH_PASSWORD"))
    ):
        raise SystemExit(
            "--publish-url needs credentials in the environment: UV_PUBLISH_TOKEN, or "
            "UV_PUBLISH_USERNAME and UV_PUBLISH_PASSWORD (never in a file of the repository)"
        )
    files = sorted(dist.glob(f"{m.file_stem}.tar.gz")) + sorted(dist.glob(f"{m.file_stem}-*.whl"))
    if len(files) != 2:
        raise SystemExit(f"expected one sdist and one wheel of {m.file_stem} in {dist}: {files}")
    subprocess.run(["uv", "publish", "--publish-url", url, *map(str, files)], check=True)
    return files


def check_lowest(packages: list[Member], jobs: int) -> int:
    """``lowest_check`` for each package, ``jobs`` at a time; non-zero if any failed."""
    failed = []
    held = " and ".join(HELD_AT_THE_LOCK)
    print(f"declared floors, with {held} held at the locked versions (README: Release)")

    def one(m: Member) -> None:
        start = time.perf_counter()
        try:
            floors = lowest_check(m)
        except Exception as err:
            failed.append(m.dist_name)
            print(f"{m.dist_name}: FAILED at its floors\n{err}", flush=True)
            return
        pins = ", ".join(f"{dist} {version}" for dist, version in floors.items())
        seconds = time.perf_counter() - start
        print(f"{m.dist_name}: tests pass with {pins} ({seconds:.0f} s)", flush=True)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(one, packages))
    if failed:
        print(f"lowest-dependency check failed for {', '.join(failed)}")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "package", nargs="+", help="distribution name, e.g. kernelkit or densenet-limits"
    )
    parser.add_argument(
        "--bump",
        choices=("patch", "minor", "major", "none"),
        help="'none' releases the current version as its changelog section stands",
    )
    parser.add_argument("--tag", action="store_true", help="commit the bump and tag the release")
    parser.add_argument(
        "--dry-run", action="store_true", help="check and build the current version only"
    )
    parser.add_argument(
        "--publish-url",
        help="upload endpoint for `uv publish` (https://upload.pypi.org/legacy/ for PyPI)",
    )
    parser.add_argument(
        "--raise-floors",
        action="store_true",
        help="kernelkit only: raise every package's kernelkit floor to the new version",
    )
    parser.add_argument(
        "--lowest",
        action="store_true",
        help="install each package alone at its declared floors and run its tests",
    )
    parser.add_argument(
        "--jobs", type=int, default=1, help="--lowest: packages checked at once (default 1)"
    )
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}")

    if args.lowest:
        if args.bump or args.tag or args.publish_url or args.raise_floors:
            parser.error("--lowest is a check of its own; it takes no release options")
        return check_lowest([member(name) for name in args.package], args.jobs)
    if len(args.package) != 1:
        parser.error("a release is of one package")
    if args.bump is None:
        parser.error("--bump is required for a release")
    m = member(args.package[0])
    if args.raise_floors and m.dist_name != "kernelkit":
        parser.error("--raise-floors goes with a kernelkit release")
    if args.dry_run and (args.tag or args.publish_url):
        parser.error("--dry-run changes nothing: it does not tag or publish")

    changelog_path = m.path / "CHANGELOG.md"
    changelog = changelog_path.read_text(encoding="utf-8")
    check_changelog(changelog, m.version, args.bump)
    new_version = m.version if args.bump == "none" else bumped(m.version, args.bump)
    if args.tag and release_source(m.dist_name, new_version) is not None:
        raise SystemExit(f"{tag_name(m.dist_name, new_version)} is already released")
    if args.publish_url and not args.tag and release_source(m.dist_name, new_version) is None:
        raise SystemExit(
            f"{m.dist_name} {new_version} is not a recorded release; publish with --tag"
        )

    changed = [m.pyproject, changelog_path, ROOT / "uv.lock"]
    if not args.dry_run and args.bump != "none":
        pyproject, count = re.subn(
            r'^version = "[^"]+"$',
            f'version = "{new_version}"',
            m.pyproject.read_text(encoding="utf-8"),
            count=1,
            flags=re.MULTILINE,
        )
        if count != 1:
            raise SystemExit(f"no top-level version line found in {m.pyproject}")
        m.pyproject.write_text(pyproject, encoding="utf-8")
        heading = f"{UNRELEASED}\n\n## [{new_version}] - {dt.date.today().isoformat()}"
        changelog_path.write_text(changelog.replace(UNRELEASED, heading, 1), encoding="utf-8")
        if args.raise_floors:
            changed += raise_floors(new_version)
        subprocess.run(["uv", "lock"], cwd=ROOT, check=True)
        m = member(m.dist_name)
        print(f"{m.dist_name}: version {m.version}")
    elif args.raise_floors:
        stale = [p.dist_name for p in members()[1:] if p.kernelkit_floor() != new_version]
        print(f"--raise-floors would raise the kernelkit floor of {', '.join(stale) or 'none'}")

    dist = ROOT / "dist" / m.dist_name
    build_sdist(m, dist)
    with tempfile.TemporaryDirectory(prefix=f"release-{m.dist_name}-") as work:
        checked = build_and_check(m.dist_name, Path(work), wheel_dir=dist)
    beside = (
        ""
        if m.dist_name == "kernelkit"
        else (f" beside kernelkit {checked.kernelkit} ({checked.kernelkit_origin})")
    )
    print(f"{m.dist_name} {checked.version}: wheel installs alone{beside}, imports, runs its CLI")

    if args.tag and not args.dry_run:
        print(f"tagged {tag_and_record(m, changed)}")
    if args.publish_url:
        for path in publish(m, dist, args.publish_url):
            print(f"published {path.name} to {args.publish_url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
