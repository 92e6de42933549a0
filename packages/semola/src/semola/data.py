"""Seeded synthetic tasks with known symmetries, rotated digits, and reference generators.

Each ``make_*`` function returns a :class:`TaskData`: train/test splits, an optional shifted test
split (orientations never seen in training), the action of ``g`` on inputs and outputs, and the
reference Lie algebra the learned basis should recover (``None`` where the data has no symmetry).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from kernelkit.validation import check_int_in_range, check_real_in_range
from semola.actions import GroupAction, ImageAction, VectorAction

__all__ = [
    "TASKS",
    "TaskData",
    "affine_generators",
    "make_digits",
    "make_n_body",
    "make_no_symmetry_points",
    "make_rotation_points",
    "make_so3_points",
    "make_task",
    "so2_generator",
    "so3_generators",
]


def so2_generator() -> torch.Tensor:
    """``J = [[0, -1], [1, 0]]``, shape ``(1, 2, 2)``: ``exp(t J)`` rotates by ``t`` radians."""
    return torch.tensor([[[0.0, -1.0], [1.0, 0.0]]])


def so3_generators() -> torch.Tensor:
    """The three infinitesimal rotations about x, y, z, shape ``(3, 3, 3)``."""
    basis = torch.zeros(3, 3, 3)
    for axis, (i, j) in enumerate([(1, 2), (2, 0), (0, 1)]):
        basis[axis, i, j], basis[axis, j, i] = -1.0, 1.0
    return basis


def affine_generators() -> torch.Tensor:
    """Augerino's six affine generators of the plane, homogeneous ``(6, 3, 3)``.

    Order: translation x, translation y, rotation, isotropic scale, stretch, shear.
    """
    basis = torch.zeros(6, 3, 3)
    basis[0, 0, 2] = basis[1, 1, 2] = 1.0
    basis[2, :2, :2] = so2_generator()[0]
    basis[3, 0, 0] = basis[3, 1, 1] = 1.0
    basis[4, 0, 0], basis[4, 1, 1] = 1.0, -1.0
    basis[5, 0, 1] = basis[5, 1, 0] = 1.0
    return basis


@dataclass
class TaskData:
    """A dataset with its symmetry metadata (tensors are float32; class labels int64)."""

    name: str
    kind: Literal["regression", "classification"]
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    action: GroupAction
    output_action: GroupAction | None
    reference: torch.Tensor | None
    x_shift: torch.Tensor | None = None
    y_shift: torch.Tensor | None = None

    @property
    def dim(self) -> int:
        return self.action.dim


def _rotation(angles: torch.Tensor) -> torch.Tensor:
    c, s = torch.cos(angles), torch.sin(angles)
    return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)


def _split(num_samples: int, rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    order = torch.randperm(num_samples, generator=rng)
    cut = round(0.8 * num_samples)
    return order[:cut], order[cut:]


def _standardise(y: torch.Tensor, train: torch.Tensor) -> torch.Tensor:
    return (y - y[train].mean()) / y[train].std()


def _planar_points(
    num_samples: int, num_points: int, rng: torch.Generator, orientation: tuple[float, float] | None
):
    """Points in the plane; with ``orientation`` the first point's angle is uniform in that range."""
    x = torch.randn(num_samples, num_points, 2, generator=rng)
    if orientation is not None:
        low, high = orientation
        current = torch.atan2(x[:, 0, 1], x[:, 0, 0])
        target = low + (high - low) * torch.rand(num_samples, generator=rng)
        x = x @ _rotation(target - current).transpose(1, 2)
    return x


def make_rotation_points(
    num_samples: int = 2048,
    *,
    num_points: int = 4,
    seed: int = 0,
    train_orientation: tuple[float, float] | None = (0.0, math.pi / 4),
) -> TaskData:
    """SO(2)-invariant regression ``y = (sum_i |x_i|^2 + |sum_i x_i|^2) / 2`` on planar point sets.

    With ``train_orientation`` the training (and in-distribution test) sets have their first
    point's angle in that range; the shifted test set has every orientation.
    """
    check_int_in_range("num_samples", num_samples, 10)
    check_int_in_range("num_points", num_points, 1)
    rng = torch.Generator().manual_seed(seed)
    x = _planar_points(num_samples, num_points, rng, train_orientation)
    x_shift = _planar_points(num_samples // 4, num_points, rng, None)

    def target(points: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((points**2).sum((1, 2)) + (points.sum(1) ** 2).sum(-1))

    y, y_shift = target(x), target(x_shift)
    train, test = _split(num_samples, rng)
    mean, std = y[train].mean(), y[train].std()
    y, y_shift = (y - mean) / std, (y_shift - mean) / std
    return TaskData(
        "rotation2d",
        "regression",
        x[train],
        y[train],
        x[test],
        y[test],
        VectorAction(2),
        None,
        so2_generator(),
        x_shift,
        y_shift,
    )


def make_no_symmetry_points(
    num_samples: int = 2048, *, num_points: int = 4, seed: int = 0
) -> TaskData:
    """Control without a linear symmetry: ``y = sum_i (x_i[0] + x_i[1]^2)``.

    (The simpler ``y = x_1[0]`` is invariant under the shears and scalings of the second
    coordinate, so it is not a no-symmetry control.) Only ``L = 0`` satisfies
    ``sum_i grad y . L x_i = 0`` for all ``x``.
    """
    check_int_in_range("num_samples", num_samples, 10)
    check_int_in_range("num_points", num_points, 1)
    rng = torch.Generator().manual_seed(seed)
    x = torch.randn(num_samples, num_points, 2, generator=rng)
    y = x[..., 0].sum(1) + (x[..., 1] ** 2).sum(1)
    train, test = _split(num_samples, rng)
    y = _standardise(y, train)
    return TaskData(
        "no_symmetry2d",
        "regression",
        x[train],
        y[train],
        x[test],
        y[test],
        VectorAction(2),
        None,
        None,
    )


def make_so3_points(num_samples: int = 2048, *, num_points: int = 5, seed: int = 0) -> TaskData:
    """SO(3)-invariant regression on 3-D point sets: ``y = sum_{i<j} |x_i - x_j| + sum_i |x_i|^2``."""
    check_int_in_range("num_samples", num_samples, 10)
    check_int_in_range("num_points", num_points, 2)
    rng = torch.Generator().manual_seed(seed)
    x = torch.randn(num_samples, num_points, 3, generator=rng)
    y = torch.cdist(x, x).sum((1, 2)) / 2 + (x**2).sum((1, 2))
    train, test = _split(num_samples, rng)
    y = _standardise(y, train)
    return TaskData(
        "so3_points",
        "regression",
        x[train],
        y[train],
        x[test],
        y[test],
        VectorAction(3),
        None,
        so3_generators(),
    )


def _gravity(positions: torch.Tensor, softening: float) -> torch.Tensor:
    delta = positions[:, None, :, :] - positions[:, :, None, :]
    inverse_cube = ((delta**2).sum(-1) + softening**2) ** -1.5
    return (delta * inverse_cube[..., None]).sum(2)


def make_n_body(
    num_samples: int = 2048,
    *,
    num_bodies: int = 2,
    horizon: float = 0.5,
    dt: float = 0.01,
    softening: float = 0.1,
    seed: int = 0,
) -> TaskData:
    """Planar gravitational N-body (unit masses, G = 1): state now -> state after ``horizon``.

    Inputs and targets are ``(B, num_bodies, 2, 2)``: per body, position and velocity in R^2.
    The map is SO(2)-equivariant (``g`` rotates every position and velocity), so inputs and
    outputs share the :class:`VectorAction`. Integrated with leapfrog.
    """
    check_int_in_range("num_samples", num_samples, 10)
    check_int_in_range("num_bodies", num_bodies, 2)
    check_real_in_range("horizon", horizon, 0.0)
    check_real_in_range("dt", dt, 0.0)
    check_real_in_range("softening", softening, 0.0)
    if not (0 < dt <= horizon):
        raise ValueError(f"dt must satisfy 0 < dt <= horizon, got dt={dt}, horizon={horizon}")
    rng = torch.Generator().manual_seed(seed)
    positions = torch.randn(num_samples, num_bodies, 2, generator=rng, dtype=torch.float64)
    velocities = 0.5 * torch.randn(num_samples, num_bodies, 2, generator=rng, dtype=torch.float64)
    positions = positions - positions.mean(1, keepdim=True)
    velocities = velocities - velocities.mean(1, keepdim=True)
    start = torch.stack([positions, velocities], 2)
    acceleration = _gravity(positions, softening)
    for _ in range(round(horizon / dt)):
        velocities = velocities + 0.5 * dt * acceleration
        positions = positions + dt * velocities
        acceleration = _gravity(positions, softening)
        velocities = velocities + 0.5 * dt * acceleration
    end = torch.stack([positions, velocities], 2)
    train, test = _split(num_samples, rng)
    x, y = start.float(), end.float()
    return TaskData(
        f"{num_bodies}body",
        "regression",
        x[train],
        y[train],
        x[test],
        y[test],
        VectorAction(2),
        VectorAction(2),
        so2_generator(),
    )


def _rotate_images(images: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    return ImageAction(2)(_rotation(angles), images)


def make_digits(
    *,
    seed: int = 0,
    train_angle_deg: float = 30.0,
    test_angle_deg: float = 180.0,
    pad: int = 2,
    max_samples: int | None = None,
) -> TaskData:
    """scikit-learn's 8x8 digits, zero-padded by ``pad`` and rotated by random angles.

    Train and in-distribution test: angles uniform in ``[-train_angle_deg, train_angle_deg]``;
    shifted test: uniform in ``[-test_angle_deg, test_angle_deg]``. Pixel values in [0, 1].
    """
    from sklearn.datasets import load_digits

    if not (0 <= train_angle_deg <= 180 and 0 <= test_angle_deg <= 180):
        raise ValueError(
            f"angles must lie in [0, 180] degrees, got {train_angle_deg} and {test_angle_deg}"
        )
    check_int_in_range("pad", pad, 0)
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32) / 16.0
    labels = torch.tensor(digits.target, dtype=torch.int64)
    rng = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(images), generator=rng)
    if max_samples is not None:
        check_int_in_range("max_samples", max_samples, 10)
        order = order[:max_samples]
    images = F.pad(images[order], (pad, pad, pad, pad)).unsqueeze(1)
    labels = labels[order]
    cut = round(2 / 3 * len(images))

    def angles(count: int, limit_deg: float) -> torch.Tensor:
        return (torch.rand(count, generator=rng) * 2 - 1) * math.radians(limit_deg)

    train_x = _rotate_images(images[:cut], angles(cut, train_angle_deg))
    test_x = _rotate_images(images[cut:], angles(len(images) - cut, train_angle_deg))
    shift_x = _rotate_images(images[cut:], angles(len(images) - cut, test_angle_deg))
    return TaskData(
        "digits",
        "classification",
        train_x,
        labels[:cut],
        test_x,
        labels[cut:],
        ImageAction(2),
        None,
        so2_generator(),
        shift_x,
        labels[cut:],
    )


TASKS = ("rotation2d", "no_symmetry2d", "so3_points", "2body", "3body", "digits")


def make_task(name: str, *, num_samples: int = 2048, seed: int = 0) -> TaskData:
    """Build one of :data:`TASKS` by name (``num_samples`` is ignored for digits)."""
    if name == "rotation2d":
        return make_rotation_points(num_samples, seed=seed)
    if name == "no_symmetry2d":
        return make_no_symmetry_points(num_samples, seed=seed)
    if name == "so3_points":
        return make_so3_points(num_samples, seed=seed)
    if name in ("2body", "3body"):
        return make_n_body(num_samples, num_bodies=int(name[0]), seed=seed)
    if name == "digits":
        return make_digits(seed=seed)
    raise ValueError(f"name must be one of {TASKS}, got {name!r}")
