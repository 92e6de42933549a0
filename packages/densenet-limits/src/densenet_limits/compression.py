"""Compression of a ReLU network by partitioning its hidden neurons (weak regularity or k-means).

Hidden layer ``ℓ`` (width ``n``) read as a kernel: neuron ``j``'s row is
``[d_{ℓ−1} · W_ℓ[j, :] | b_ℓ[j] | n · W_{ℓ+1}[:, j]]``, its normalised incoming weights, its bias
and its normalised outgoing weights (for a B-dense network every entry lies in ``[−B, B]``).
A partition of the neurons is found

- by **weak regularity**: Frieze–Kannan rectangles of that kernel are added while the common
  refinement of their row sets has at most ``parts`` atoms; the atoms are the parts;
- by **k-means** on the rows (the baseline; Lloyd's algorithm with k-means++ seeding).

Each part is merged into one neuron: incoming weights and bias **averaged**, outgoing weights
**summed**. With one neuron per part this is the identity, so ``parts = width`` is exact. The
error is measured on a sample of the input cube ``[0, 1]^{d0}`` (or on given inputs).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from densenet_limits.networks import MLP
from kernelkit.cutnorm import common_refinement, frieze_kannan
from kernelkit.validation import check_finite, check_floating, check_int_in_range

__all__ = [
    "METHODS",
    "CompressionResult",
    "compress",
    "hidden_kernel",
    "kmeans",
    "partition_neurons",
]

METHODS = ("weak_regularity", "kmeans")


@dataclass(frozen=True)
class CompressionResult:
    """The merged network and its output error against the original on the sample.

    ``parts_used`` may be below the ``parts`` asked for (weak regularity stops before a
    rectangle would overshoot; k-means merges duplicate rows). ``relative_rms_error`` is
    ``RMS(f − g) / RMS(f − mean f)``.
    """

    model: MLP
    parts_used: tuple[int, ...]
    mean_error: float
    max_error: float
    relative_rms_error: float


def hidden_kernel(layers: Sequence[tuple[torch.Tensor, torch.Tensor]], index: int) -> torch.Tensor:
    """The kernel rows of hidden layer ``index`` (the output of ``layers[index]``)."""
    weight_in, bias = layers[index]
    weight_out, _ = layers[index + 1]
    fan_in, width = weight_in.shape[1], weight_in.shape[0]
    return torch.cat([fan_in * weight_in, bias[:, None], width * weight_out.T], 1)


def partition_neurons(
    kernel: torch.Tensor, parts: int, *, method: str = "weak_regularity", seed: int = 0
) -> torch.Tensor:
    """Labels ``0..p−1`` (``p ≤ parts``) of the rows of ``kernel``."""
    width = kernel.shape[0]
    check_int_in_range("parts", parts, 1, width)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if parts == width:
        return torch.arange(width)
    if method == "kmeans":
        return kmeans(kernel, parts, generator=torch.Generator().manual_seed(seed))
    generator = torch.Generator().manual_seed(seed)
    decomposition = frieze_kannan(kernel, parts, generator=generator)
    labels = torch.zeros(width, dtype=torch.int64)
    for count in range(1, decomposition.rank + 1):
        candidate = common_refinement(decomposition.rows[:count])
        if int(candidate.max()) + 1 > parts:
            break
        labels = candidate
    return labels


def kmeans(
    points: torch.Tensor,
    clusters: int,
    *,
    iterations: int = 50,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Lloyd's k-means with k-means++ seeding; labels ``0..p−1`` of the non-empty clusters."""
    check_int_in_range("clusters", clusters, 1, points.shape[0])
    first = int(torch.randint(0, points.shape[0], (1,), generator=generator))
    centres = points[first : first + 1]
    for _ in range(clusters - 1):
        distance = torch.cdist(points, centres).min(1).values.pow(2)
        if float(distance.sum()) == 0.0:
            break  # every point already coincides with a centre
        pick = int(torch.multinomial(distance / distance.sum(), 1, generator=generator))
        centres = torch.cat([centres, points[pick : pick + 1]])
    labels = torch.cdist(points, centres).argmin(1)
    for _ in range(iterations):
        onehot = nn.functional.one_hot(labels, centres.shape[0]).to(points.dtype)
        counts = onehot.sum(0)
        sums = onehot.T @ points
        centres = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], centres)
        new_labels = torch.cdist(points, centres).argmin(1)
        if torch.equal(new_labels, labels):
            break
        labels = new_labels
    return common_refinement(labels[None] == torch.arange(centres.shape[0])[:, None])


def _merge(
    layers: Sequence[tuple[torch.Tensor, torch.Tensor]], partitions: Sequence[torch.Tensor]
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    merged = []
    previous_sum = None  # n_{ℓ−1} × k_{ℓ−1}: sums the outgoing weights of merged neurons
    for index, (weight, bias) in enumerate(layers):
        if previous_sum is not None:
            weight = weight @ previous_sum
        if index < len(partitions):
            onehot = nn.functional.one_hot(partitions[index]).to(torch.float64)
            average = (onehot / onehot.sum(0)).T
            weight, bias = average @ weight, average @ bias
            previous_sum = onehot
        merged.append((weight, bias))
    return merged


def compress(
    model: nn.Module,
    parts: int | Sequence[int],
    *,
    method: str = "weak_regularity",
    inputs: torch.Tensor | None = None,
    samples: int = 2048,
    seed: int = 0,
) -> CompressionResult:
    """Merge each hidden layer of ``model`` into at most ``parts`` neurons (see module doc).

    ``model`` is any network of this package (it needs ``affine_layers()``); ``parts`` is one
    count for every hidden layer or one per hidden layer, each in ``[1, width]``. The error is
    measured on ``inputs`` if given, else on ``samples`` uniform points of ``[0, 1]^{d0}``.
    """
    if not hasattr(model, "affine_layers"):
        raise TypeError(f"model must be a DenseMLP, SparseMLP or MLP, got {type(model).__name__}")
    layers = model.affine_layers()
    hidden = [w.shape[0] for w, _ in layers[:-1]]
    if not hidden:
        raise ValueError("model must have at least one hidden layer to compress")
    counts = [parts] * len(hidden) if isinstance(parts, int) else list(parts)
    if len(counts) != len(hidden):
        raise ValueError(
            f"parts must be an int or {len(hidden)} ints (one per hidden layer), got {parts!r}"
        )
    for index, (count, width) in enumerate(zip(counts, hidden, strict=True)):
        check_int_in_range(
            f"parts[{index}]" if not isinstance(parts, int) else "parts", count, 1, width
        )
    partitions = [
        partition_neurons(hidden_kernel(layers, i), count, method=method, seed=seed)
        for i, count in enumerate(counts)
    ]
    compressed = MLP.from_affine_layers(_merge(layers, partitions))
    if inputs is None:
        check_int_in_range("samples", samples, 1)
        generator = torch.Generator().manual_seed(seed)
        inputs = torch.rand(samples, layers[0][0].shape[1], generator=generator)
    else:
        check_floating("inputs", inputs)
        check_finite("inputs", inputs)
    with torch.no_grad():
        original = model(inputs.float()).double()
        approximate = compressed(inputs.float()).double()
    error = (original - approximate).abs()
    spread = (original - original.mean(0)).pow(2).mean().sqrt()
    rms = error.pow(2).mean().sqrt()
    return CompressionResult(
        model=compressed,
        parts_used=tuple(int(p.max()) + 1 for p in partitions),
        mean_error=float(error.mean()),
        max_error=float(error.max()),
        relative_rms_error=float(rms / spread) if spread > 0 else float(rms),
    )
