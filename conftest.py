"""Workspace-wide pytest setup.

Triton decides at kernel-definition time whether to interpret, so the switch has to be set
before any kernel module is imported: without CUDA we run Triton kernels in its CPU interpreter.

The tests run many small tensor ops; on a small shared CPU torch's intra-op threads then cost far
more than they give (10-25x slower steps measured with two threads on a loaded two-core machine),
so tests use one thread unless KERNELKIT_TEST_THREADS says otherwise.
"""

import os

import pytest
import torch
from hypothesis import HealthCheck, settings

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
torch.set_num_threads(int(os.environ.get("KERNELKIT_TEST_THREADS", "1")))

settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.register_profile("dev", max_examples=25, deadline=None)
settings.load_profile("ci" if os.environ.get("CI", "").lower() == "true" else "dev")


def pytest_collection_modifyitems(config, items):
    import pytest

    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture
def bad_input_table():
    """``check(package_dir_name, functions, tally)``: the package's row in the README's
    bad-input table must match what its harness run just counted, when run with the library
    versions the table names (refresh with ``uv run tools/bad_inputs.py --write``)."""
    import sys
    from pathlib import Path

    tools = str(Path(__file__).resolve().parent / "tools")
    if tools not in sys.path:
        sys.path.insert(0, tools)
    from bad_inputs import counted_with, readme_counted_with, readme_rows, row

    def check(package: str, functions: list, tally) -> None:
        if readme_counted_with() != counted_with():
            # Other library versions (the lowest-direct check) draw other examples; the harness
            # run itself still had to end with no failure.
            return
        expected = row(package, len(functions), tally)
        found = readme_rows().get(package)
        assert found == expected, (
            f"README's bad-input row for {package} is {found!r}, the harness counted "
            f"{expected!r}; run `uv run tools/bad_inputs.py --write`"
        )

    return check
