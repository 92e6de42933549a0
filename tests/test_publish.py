"""Releases published to a real package index install alone from it.

A copy of the workspace (a throwaway git repository) is released with the repository's own
``tools/release.py`` into a ``pypiserver`` on 127.0.0.1: the next kernelkit minor release with
every package's floor raised (the command that released kernelkit 0.2.0), then
``faro-fairness-rm``, then a kernelkit patch release. Versions are computed from the copy, so the
rehearsal stays valid as real releases move them on. A fresh virtual environment installs the package from that index by its
name alone, as a user would; third-party packages come from the default index at the locked
versions (the lock as a constraints file, so uv's cache serves them). The test index does not
redirect unknown names to PyPI: uv caches wheels per index URL, and a redirect from a server on a
random port stored a fresh copy of torch and its CUDA wheels (5.5 GB) on every run, until the
disk filled.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path

import pytest
from _workspace import ROOT

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("uv") is None, reason="needs uv on PATH"),
]

PACKAGE, CLI = "faro-fairness-rm", "faro"
ENV = {
    **os.environ,
    # uv publish reads these (release.py refuses to publish without credentials in the env);
    # the test index accepts any.
    "UV_PUBLISH_USERNAME": "test",
    "UV_PUBLISH_PASSWORD": "test",
    "GIT_AUTHOR_NAME": "release test",
    "GIT_AUTHOR_EMAIL": "release@test.invalid",
    "GIT_COMMITTER_NAME": "release test",
    "GIT_COMMITTER_EMAIL": "release@test.invalid",
    "PYTHONPATH": "",
}


def _run(cmd, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(
        list(map(str, cmd)), capture_output=True, text=True, env=ENV, check=False, **kwargs
    )
    assert result.returncode == 0, f"{cmd}\n{result.stdout}\n{result.stderr}"
    return result


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    """A pypiserver on a free port of 127.0.0.1, stopped when the module's tests are done."""
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "pypiserver", "run", "-i", "127.0.0.1", "-p", str(port),
         "-a", ".", "-P", ".", "--disable-fallback", str(tmp_path_factory.mktemp("index"))],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/simple/", timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """The working tree (tracked and untracked, not ignored files) as a fresh git repository."""
    copy = tmp_path_factory.mktemp("workspace")
    listed = _run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT
    ).stdout
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    _run(["git", "init", "-q"], cwd=copy)
    _run(["git", "add", "-A"], cwd=copy)
    _run(["git", "commit", "-qm", "snapshot"], cwd=copy)
    return copy


def _release(workspace: Path, *args: str) -> str:
    return _run([sys.executable, workspace / "tools" / "release.py", *args], cwd=workspace).stdout


def _fresh_venv(path: Path, index: str, workspace: Path, *requirements: str) -> Path:
    """A venv with ``requirements`` installed by name from ``index`` (third parties locked)."""
    constraints = path.parent / f"{path.name}-constraints.txt"
    constraints.write_text(
        _run(["uv", "export", "--frozen", "--all-packages", "--no-hashes", "--no-emit-workspace",
              "--no-header", "--no-annotate"], cwd=workspace).stdout,
        encoding="utf-8",
    )  # fmt: skip
    _run(["uv", "venv", "--python", sys.executable, path])
    python = path / "bin" / "python"
    _run(["uv", "pip", "install", "--python", python, "--index", f"{index}/simple/",
          "--refresh-package", "kernelkit", "--refresh-package", PACKAGE,
          "--constraint", constraints, *requirements])  # fmt: skip
    return python


def _versions(python: Path) -> dict[str, str]:
    code = (
        "import json, faro, kernelkit; "
        "print(json.dumps({'faro': faro.__version__, 'kernelkit': kernelkit.__version__}))"
    )
    return json.loads(_run([python, "-c", code]).stdout)


def _version(workspace: Path, member: str) -> str:
    text = (workspace / member / "pyproject.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)["project"]["version"]


def _bumped(version: str, part: str) -> str:
    major, minor, patch = map(int, version.split("."))
    return f"{major}.{minor + 1}.0" if part == "minor" else f"{major}.{minor}.{patch + 1}"


def _add_change(workspace: Path, member: str, entry: str) -> None:
    changelog = workspace / member / "CHANGELOG.md"
    changelog.write_text(
        changelog.read_text(encoding="utf-8").replace(
            "## [Unreleased]", f"## [Unreleased]\n\n### Changed\n\n- {entry}", 1
        ),
        encoding="utf-8",
    )
    _run(["git", "commit", "-qam", f"{member}: {entry}"], cwd=workspace)


@pytest.fixture(scope="module")
def versions(workspace) -> dict[str, str]:
    """The versions the rehearsal releases: the next kernelkit minor, the next faro patch."""
    return {
        "kernelkit": _bumped(_version(workspace, "shared/kernelkit"), "minor"),
        "faro": _bumped(_version(workspace, "packages/faro"), "patch"),
    }


@pytest.fixture(scope="module")
def released(workspace, index, versions) -> Path:
    """The next kernelkit minor (floors raised) and faro-fairness-rm patch, tagged, published."""
    kernelkit, faro = versions["kernelkit"], versions["faro"]
    _add_change(workspace, "shared/kernelkit", "a rehearsed minor release")
    out = _release(workspace, "kernelkit", "--bump", "minor", "--tag", "--raise-floors",
                   "--publish-url", index)  # fmt: skip
    assert (
        f"tagged kernelkit-v{kernelkit}" in out and f"published kernelkit-{kernelkit}.tar.gz" in out
    )
    # A CI clone carries no tags: the floor is then found through tools/releases.json.
    _run(["git", "tag", "-d", f"kernelkit-v{kernelkit}"], cwd=workspace)
    out = _release(workspace, PACKAGE, "--bump", "patch", "--tag", "--publish-url", index)
    assert f"beside kernelkit {kernelkit} (release commit" in out, out
    assert f"published faro_fairness_rm-{faro}-py3-none-any.whl" in out, out
    return workspace


def test_release_tags_records_and_raises_floors(released, versions):
    kernelkit, faro = versions["kernelkit"], versions["faro"]
    releases = json.loads((released / "tools" / "releases.json").read_text(encoding="utf-8"))
    assert {f"kernelkit-v{kernelkit}", f"{PACKAGE}-v{faro}"} <= set(releases)
    tagged = _run(["git", "rev-parse", f"{PACKAGE}-v{faro}^{{commit}}"], cwd=released).stdout
    assert releases[f"{PACKAGE}-v{faro}"] == {"commit": tagged.strip(), "path": "packages/faro"}
    kernelkit_release = releases[f"kernelkit-v{kernelkit}"]["commit"]
    shown = _run(["git", "show", f"{kernelkit_release}:shared/kernelkit/pyproject.toml"],
                 cwd=released).stdout  # fmt: skip
    assert f'version = "{kernelkit}"' in shown
    for pyproject in sorted(released.glob("packages/*/pyproject.toml")):
        assert f'"kernelkit[plot]>={kernelkit}"' in pyproject.read_text(encoding="utf-8"), pyproject
    changelog = (released / "packages" / "psm" / "CHANGELOG.md").read_text(encoding="utf-8")
    assert f"- Requires `kernelkit>={kernelkit}`" in changelog
    assert not _run(["git", "status", "--porcelain"], cwd=released).stdout.strip()
    refused = subprocess.run(
        [sys.executable, released / "tools" / "release.py", PACKAGE, "--bump", "none", "--tag"],
        cwd=released, capture_output=True, text=True, env=ENV, check=False,
    )  # fmt: skip
    assert refused.returncode != 0 and "already released" in refused.stderr


def test_package_installs_alone_from_the_index_and_reproduces(released, versions, index, tmp_path):
    python = _fresh_venv(tmp_path / "venv", index, released, PACKAGE)
    assert _versions(python) == versions
    assert _run([python.parent / CLI, "--help"]).stdout.startswith("usage:")
    # The quick repro draws figures: matplotlib came with the package (kernelkit[plot]).
    _run([python.parent / CLI, "repro", "--out", tmp_path / "report"], cwd=tmp_path)
    assert (tmp_path / "report" / "report.md").is_file()
    assert list((tmp_path / "report").glob("*.png"))


def test_released_package_accepts_a_kernelkit_patch_release(released, versions, index, tmp_path):
    _add_change(released, "shared/kernelkit", "a patch")
    out = _release(released, "kernelkit", "--bump", "patch", "--tag", "--publish-url", index)
    patch = _bumped(versions["kernelkit"], "patch")
    assert f"published kernelkit-{patch}-py3-none-any.whl" in out
    # The faro release was made against the minor release; its declared range admits the patch.
    python = _fresh_venv(tmp_path / "venv", index, released, f"{PACKAGE}=={versions['faro']}")
    assert _versions(python) == {"faro": versions["faro"], "kernelkit": patch}
    assert _run([python.parent / CLI, "--help"]).stdout.startswith("usage:")
