import random

import numpy as np
import pytest
import torch

from kernelkit.utils import pick_device, progress, seed_everything
from kernelkit.validation import (
    check_finite,
    check_floating,
    check_int_in_range,
    check_model_path,
    check_ndim,
    check_same_shape,
    check_tensor,
)


def test_seed_everything_repeats_every_generator():
    gen = seed_everything(123)
    first = (random.random(), np.random.rand(), torch.rand(2), torch.rand(2, generator=gen))
    gen = seed_everything(123)
    second = (random.random(), np.random.rand(), torch.rand(2), torch.rand(2, generator=gen))
    assert first[0] == second[0] and first[1] == second[1]
    assert torch.equal(first[2], second[2]) and torch.equal(first[3], second[3])


@pytest.mark.parametrize(
    ("seed", "error"), [(-1, ValueError), (2**32, ValueError), (1.5, TypeError), (True, TypeError)]
)
def test_seed_everything_rejects(seed, error):
    with pytest.raises(error, match="seed"):
        seed_everything(seed)


def test_pick_device():
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device().type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="preferred must name a torch device"):
        pick_device("gpu-please")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            pick_device("cuda")


def test_progress_yields_every_item_and_respects_switch(monkeypatch, capsys):
    monkeypatch.setenv("KERNELKIT_PROGRESS", "1")
    assert list(progress(range(5), desc="work")) == [0, 1, 2, 3, 4]
    assert "work" in capsys.readouterr().err
    monkeypatch.setenv("KERNELKIT_PROGRESS", "0")
    assert list(progress(iter("ab"))) == ["a", "b"]
    assert capsys.readouterr().err == ""


def test_validation_messages_name_argument_and_value():
    with pytest.raises(TypeError, match=r"x must be a torch\.Tensor, got list"):
        check_tensor("x", [1])
    with pytest.raises(TypeError, match=r"x must have a floating-point dtype, got torch\.int64"):
        check_floating("x", torch.arange(3))
    with pytest.raises(TypeError, match=r"dtype in \(torch.float64\), got torch.float32"):
        check_floating("x", torch.zeros(1), dtypes=(torch.float64,))
    with pytest.raises(ValueError, match=r"x must be finite; found nan at index \(1,\)"):
        check_finite("x", torch.tensor([0.0, float("nan")]))
    check_finite("x", torch.empty(0))
    with pytest.raises(ValueError, match=r"x must have 2 or 3 dimensions, got shape \(4,\)"):
        check_ndim("x", torch.zeros(4), (2, 3))
    with pytest.raises(
        ValueError, match=r"a and b must have the same shape, got \(2,\) and \(3,\)"
    ):
        check_same_shape("a", torch.zeros(2), "b", torch.zeros(3))
    with pytest.raises(ValueError, match="k must be >= 1 and <= 4, got 5"):
        check_int_in_range("k", 5, 1, 4)
    with pytest.raises(TypeError, match="k must be an int, got float"):
        check_int_in_range("k", 2.0, 1)
    assert check_int_in_range("k", 4, 1, 4) == 4


def test_check_model_path_tells_a_missing_directory_from_a_hub_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models" / "tiny").mkdir(parents=True)
    (tmp_path / "weights.bin").write_bytes(b"")
    assert check_model_path("--model", "models/tiny") == "models/tiny"
    assert check_model_path("--model", tmp_path / "models") == str(tmp_path / "models")
    assert check_model_path("--model", "Qwen/Qwen2.5-3B-Instruct") == "Qwen/Qwen2.5-3B-Instruct"
    assert check_model_path("--model", "gpt2") == "gpt2"
    missing = ["/no/such/model", "./tiny", "~/nowhere-xyz", "models/absent", "a/b/c"]
    for value in missing:
        with pytest.raises(FileNotFoundError, match=rf"--model '{value}': no such model directory"):
            check_model_path("--model", value)
    with pytest.raises(FileNotFoundError, match="no such model directory"):
        check_model_path("--model", "org/name", allow_hub_id=False)
    with pytest.raises(NotADirectoryError, match="is a file; expected a model directory"):
        check_model_path("--model", "weights.bin")
    with pytest.raises(ValueError, match="empty string"):
        check_model_path("--model", "")
    with pytest.raises(TypeError, match="got int"):
        check_model_path("--model", 3)


def test_torch_threads_restores_the_previous_count():
    from kernelkit.utils import torch_threads

    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="count must be an int >= 1, got 0"), torch_threads(0):
        pass
