"""Each trainer package's tiny recipe, launched as a user would, forms one two-process job.

``packages/<pkg>/recipes/tiny.sh`` is the small twin of the package's paper-scale recipe: the
same launcher (``torchrun``) and the same console-script command on a model built from a config.
Here it runs with two processes on the CPU (gloo), twice: a first run, and a rerun that resumes
from the first run's checkpoint. ``recipe_audit/sitecustomize.py`` records, in every rank, what
the package's code wrote, read and printed and the size of the process group it joined, so the
test sees from outside that

- both ranks joined one group of two (not two single-process trainings);
- rank 0 alone writes the artifacts (rank 1 writes only its own RNG state into checkpoints,
  which the Trainer needs to resume it) and prints the results;
- the rerun resumes: every rank restores its state from the first run's last checkpoint, and the
  run ends at the new step count.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
AUDIT = Path(__file__).resolve().parent / "recipe_audit"


@dataclass(frozen=True)
class Recipe:
    package: str
    first: tuple[str, ...]  # extra options of the first run
    resume: tuple[str, ...]  # options of the rerun that resumes
    checkpoint: str  # the first run's last checkpoint, which the rerun resumes from
    final_checkpoint: str  # the rerun's last checkpoint
    artifacts: tuple[str, ...]  # written by rank 0 by the end of the first run
    printed: str  # in rank 0's output of each run


RECIPES = [
    Recipe(
        package="csrv2",
        first=(),
        resume=("--e2e-max-steps", "4"),
        checkpoint="run/stage2/checkpoint-2",
        final_checkpoint="run/stage2/checkpoint-4",
        artifacts=("run/model/modules.json", "run/stage1/model/manifest.json"),
        printed='"model":',
    ),
    Recipe(
        package="g1",
        first=(),
        resume=("--max-steps", "4", "--resume", "true"),
        checkpoint="run/checkpoint-2",
        final_checkpoint="run/checkpoint-4",
        artifacts=("run/model.safetensors", "run/config.json"),
        printed='"world_size": 2',
    ),
    Recipe(
        package="faro",
        first=(),
        resume=("--epochs", "2", "--resume", "true"),
        checkpoint="run/checkpoint-4",
        final_checkpoint="run/checkpoint-8",
        artifacts=("run/final/faro_training.json", "run/final/config.json"),
        printed='"world_size": 2',
    ),
    Recipe(
        package="reasoncache",
        first=(),
        resume=("--max-steps", "4", "--resume", "last"),
        checkpoint="run/checkpoint-2",
        final_checkpoint="run/checkpoint-4",
        artifacts=("run/manifest.json", "run/cache_state/manifest.json"),
        printed="cache saved to",
    ),
    Recipe(
        package="seqtopk",
        first=(),
        resume=("--max-steps", "4", "--resume-from-checkpoint", "last"),
        checkpoint="run/checkpoint-2",
        final_checkpoint="run/checkpoint-4",
        artifacts=("run/seqtopk.json", "run/config.json"),
        printed="saved the fine-tuned model to",
    ),
]


def launch(recipe: Recipe, out: Path, audit: Path, extra: tuple[str, ...]) -> list[dict]:
    """Run ``tiny.sh`` with two processes; return each rank's audit record, rank 0 first."""
    audit.mkdir(parents=True)
    env = {
        **os.environ,
        "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(AUDIT), os.environ.get("PYTHONPATH", "")) if p
        ),
        "RECIPE_AUDIT_DIR": str(audit),
        "RECIPE_WATCH_DIR": str(out),
        "NPROC_PER_NODE": "2",
        "OMP_NUM_THREADS": "1",
        "CUDA_VISIBLE_DEVICES": "",
        "TOKENIZERS_PARALLELISM": "false",
        "KERNELKIT_PROGRESS": "0",
    }
    script = ROOT / "packages" / recipe.package / "recipes" / "tiny.sh"
    done = subprocess.run(
        ["bash", str(script), str(out), *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    records = [json.loads(path.read_text()) for path in audit.glob("rank*.json")]
    assert sorted(r["rank"] for r in records) == [0, 1], records
    return sorted(records, key=lambda r: r["rank"])


def check_one_job(recipe: Recipe, records: list[dict]) -> None:
    zero, one = records
    assert zero["world_size"] == one["world_size"] == 2
    assert recipe.printed in zero["stdout"], zero["stdout"]
    assert one["stdout"] == ""
    # The Trainer saves each rank's RNG state beside the checkpoint: rank 1's only write.
    own_state = [w for w in one["writes"] if Path(w).name == "rng_state_1.pth"]
    assert sorted(one["writes"]) == own_state, one["writes"]


@pytest.mark.slow
@pytest.mark.parametrize("recipe", RECIPES, ids=lambda r: r.package)
def test_tiny_recipe_runs_as_one_two_process_job_and_resumes(recipe: Recipe, tmp_path):
    out = tmp_path / "out"
    first = launch(recipe, out, tmp_path / "audit-first", recipe.first)
    check_one_job(recipe, first)
    for artifact in recipe.artifacts:
        assert artifact in first[0]["writes"] or (out / artifact).exists(), artifact
        assert (out / artifact).exists(), artifact
    assert (out / recipe.checkpoint).is_dir()

    resumed = launch(recipe, out, tmp_path / "audit-resume", recipe.resume)
    check_one_job(recipe, resumed)
    for record in resumed:
        rank = record["rank"]
        assert f"{recipe.checkpoint}/rng_state_{rank}.pth" in record["reads"], record["reads"]
    state = json.loads((out / recipe.final_checkpoint / "trainer_state.json").read_text())
    assert state["global_step"] == int(recipe.final_checkpoint.rsplit("-", 1)[1])
