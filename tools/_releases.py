"""Where each release's source is: its git tag, or the commit recorded in tools/releases.json.

A release ``<dist>-v<version>`` is tagged by ``tools/release.py --tag``, which also records the
release commit (and the member's folder) in ``tools/releases.json``: clones made by CI often
carry no tags, but they carry the committed file. The install-alone check builds kernelkit at
each package's declared floor from that source, so a floor that names a version whose API the
package does not find fails there instead of at a user's.
"""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from pathlib import Path

from _workspace import ROOT, member

RELEASES = Path("tools") / "releases.json"


def tag_name(dist_name: str, version: str) -> str:
    return f"{dist_name}-v{version}"


def recorded(root: Path = ROOT) -> dict[str, dict[str, str]]:
    """``{tag: {"commit": sha, "path": member folder}}`` from tools/releases.json."""
    path = root / RELEASES
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def record(tag: str, commit: str, member_path: str, root: Path = ROOT) -> Path:
    """Add ``tag`` to tools/releases.json (sorted, one entry per tag); refuse to overwrite."""
    releases = recorded(root)
    if tag in releases:
        raise SystemExit(f"{tag} is already recorded in {RELEASES} (commit {releases[tag]})")
    releases[tag] = {"commit": commit, "path": member_path}
    path = root / RELEASES
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dict(sorted(releases.items())), indent=2) + "\n", encoding="utf-8")
    return path


def _git(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, check=False)


def release_source(dist_name: str, version: str, root: Path = ROOT) -> tuple[str, str] | None:
    """``(commit, member folder)`` of the release, from its tag or else tools/releases.json."""
    tag = tag_name(dist_name, version)
    releases = recorded(root)
    path = releases.get(tag, {}).get("path")
    result = _git(root, "rev-parse", "--verify", "--quiet", f"refs/tags/{tag}^{{commit}}")
    if result.returncode == 0:
        commit = result.stdout.decode().strip()
        if path is None:
            path = member(dist_name, root).path.relative_to(root).as_posix()
        return commit, path
    if tag in releases:
        return releases[tag]["commit"], path
    return None


def export_member(commit: str, member_path: str, dest: Path, root: Path = ROOT) -> Path:
    """Write the member's folder as it was at ``commit`` into ``dest``; return its copy."""
    result = _git(root, "archive", "--format=tar", commit, member_path)
    if result.returncode != 0:
        raise RuntimeError(
            f"git archive {commit} {member_path} failed ({result.stderr.decode().strip()}); a "
            "shallow clone lacks the release commits: fetch the history (git fetch --unshallow)"
        )
    with tarfile.open(fileobj=io.BytesIO(result.stdout)) as archive:
        archive.extractall(dest, filter="data")
    return dest / member_path


def kernelkit_source(version: str, dest: Path, root: Path = ROOT) -> tuple[Path, str]:
    """The folder to build kernelkit ``version`` from, and where it came from.

    A recorded release is exported from its commit. A version that was never released can only
    be the working tree's own (the state before kernelkit's first recorded release, when every
    floor is the tree's version); any other unreleased version is an error, because nothing can
    say what it contained.
    """
    source = release_source("kernelkit", version, root)
    if source is not None:
        commit, path = source
        return export_member(commit, path, dest, root), f"release commit {commit[:12]}"
    tree = member("kernelkit", root)
    if tree.version == version:
        return tree.path, "working tree (no release of this version is recorded)"
    raise SystemExit(
        f"kernelkit {version} is a declared floor, but it has no tag {tag_name('kernelkit', version)}, "
        f"no entry in {RELEASES}, and the working tree's kernelkit is {tree.version}"
    )
