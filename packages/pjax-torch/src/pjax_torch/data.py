"""Datasets: scikit-learn's bundled 8×8 digits, synthetic teacher–student regression, a
synthetic sequence task, and user arrays. Nothing is downloaded."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from kernelkit.validation import check_int_in_range

__all__ = ["Dataset", "load_arrays", "load_digits", "sequence_task", "teacher_student"]


@dataclass(frozen=True)
class Dataset:
    """Train and test tensors; ``task`` is ``"classification"`` (integer labels) or ``"regression"``."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    task: str = "classification"

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if not isinstance(x, torch.Tensor) or not x.is_floating_point():
                raise TypeError(f"x_{split} must be a floating-point tensor, got {x!r:.80}")
            if not isinstance(y, torch.Tensor) or y.shape[0] != x.shape[0]:
                raise ValueError(
                    f"y_{split} must be a tensor with {x.shape[0]} rows, got {getattr(y, 'shape', y)!r}"
                )
        if self.task not in ("classification", "regression"):
            raise ValueError(f"task must be 'classification' or 'regression', got {self.task!r}")
        if self.task == "classification" and self.y_train.is_floating_point():
            raise TypeError("classification labels must be integer tensors")

    @property
    def classes(self) -> int:
        return int(max(self.y_train.max(), self.y_test.max())) + 1

    def batches(self, batch_size: int, generator: torch.Generator):
        """Endless shuffled mini-batches of the training split."""
        n = self.x_train.shape[0]
        while True:
            order = torch.randperm(n, generator=generator)
            for start in range(0, n - batch_size + 1, batch_size):
                idx = order[start : start + batch_size]
                yield self.x_train[idx], self.y_train[idx]


def _split(x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int):
    order = np.random.default_rng(seed).permutation(len(x))
    cut = round(len(x) * (1 - test_fraction))
    return order[:cut], order[cut:]


def load_digits(*, test_fraction: float = 0.2, seed: int = 0, images: bool = False) -> Dataset:
    """The 1,797 bundled 8×8 digits, pixels scaled to [0, 1]; ``images=True`` gives (N, 1, 8, 8)."""
    from sklearn.datasets import load_digits as sklearn_digits

    x, y = sklearn_digits(return_X_y=True)
    train, test = _split(x, y, test_fraction, seed)
    x = torch.tensor(x / 16.0, dtype=torch.float32)
    if images:
        x = x.reshape(-1, 1, 8, 8)
    y = torch.tensor(y, dtype=torch.long)
    return Dataset(x[train], y[train], x[test], y[test])


def teacher_student(
    *, samples: int = 1024, inputs: int = 16, hidden: int = 16, outputs: int = 4, seed: int = 0
) -> Dataset:
    """Regression targets from a random two-layer ReLU teacher (the student can fit it exactly)."""
    check_int_in_range("samples", samples, 2)
    for name, value in (("inputs", inputs), ("hidden", hidden), ("outputs", outputs)):
        check_int_in_range(name, value, 1)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(samples, inputs, generator=g)
    w1 = torch.randn(inputs, hidden, generator=g) * (2 / inputs) ** 0.5
    w2 = torch.randn(hidden, outputs, generator=g) * (2 / hidden) ** 0.5
    y = torch.relu(x @ w1) @ w2
    cut = int(samples * 0.8)
    return Dataset(x[:cut], y[:cut], x[cut:], y[cut:], task="regression")


def sequence_task(*, samples: int = 1024, steps: int = 6, seed: int = 0) -> Dataset:
    """Sequences of ±1 symbols with noise; the label says whether the +1s are the majority."""
    check_int_in_range("samples", samples, 2)
    check_int_in_range("steps", steps, 1)
    g = torch.Generator().manual_seed(seed)
    symbols = torch.randint(0, 2, (samples, steps), generator=g) * 2 - 1
    if steps % 2 == 0:
        symbols[:, -1] = torch.where(symbols[:, :-1].sum(1) >= 0, 1, -1)
    x = (symbols.float() + 0.3 * torch.randn(samples, steps, generator=g)).unsqueeze(-1)
    y = (symbols.sum(1) > 0).long()
    cut = int(samples * 0.8)
    return Dataset(x[:cut], y[:cut], x[cut:], y[cut:])


def load_arrays(path: str | os.PathLike, *, test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """A dataset from an ``.npz`` file holding ``x`` (features) and ``y`` (integer labels for
    classification, floats for regression). Loaded without pickle."""
    with np.load(path, allow_pickle=False) as arrays:
        missing = {"x", "y"} - set(arrays.files)
        if missing:
            raise ValueError(f"{path} must hold arrays 'x' and 'y'; missing {sorted(missing)}")
        x, y = arrays["x"], arrays["y"]
    if len(x) != len(y) or len(x) < 2:
        raise ValueError(
            f"x and y in {path} must have the same number (>= 2) of rows, got {len(x)} and {len(y)}"
        )
    train, test = _split(x, y, test_fraction, seed)
    task = "regression" if np.issubdtype(y.dtype, np.floating) else "classification"
    xt = torch.tensor(x, dtype=torch.float32)
    yt = torch.tensor(y, dtype=torch.float32 if task == "regression" else torch.long)
    return Dataset(xt[train], yt[train], xt[test], yt[test], task=task)
