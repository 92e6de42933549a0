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
