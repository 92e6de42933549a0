"""Where a release's source comes from (tag, recorded commit, or the working tree), and the
release tool's rules for versions, floors and changelogs."""

import subprocess

import pytest
from _releases import kernelkit_source, record, release_source
from _workspace import member
from release import check_changelog, with_changelog_entry, with_kernelkit_floor

WORKSPACE = """[project]
name = "root"
version = "0"

[tool.uv.workspace]
members = ["shared/*"]
"""


def _git(root, *args):
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=root,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def _set_version(root, version):
    (root / "shared" / "kernelkit" / "pyproject.toml").write_text(
        f'[project]\nname = "kernelkit"\nversion = "{version}"\n', encoding="utf-8"
    )


@pytest.fixture
def repo(tmp_path):
    """A throwaway git repository holding a one-member workspace at kernelkit 0.1.0."""
    (tmp_path / "shared" / "kernelkit").mkdir(parents=True)
    (tmp_path / "pyproject.toml").write_text(WORKSPACE, encoding="utf-8")
    _set_version(tmp_path, "0.1.0")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "commit", "-qm", "kernelkit 0.1.0")
    return tmp_path


def _exported_version(path):
    return (path / "pyproject.toml").read_text(encoding="utf-8").split('version = "')[1][:5]


def test_unreleased_floor_is_built_from_the_working_tree(repo, tmp_path_factory):
    source, origin = kernelkit_source("0.1.0", tmp_path_factory.mktemp("out"), root=repo)
    assert source == repo / "shared" / "kernelkit" and origin.startswith("working tree")


def test_unreleased_floor_that_is_not_the_tree_is_an_error(repo, tmp_path_factory):
    with pytest.raises(
        SystemExit, match=r"kernelkit 0\.0\.9 is a declared floor, but it has no tag"
    ):
        kernelkit_source("0.0.9", tmp_path_factory.mktemp("out"), root=repo)


def test_recorded_release_is_exported_from_its_commit_without_a_tag(repo, tmp_path_factory):
    commit = _git(repo, "rev-parse", "HEAD")
    record("kernelkit-v0.1.0", commit, "shared/kernelkit", root=repo)
    _set_version(repo, "0.2.0")  # the tree moves on; the release stays what it was
    _git(repo, "commit", "-qam", "kernelkit 0.2.0")
    assert release_source("kernelkit", "0.1.0", root=repo) == (commit, "shared/kernelkit")
    source, origin = kernelkit_source("0.1.0", tmp_path_factory.mktemp("out"), root=repo)
    assert _exported_version(source) == "0.1.0" and origin == f"release commit {commit[:12]}"
    with pytest.raises(SystemExit, match="already recorded"):
        record("kernelkit-v0.1.0", commit, "shared/kernelkit", root=repo)


def test_a_tag_is_found_before_the_record(repo, tmp_path_factory):
    _git(repo, "tag", "kernelkit-v0.1.0")
    commit = _git(repo, "rev-parse", "HEAD")
    _set_version(repo, "0.1.1")
    _git(repo, "commit", "-qam", "kernelkit 0.1.1")
    assert release_source("kernelkit", "0.1.0", root=repo) == (commit, "shared/kernelkit")
    assert release_source("kernelkit", "0.1.1", root=repo) is None
    source, _ = kernelkit_source("0.1.0", tmp_path_factory.mktemp("out"), root=repo)
    assert _exported_version(source) == "0.1.0"


def test_the_current_floors_have_a_source():
    """Until kernelkit's first recorded release every floor is the tree's version."""
    for m in [member(name) for name in ("csrv2", "psm-prefix-scan")]:
        floor = m.kernelkit_floor()
        assert floor is not None
        assert (
            release_source("kernelkit", floor) is not None or floor == member("kernelkit").version
        )


CHANGELOG = """# Changelog

## [Unreleased]

### Added

- a feature

## [0.1.0] - 2026-11-01

- first
"""


def test_bump_none_is_refused_while_unreleased_lists_changes():
    with pytest.raises(SystemExit, match=r"--bump none would release 0\.1\.0 again"):
        check_changelog(CHANGELOG, "0.1.0", "none")
    check_changelog(CHANGELOG, "0.1.0", "patch")
    released = CHANGELOG.replace("### Added\n\n- a feature\n\n", "")
    check_changelog(released, "0.1.0", "none")
    with pytest.raises(SystemExit, match="lists no changes"):
        check_changelog(released, "0.1.0", "minor")


def test_changelog_entry_goes_under_its_kind():
    added = with_changelog_entry(CHANGELOG, "Added", "another")
    assert "### Added\n\n- another\n- a feature\n" in added
    changed = with_changelog_entry(CHANGELOG, "Changed", "floor")
    assert "## [Unreleased]\n\n### Changed\n\n- floor\n\n### Added\n\n- a feature" in changed


def test_kernelkit_floor_is_raised_with_its_extras():
    pyproject = 'dependencies = [\n    "kernelkit[plot]>=0.1.0",\n    "torch>=2.6",\n]\n'
    assert '"kernelkit[plot]>=0.2.0"' in with_kernelkit_floor(pyproject, "0.2.0")
    with pytest.raises(SystemExit, match="expected one 'kernelkit>=' dependency line, found 0"):
        with_kernelkit_floor('dependencies = ["torch>=2.6"]\n', "0.2.0")
