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
