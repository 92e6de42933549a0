"""Two real processes on the CPU (torch.distributed, gloo): the all-reduce of group statistics."""

import importlib.util
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

WORKER = Path(__file__).with_name("distributed_worker.py")


def load_worker():
    spec = importlib.util.spec_from_file_location("faro_distributed_worker", WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(mode: str, out: Path, timeout: float) -> list[dict]:
    """Run the worker on two gloo ranks; return what each rank saved."""
    env = {
        **os.environ,
        "MASTER_ADDR": "127.0.0.1",
        "OMP_NUM_THREADS": "1",
        "CUDA_VISIBLE_DEVICES": "",
        "TOKENIZERS_PARALLELISM": "false",
    }
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(free_port()),
        str(WORKER),
        mode,
        str(out),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return [torch.load(out / f"rank{rank}.pt") for rank in range(2)]


def test_two_process_all_reduce_matches_the_whole_batch(tmp_path):
    worker = load_worker()
    ranks = launch("statistics", tmp_path, timeout=120)
    everything = torch.arange(worker.NUM_PAIRS)
    for name in ("dp", "eo", "cf"):
        single = worker.reduction_step(name, everything, lambda tensor: tensor.detach().clone())
        assert bool(single["active"].all()), name  # every cell has pairs, so nothing is skipped
        assert bool((single["multipliers"] != worker.START_MULTIPLIERS).any()), name
        for rank, result in enumerate(ranks):
            for key, expected in single.items():
                torch.testing.assert_close(result[name][key], expected, msg=f"{name} {key} {rank}")
        # the two halves really differ, so the agreement comes from the all-reduce
        local = worker.reduction_step(
            name, everything[: worker.SPLIT], lambda tensor: tensor.detach().clone()
        )
        assert not torch.allclose(local["rates"], single["rates"]), name


# Slow (two processes each import trl, about 35 s of CPU) but the only end-to-end check of the
# trainer under several processes, so it runs by default; FARO_SKIP_DISTRIBUTED_TRAINER=1 skips it.
@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("FARO_SKIP_DISTRIBUTED_TRAINER") == "1",
    reason="FARO_SKIP_DISTRIBUTED_TRAINER=1",
)
def test_two_process_proxy_gda_trainer_agrees_across_ranks(tmp_path):
    ranks = launch("trainer", tmp_path, timeout=300)
    for result in ranks:
        # compute_loss on each half + all-reduce == the whole batch in one process
        torch.testing.assert_close(
            result["distributed_multipliers"], result["reference_multipliers"]
        )
        assert bool((result["reference_multipliers"] != 0).any())
        # this rank's half alone has other group rates than the whole batch
        assert not torch.allclose(result["local_statistics"], result["hard_statistics"])
        assert float(result["reference_gradient"].norm()) > 0
        torch.testing.assert_close(
            result["gradient"], result["reference_gradient"], rtol=1e-4, atol=1e-6
        )
        assert len(result["losses"]) == 3
        assert bool(torch.isfinite(result["losses"]).all())
        assert float(result["best_step"]) == 3.0
    torch.testing.assert_close(ranks[0]["final_multipliers"], ranks[1]["final_multipliers"])
    assert bool((ranks[0]["final_multipliers"] > 0).any())
