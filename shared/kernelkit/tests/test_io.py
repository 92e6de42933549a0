import json

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from kernelkit.io import MANIFEST_NAME, TENSORS_NAME, ArtifactError, load_artifact, save_artifact
from kernelkit.testing import tensors


@given(
    weight=tensors(shape=(3, 4), dtype=torch.float32),
    bias=tensors(shape=(4,), dtype=torch.float64),
    steps=st.integers(0, 10**6),
)
def test_round_trip_is_exact(tmp_path_factory, weight, bias, steps):
    directory = tmp_path_factory.mktemp("artifact")
    save_artifact(
        directory, {"weight": weight, "bias": bias}, {"steps": steps, "name": "x"}, kind="head"
    )
    loaded, config = load_artifact(directory, kind="head", expected_shapes={"weight": (3, 4)})
    assert config == {"steps": steps, "name": "x"}
    assert loaded["weight"].dtype == torch.float32 and loaded["bias"].dtype == torch.float64
    assert torch.equal(loaded["weight"], weight) and torch.equal(loaded["bias"], bias)


def test_overwrite_replaces_previous_artifact(tmp_path):
    save_artifact(tmp_path, {"w": torch.zeros(2)}, {"v": 1})
    save_artifact(tmp_path, {"w": torch.ones(3)}, {"v": 2})
    loaded, config = load_artifact(tmp_path)
    assert config["v"] == 2 and torch.equal(loaded["w"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == [MANIFEST_NAME, TENSORS_NAME]


def test_missing_directory_or_file(tmp_path):
    with pytest.raises(ArtifactError, match=r"has no manifest\.json"):
        load_artifact(tmp_path / "nowhere")
    save_artifact(tmp_path, {"w": torch.zeros(2)}, {})
    (tmp_path / TENSORS_NAME).unlink()
    with pytest.raises(ArtifactError, match=r"has no tensors\.safetensors"):
        load_artifact(tmp_path)


def test_truncated_tensor_file_is_detected(tmp_path):
    save_artifact(tmp_path, {"w": torch.randn(64)}, {})
    path = tmp_path / TENSORS_NAME
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ArtifactError, match="checksum"):
        load_artifact(tmp_path)


def test_corrupt_manifest_is_detected(tmp_path):
    save_artifact(tmp_path, {"w": torch.randn(4)}, {})
    (tmp_path / MANIFEST_NAME).write_text('{"format_version": 1, "kin')
    with pytest.raises(ArtifactError, match="not valid JSON"):
        load_artifact(tmp_path)


def test_wrong_format_version_kind_and_shape(tmp_path):
    save_artifact(tmp_path, {"w": torch.randn(4)}, {}, kind="cache")
    with pytest.raises(ArtifactError, match="is a 'cache', expected a 'head'"):
        load_artifact(tmp_path, kind="head")
    with pytest.raises(ArtifactError, match=r"has shape \(4,\), expected \(5,\)"):
        load_artifact(tmp_path, expected_shapes={"w": (5,)})
    with pytest.raises(ArtifactError, match="has no tensor 'v'"):
        load_artifact(tmp_path, expected_shapes={"v": (4,)})
    manifest = json.loads((tmp_path / MANIFEST_NAME).read_text())
    manifest["format_version"] = 99
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="format_version 99"):
        load_artifact(tmp_path)


def test_manifest_that_lies_about_shapes(tmp_path):
    save_artifact(tmp_path, {"w": torch.randn(4)}, {})
    manifest = json.loads((tmp_path / MANIFEST_NAME).read_text())
    manifest["tensors"]["w"]["shape"] = [2, 2]
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="manifest says"):
        load_artifact(tmp_path)


def test_bad_arguments(tmp_path):
    with pytest.raises(TypeError, match=r"tensors\['w'\] must be a torch.Tensor"):
        save_artifact(tmp_path, {"w": [1.0]}, {})
    with pytest.raises(TypeError, match="JSON-serialisable"):
        save_artifact(tmp_path, {"w": torch.zeros(1)}, {"x": object()})
    with pytest.raises(TypeError, match="JSON-serialisable"):
        save_artifact(tmp_path, {"w": torch.zeros(1)}, {"x": float("nan")})
    nested: list = []
    for _ in range(100_000):
        nested = [nested]
    with pytest.raises(TypeError, match="JSON-serialisable"):
        save_artifact(tmp_path, {"w": torch.zeros(1)}, {"x": nested})
    with pytest.raises(TypeError, match="kind must be a str, got int"):
        save_artifact(tmp_path, {"w": torch.zeros(1)}, {}, kind=3)
    with pytest.raises(TypeError, match="config must be a mapping, got str"):
        save_artifact(tmp_path, {"w": torch.zeros(1)}, "a string")
    assert not (tmp_path / MANIFEST_NAME).exists()


def test_garbage_with_matching_checksum_is_refused(tmp_path):
    import hashlib

    save_artifact(tmp_path, {"w": torch.randn(4)}, {})
    garbage = b"\x08\x00\x00\x00\x00\x00\x00\x00not json"
    (tmp_path / TENSORS_NAME).write_bytes(garbage)
    manifest = json.loads((tmp_path / MANIFEST_NAME).read_text())
    manifest["sha256"] = hashlib.sha256(garbage).hexdigest()
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="not a readable safetensors file"):
        load_artifact(tmp_path)


def _adamw_run(model, optimizer, steps, start=0):
    for step in range(start, steps):
        torch.manual_seed(step)
        inputs = torch.randn(8, 3)
        loss = model(inputs).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test_resumed_adamw_run_equals_an_uninterrupted_one(tmp_path):
    from kernelkit.io import load_training_state, training_state_tensors

    def fresh():
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
        return model, torch.optim.AdamW(model.parameters(), lr=1e-2)

    model, optimizer = fresh()
    _adamw_run(model, optimizer, 6)

    half, half_optimizer = fresh()
    _adamw_run(half, half_optimizer, 3)
    save_artifact(tmp_path, training_state_tensors(half, half_optimizer), {"step": 3})
    tensors, config = load_artifact(tmp_path)
    resumed, resumed_optimizer = fresh()
    load_training_state(tensors, resumed, resumed_optimizer)
    _adamw_run(resumed, resumed_optimizer, 6, start=config["step"])

    for expected, actual in zip(model.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(expected, actual)
    assert any(name.endswith("exp_avg_sq") for name in tensors)


def test_training_state_refuses_a_different_model(tmp_path):
    from kernelkit.io import load_training_state, training_state_tensors

    model = torch.nn.Linear(3, 4)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    tensors = training_state_tensors(model, optimizer)
    with pytest.raises(ArtifactError, match="does not fit"):
        load_training_state(tensors, torch.nn.Linear(3, 5))
    smaller = torch.nn.Linear(3, 4, bias=False)
    bad = {k: v for k, v in tensors.items() if not k.startswith("model.bias")}
    with pytest.raises(ArtifactError, match="names no parameter"):
        load_training_state(bad, smaller, torch.optim.AdamW(smaller.parameters()))


def _interrupted_save(monkeypatch, directory, value):
    """A save killed after its tensor file is in place and before its manifest is."""
    import kernelkit.io

    def killed(path, text):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(kernelkit.io, "atomic_write_text", killed)
        with pytest.raises(KeyboardInterrupt):
            save_artifact(directory, {"w": torch.full((3,), value)}, {"v": value})


def test_an_interrupted_overwrite_keeps_the_previous_artifact_loadable(tmp_path, monkeypatch):
    save_artifact(tmp_path, {"w": torch.full((2,), 1.0)}, {"v": 1})
    _interrupted_save(monkeypatch, tmp_path, 2.0)
    _interrupted_save(monkeypatch, tmp_path, 3.0)  # a resumed run that is killed again
    with pytest.warns(UserWarning, match="interrupted save"):
        loaded, config = load_artifact(tmp_path)
    assert config == {"v": 1} and torch.equal(loaded["w"], torch.full((2,), 1.0))

    save_artifact(tmp_path, {"w": torch.full((4,), 4.0)}, {"v": 4})
    assert sorted(p.name for p in tmp_path.iterdir()) == [MANIFEST_NAME, TENSORS_NAME]
    loaded, config = load_artifact(tmp_path)
    assert config == {"v": 4} and torch.equal(loaded["w"], torch.full((4,), 4.0))


def test_a_corrupt_backup_does_not_hide_the_error(tmp_path, monkeypatch):
    from kernelkit.io import BACKUP_SUFFIX

    save_artifact(tmp_path, {"w": torch.zeros(2)}, {"v": 1})
    _interrupted_save(monkeypatch, tmp_path, 2.0)
    backup = tmp_path / (TENSORS_NAME + BACKUP_SUFFIX)
    backup.write_bytes(backup.read_bytes()[:-3])
    with pytest.raises(ArtifactError, match="checksum"):
        load_artifact(tmp_path)


class _Killed(BaseException):
    """Stands for SIGKILL: raised by an injected fault, caught by no cleanup code."""


class _FaultyOs:
    """``os`` for kernelkit.io whose file-system mutations die at the ``fail_at``-th one.

    After the fault every further mutation dies too, as nothing runs after a SIGKILL.
    ``committed`` records whether the manifest was renamed into place (the save completed).
    """

    MUTATIONS = ("replace", "link", "unlink")

    def __init__(self, fail_at):
        import os

        self._os, self.fail_at, self.calls, self.committed = os, fail_at, 0, False

    def __getattr__(self, name):
        real = getattr(self._os, name)
        if name not in self.MUTATIONS:
            return real

        def mutation(*args, **kwargs):
            if self.fail_at is not None and self.calls >= self.fail_at:
                raise _Killed
            self.calls += 1
            result = real(*args, **kwargs)
            if name == "replace" and str(args[1]).endswith(MANIFEST_NAME):
                self.committed = True
            return result

        return mutation


def _save_version(monkeypatch, directory, version, fail_at):
    """Save version ``version``, killed before mutation ``fail_at`` (None: never); return whether
    the save completed (its manifest was renamed into place)."""
    import kernelkit.io

    faulty = _FaultyOs(fail_at)
    with monkeypatch.context() as patch:
        patch.setattr(kernelkit.io, "os", faulty)
        try:
            save_artifact(directory, {"w": torch.full((3,), float(version))}, {"v": version})
        except _Killed:
            return faulty.committed
    # A save that ran to its end made every mutation it needs: the fault points must reach past
    # the last of them, or some interruption point would go untested.
    assert faulty.calls <= FAULT_POINTS[-1], f"a save made {faulty.calls} mutations"
    return faulty.committed


def _loaded_version(directory):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tensors, config = load_artifact(directory)
    assert bool((tensors["w"] == float(config["v"])).all())
    return config["v"]


# A save makes at most 10 mutations (4 for the backup, 2 renames, 2 backup removals, plus the
# unlinks of a dying temporary); 12 covers every interruption point and the uninterrupted save.
FAULT_POINTS = range(13)


def test_every_pair_of_interrupted_saves_keeps_the_newest_completed_save(tmp_path, monkeypatch):
    for first in FAULT_POINTS:
        for second in FAULT_POINTS:
            directory = tmp_path / f"{first}-{second}"
            assert _save_version(monkeypatch, directory, 1, None)
            newest = 1
            if _save_version(monkeypatch, directory, 2, first):
                newest = 2
            if _save_version(monkeypatch, directory, 3, second):
                newest = 3
            assert _loaded_version(directory) == newest, (first, second)
            assert _save_version(monkeypatch, directory, 4, None)
            assert _loaded_version(directory) == 4
            assert sorted(p.name for p in directory.iterdir()) == [MANIFEST_NAME, TENSORS_NAME]


def test_the_reported_two_step_regression(tmp_path, monkeypatch):
    """v2 killed after its manifest but before its backup removal, v3 killed after its tensor
    file: the directory must load v2, not v1 (the first backup scheme gave v1)."""
    assert _save_version(monkeypatch, tmp_path, 1, None)
    # v2: unlink x2, link x2 (v1 becomes the backup), replace x2; killed at the backup removal.
    assert _save_version(monkeypatch, tmp_path, 2, 6)
    # v3: backup replaced by v2 (4), tensor file renamed (1); killed before the manifest rename.
    assert not _save_version(monkeypatch, tmp_path, 3, 5)
    assert _loaded_version(tmp_path) == 2


@given(faults=st.lists(st.one_of(st.none(), st.sampled_from(FAULT_POINTS)), min_size=1, max_size=6))
def test_any_sequence_of_interrupted_saves_keeps_the_newest_completed_save(
    tmp_path_factory, faults
):
    directory = tmp_path_factory.mktemp("sequence")
    patch = pytest.MonkeyPatch()
    try:
        newest = None
        for version, fault in enumerate(faults, start=1):
            if _save_version(patch, directory, version, fault):
                newest = version
        if newest is None:
            with pytest.raises(ArtifactError):
                _loaded_version(directory)
        else:
            assert _loaded_version(directory) == newest
    finally:
        patch.undo()


def test_stale_temporaries_are_removed_by_the_next_save(tmp_path):
    save_artifact(tmp_path, {"w": torch.zeros(2)}, {"v": 1})
    stale = [tmp_path / f".{TENSORS_NAME}.x1.tmp", tmp_path / f".{MANIFEST_NAME}.x2.tmp"]
    for path in stale:
        path.write_bytes(b"left by a killed save")
    unrelated = tmp_path / "notes.tmp"
    unrelated.write_text("not ours")
    save_artifact(tmp_path, {"w": torch.ones(2)}, {"v": 2})
    assert not any(path.exists() for path in stale) and unrelated.exists()


def _manifest_with(tmp_path, change):
    save_artifact(tmp_path, {"w": torch.zeros(2)}, {"v": 1})
    path = tmp_path / MANIFEST_NAME
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.clear(), "lacks the manifest fields"),
        (lambda m: m.pop("sha256"), "lacks the manifest fields sha256"),
        (lambda m: m.update(config="a string"), "'config' must be a JSON dict"),
        (lambda m: m.update(config=[1, 2]), "'config' must be a JSON dict"),
        (lambda m: m.update(tensors=["w"]), "'tensors' must be a JSON dict"),
        (lambda m: m.update(format_version="1"), "'format_version' must be a JSON int"),
        (lambda m: m.update(format_version=True), "'format_version' must be a JSON int"),
        (lambda m: m.update(kind=None), "'kind' must be a JSON str"),
        (lambda m: m.update(sha256=7), "'sha256' must be a JSON str"),
        (lambda m: m["tensors"].update(w=None), "tensor 'w' must be described"),
        (lambda m: m["tensors"].update(w={"shape": [2]}), "tensor 'w' must be described"),
        (lambda m: m["tensors"]["w"].update(shape="2"), "tensor 'w' must be described"),
        (lambda m: m["tensors"]["w"].update(shape=[-2]), "tensor 'w' must be described"),
        (lambda m: m["tensors"]["w"].update(shape=[2.0]), "tensor 'w' must be described"),
        (lambda m: m["tensors"]["w"].update(dtype=32), "tensor 'w' must be described"),
        (lambda m: m["tensors"]["w"].update(dtype="int8"), "manifest says"),
        (lambda m: m.update(config=None), "'config' must be a JSON dict"),
        (lambda m: m.update(format_version=1.0), "'format_version' must be a JSON int"),
        (lambda m: m.update(format_version=float("nan")), "'format_version' must be a JSON int"),
        (lambda m: m["tensors"].update(x={"shape": [1], "dtype": "float32"}), "manifest lists"),
    ],
)
def test_every_malformed_manifest_is_an_artifact_error(tmp_path, change, message):
    _manifest_with(tmp_path, change)
    with pytest.raises(ArtifactError, match=message):
        load_artifact(tmp_path)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"[1, 2, 3]", "must hold a JSON object, got list"),
        (b'"a string"', "must hold a JSON object, got str"),
        (b"null", "must hold a JSON object, got NoneType"),
        (b"42", "must hold a JSON object, got int"),
        (b"", "not valid JSON"),
        (b"\xff\xfe{}", "not valid JSON"),
        (b"[" * 100_000, "not valid JSON"),  # the parser's recursion limit, not a RecursionError
        (b'{"format_version": 1,', "not valid JSON"),
    ],
)
def test_a_manifest_that_is_not_a_json_object_is_an_artifact_error(tmp_path, raw, message):
    save_artifact(tmp_path, {"w": torch.zeros(2)}, {"v": 1})
    (tmp_path / MANIFEST_NAME).write_bytes(raw)
    with pytest.raises(ArtifactError, match=message):
        load_artifact(tmp_path)


def test_a_consistent_artifact_of_the_wrong_kind_is_not_hidden_by_the_backup(tmp_path, monkeypatch):
    save_artifact(tmp_path, {"w": torch.zeros(2)}, {"v": 1}, kind="a")
    # An interrupted save leaves a backup pair of kind "a" beside a consistent pair of kind "b".
    assert _save_version(monkeypatch, tmp_path, 2, 6)
    with pytest.raises(ArtifactError, match="is a 'artifact', expected a 'a'"):
        load_artifact(tmp_path, kind="a")


# Imports torch once, then forks one saving worker per request, so that each of the many kills
# costs a fork rather than a torch import. The zygote runs no tensor operation before forking.
_KILL_LOOP_ZYGOTE = """
import os, sys
import torch
from kernelkit.io import save_artifact

torch.set_num_threads(1)
print("ready", flush=True)
for line in sys.stdin:
    command, *args = line.split()
    if command == "wait":
        os.waitpid(int(args[0]), 0)
        print("reaped", flush=True)
        continue
    directory, version, log = args[0], int(args[1]), args[2]
    pid = os.fork()
    if pid == 0:
        try:
            with open(log, "a") as done:
                while True:
                    tensors = {"w": torch.full((200_000,), float(version))}
                    save_artifact(directory, tensors, {"v": version})
                    done.write(f"{version}\\n")
                    done.flush()
                    version += 1
        finally:
            os._exit(1)
    print(pid, flush=True)
"""


@pytest.mark.slow
def test_sigkill_during_saves_never_loses_the_last_completed_save(tmp_path):
    import os
    import random
    import signal
    import subprocess
    import sys
    import time

    rng = random.Random(0)
    directory = tmp_path / "artifact"
    zygote = subprocess.Popen(
        [sys.executable, "-c", _KILL_LOOP_ZYGOTE],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )

    def ask(line):
        zygote.stdin.write(line + "\n")
        zygote.stdin.flush()
        return zygote.stdout.readline().strip()

    try:
        assert zygote.stdout.readline().strip() == "ready"
        next_version, completed, advanced = 1, None, 0
        for iteration in range(20):
            log = tmp_path / f"done-{iteration}.txt"
            worker = int(ask(f"start {directory} {next_version} {log}"))
            # The kill lands at a random point after the worker's first completed save, so every
            # iteration has a save to keep however slow a loaded machine makes the saves.
            deadline = time.monotonic() + 120
            while not (log.exists() and log.read_text()) and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.15))
            os.kill(worker, signal.SIGKILL)
            assert ask(f"wait {worker}") == "reaped"
            printed = [int(v) for v in log.read_text().split()] if log.exists() else []
            last_started = printed[-1] + 1 if printed else next_version
            if printed:
                completed = printed[-1]
            # Each save first removes the temporaries of the killed one: they never pile up.
            assert len(list(directory.glob(".*.tmp"))) <= 1
            if completed is None:
                continue
            loaded = _loaded_version(directory)
            # The newest complete save is the last one reported, or the one killed after its
            # manifest rename but before it could report.
            assert completed <= loaded <= last_started
            advanced += loaded >= next_version
            completed, next_version = loaded, loaded + 1
    finally:
        zygote.stdin.close()
        zygote.wait(timeout=60)
    # The kills did land between saves that completed, so the checks above were exercised.
    assert completed is not None and advanced >= 10
