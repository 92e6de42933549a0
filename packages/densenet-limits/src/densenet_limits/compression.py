"""Compression of a ReLU network by partitioning its hidden neurons (weak regularity or k-means).

Hidden layer ``ℓ`` (width ``n``) read as a kernel, with ReLU's positive homogeneity used to put
each neuron's outgoing weight onto its input side: neuron ``j``'s row is
``s_j · [W_ℓ[j, :] · μ + b_ℓ[j] | W_ℓ[j, :] ⊙ σ]`` with ``s_j = ‖W_{ℓ+1}[:, j]‖₂`` and ``μ``, ``σ``
the per-coordinate mean and spread of the layer's inputs (:func:`hidden_kernel`); the distance of
two rows is the RMS difference of their rescaled pre-activations ``u_j = s_j (W_ℓ[j] · h + b_ℓ[j])``.
A partition of the neurons is found

- by **weak regularity**: Frieze–Kannan rectangles of that kernel are added while the common
  refinement of their row sets has at most ``parts`` atoms; the atoms are the parts;
- by **k-means** on the rows (the baseline; Lloyd's algorithm with k-means++ seeding).

Each part ``P`` is merged into one neuron ``(Σ_P d_j) σ(mean_P u_j)`` (``d_j`` the unit outgoing
direction): rescaled incoming weights and biases **averaged**, outgoing directions **summed**; the
output moves by at most ``Σ_P |u_j − mean_P u_j|``. Singleton parts keep their neuron unchanged,
so ``parts = width`` is exact. Features and errors use a sample of the input cube
``[0, 1]^{d0}`` or, better for a trained network, given inputs from its data distribution.
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
    rectangle would overshoot; k-means merges duplicate rows). All errors are over the
    measurement inputs; ``relative_rms_error`` is ``RMS(f − g) / RMS(f − mean f)`` there, so it
    is only meaningful where the network's output varies on those inputs (pass samples of the
    distribution the network was trained on).
    """

    model: MLP
    parts_used: tuple[int, ...]
    mean_error: float
    max_error: float
    rms_error: float
    relative_rms_error: float


def _layer_inputs(
    layers: Sequence[tuple[torch.Tensor, torch.Tensor]], inputs: torch.Tensor, index: int
) -> torch.Tensor:
    """The inputs of ``layers[index]`` when the network is fed ``inputs`` (float64)."""
    h = inputs.to(torch.float64)
    for weight, bias in layers[:index]:
        h = torch.relu(h @ weight.T + bias)
    return h


def outgoing_scales(
    layers: Sequence[tuple[torch.Tensor, torch.Tensor]], index: int
) -> torch.Tensor:
    """``s_j = ‖W_{ℓ+1}[:, j]‖₂``: how much hidden neuron ``j`` of layer ``index`` moves the output."""
    return layers[index + 1][0].norm(dim=0)


def hidden_kernel(
    layers: Sequence[tuple[torch.Tensor, torch.Tensor]],
    index: int,
    inputs: torch.Tensor | None = None,
) -> torch.Tensor:
    """The neuron features (kernel rows) of hidden layer ``index`` (the output of ``layers[index]``).

    ReLU is positively homogeneous, so neuron ``j`` equals ``d_j · σ(u_j)`` with the rescaled
    pre-activation ``u_j(h) = s_j (W_ℓ[j, :] · h + b_ℓ[j])``, ``s_j = ‖W_{ℓ+1}[:, j]‖₂`` (its
    outgoing weights) and the unit outgoing direction ``d_j = W_{ℓ+1}[:, j] / s_j``. Merging a
    part ``P`` into ``(Σ_P d_j) σ(mean_P u_j)`` changes the output by at most
    ``Σ_P |u_j − mean_P u_j|`` pointwise, so neurons are compared by their rescaled
    pre-activations on the layer's input distribution. Row ``j`` is
    ``s_j · [W_ℓ[j, :] · μ + b_ℓ[j] | W_ℓ[j, :] ⊙ σ]`` with ``μ``, ``σ`` the per-coordinate mean
    and standard deviation of the layer's inputs (for a B-dense layer, ``W = V / fan_in`` with
    ``|V| ≤ B``: fan-in-scaled incoming weights and the bias, weighted by the outgoing weights).
    The squared distance of two rows is the mean squared difference of their rescaled
    pre-activations when input coordinates are uncorrelated (true for the uniform cube and for the
    witness family). ``inputs`` are samples of the *network's* input (default: 2048 uniform points
    of ``[0, 1]^{d0}``, seed 0); deeper layers see them through the original network.
    """
    weight_in, bias = layers[index]
    if inputs is None:
        generator = torch.Generator().manual_seed(0)
        inputs = torch.rand(2048, layers[0][0].shape[1], generator=generator)
    h = _layer_inputs(layers, inputs, index)
    mean, std = h.mean(0), h.std(0, correction=0)
    scale = outgoing_scales(layers, index)
    return scale[:, None] * torch.cat([(weight_in @ mean + bias)[:, None], weight_in * std], 1)


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
    """Merge each part into ``(Σ_P d_j) σ(mean_P u_j)`` (see :func:`hidden_kernel`).

    Singleton parts keep their neuron's weights unchanged (no rescaling), so a partition into
    single neurons reproduces the network bit for bit.
    """
    merged = []
    previous = None  # (n_{ℓ−1} × k_{ℓ−1} one-hot, 1 / scale per neuron of layer ℓ−1)
    for index, (weight, bias) in enumerate(layers):
        if previous is not None:
            onehot, inverse = previous
            weight = (weight * inverse[None, :]) @ onehot
        if index < len(partitions):
            onehot = nn.functional.one_hot(partitions[index]).to(torch.float64)
            counts = onehot.sum(0)
            scale = outgoing_scales(layers, index)
            # Neurons alone in their part are not rescaled; a neuron with no outgoing weight
            # enters its part's average as u_j = 0 (it contributes nothing either way).
            alone = counts[partitions[index]] == 1
            scale = torch.where(alone, torch.ones_like(scale), scale)
            inverse = torch.where(scale == 0, torch.zeros_like(scale), 1.0 / scale)
            average = (onehot / counts).T
            weight, bias = average @ (scale[:, None] * weight), average @ (scale * bias)
            previous = (onehot, inverse)
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
    count for every hidden layer or one per hidden layer, each in ``[1, width]``. The neuron
    features (:func:`hidden_kernel`) and the errors use ``inputs`` if given, else ``samples``
    uniform points of ``[0, 1]^{d0}``; for a trained network pass samples of its data.
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
    if inputs is None:
        check_int_in_range("samples", samples, 1)
        generator = torch.Generator().manual_seed(seed)
        inputs = torch.rand(samples, layers[0][0].shape[1], generator=generator)
    else:
        check_floating("inputs", inputs)
        check_finite("inputs", inputs)
    partitions = [
        partition_neurons(hidden_kernel(layers, i, inputs), count, method=method, seed=seed)
        for i, count in enumerate(counts)
    ]
    compressed = MLP.from_affine_layers(_merge(layers, partitions))
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
        rms_error=float(rms),
        relative_rms_error=float(rms / spread) if spread > 0 else float(rms),
    )
