"""Each member's wheel installs alone (with kernelkit's) into a fresh virtual env and imports."""

import shutil

import pytest
from _wheels import build_and_check
from _workspace import members

pytestmark = pytest.mark.slow


@pytest.mark.skipif(shutil.which("uv") is None, reason="needs uv on PATH")
@pytest.mark.parametrize("m", members(), ids=lambda m: m.dist_name)
def test_wheel_installs_alone_and_imports(m, tmp_path):
    assert build_and_check(m.dist_name, tmp_path) == m.version
