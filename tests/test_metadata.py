"""What a package index shows of each distribution, and what `pip install <pkg>` brings."""

from __future__ import annotations

import email.parser
import re
import shutil
import subprocess
import sys
import zipfile

import pytest
from _workspace import ROOT, Member, members

MEMBERS = members()
REPOSITORY = "https://github.com/paper-kits/paper-kits"
RELATIVE_LINK = re.compile(r"\]\((?!https?://|#)[^)\s]+\)")


def by_id(m: Member) -> str:
    return m.dist_name


@pytest.mark.parametrize("m", MEMBERS, ids=by_id)
def test_index_metadata(m: Member):
    project = m.metadata()["project"]
    rel = m.path.relative_to(ROOT).as_posix()
    assert project["license"] == "MIT" and project["requires-python"] == ">=3.11"
    assert "Typing :: Typed" in project["classifiers"]
    assert "Programming Language :: Python :: 3.11" in project["classifiers"]
    assert project["urls"] == {
        "Homepage": REPOSITORY,
        "Source": f"{REPOSITORY}/tree/main/{rel}",
        "Changelog": f"{REPOSITORY}/blob/main/{rel}/CHANGELOG.md",
        "Issues": f"{REPOSITORY}/issues",
    }
    assert list(project["scripts"]) == [m.cli_name]
    assert (m.path / "src" / m.import_name / "py.typed").is_file()
    # README.md is the long description, its relative links made absolute for the index page
    assert project["dynamic"] == ["readme"]
    hook = m.metadata()["tool"]["hatch"]["metadata"]["hooks"]["fancy-pypi-readme"]
    assert hook["fragments"] == [{"path": "README.md"}]
    for substitution in hook["substitutions"]:
        assert f"/main/{rel}/" in substitution["replacement"]


@pytest.mark.parametrize("m", MEMBERS[1:], ids=by_id)
def test_repro_figures_come_with_the_package(m: Member):
    """``<pkg> repro`` draws its figures with matplotlib: ``pip install <pkg>`` must bring it."""
    dependencies = m.metadata()["project"]["dependencies"]
    assert any(re.match(r"kernelkit\[[^\]]*\bplot\b", d) for d in dependencies), dependencies


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("uv") is None, reason="needs uv on PATH")
def test_every_sdist_and_wheel_passes_twine_check(tmp_path):
    subprocess.run(
        ["uv", "build", "--all-packages", "--out-dir", str(tmp_path)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    built = sorted(tmp_path.glob("*.whl")) + sorted(tmp_path.glob("*.tar.gz"))
    assert len(built) == 2 * len(MEMBERS)
    result = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *map(str, built)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for wheel in tmp_path.glob("*.whl"):
        with zipfile.ZipFile(wheel) as archive:
            name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
            metadata = email.parser.Parser().parsestr(archive.read(name).decode())
        description = metadata.get_payload()
        assert description.startswith("# "), wheel.name
        assert not RELATIVE_LINK.search(description), (
            wheel.name,
            RELATIVE_LINK.findall(description),
        )
