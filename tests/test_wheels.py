"""Each member's wheel installs alone into a fresh virtual env and imports: a paper package
beside kernelkit at the floor it declares, built from that kernelkit release's source."""

import shutil

import pytest
from _wheels import build_and_check
from _workspace import members

pytestmark = pytest.mark.slow


@pytest.mark.skipif(shutil.which("uv") is None, reason="needs uv on PATH")
@pytest.mark.parametrize("m", members(), ids=lambda m: m.dist_name)
def test_wheel_installs_alone_and_imports(m, tmp_path):
    checked = build_and_check(m.dist_name, tmp_path)
    assert checked.version == m.version
    if m.dist_name != "kernelkit":
        assert checked.kernelkit == m.kernelkit_floor()
