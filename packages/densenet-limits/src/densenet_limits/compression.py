"""Compression of a ReLU network by partitioning its hidden neurons (weak regularity or k-means).

Hidden layer ``ℓ`` (width ``n``) read as a kernel, with ReLU's positive homogeneity used to put
each neuron's outgoing weight onto its input side: neuron ``j``'s row is
``s_j · [W_ℓ[j, :] · μ + b_ℓ[j] | W_ℓ[j, :] ⊙ σ]`` with ``s_j = ‖W_{ℓ+1}[:, j]‖₂`` and ``μ``, ``σ``
the per-coordinate mean and spread of the layer's inputs (:func:`hidden_kernel`); the distance of
two rows is the RMS difference of their rescaled pre-activations ``u_j = s_j (W_ℓ[j] · h + b_ℓ[j])``.
A partition of the neurons is found

- by **weak regularity**: the partition form of the lemma built by energy increment
  (:func:`kernelkit.cutnorm.weak_regularity_partition`): the neurons are refined by the row
  set of a large cut of the residual ``K − K_P`` until there are ``parts`` atoms (fewer only
  when fewer neurons have distinct rows);
- by **k-means** on the rows (the baseline; Lloyd's algorithm with k-means++ seeding).

Each part ``P`` is merged into one neuron ``(Σ_P d_j) σ(mean_P u_j)`` (``d_j`` the unit outgoing
direction): rescaled incoming weights and biases **averaged**, outgoing directions **summed**; the
output moves by at most ``Σ_P |u_j − mean_P u_j|``. Singleton parts keep their neuron unchanged,
so ``parts = width`` is exact. Features and errors use a sample of the input cube
``[0, 1]^{d0}`` or, better for a trained network, given inputs from its data distribution.

The **input layer** can be partitioned too (``input_parts``): the first layer read as a kernel
over the input coordinates (:func:`input_kernel`, row ``i`` = how coordinate ``i`` drives the
rescaled pre-activations), partitioned the same way, and the first layer's columns replaced by
their block averages. The compressed network then sees ``x`` only through the block averages
of its input coordinates, as in the theorem, so it cannot tell apart two inputs with equal block
averages (:func:`densenet_limits.block_average_pairs`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from densenet_limits.networks import MLP
from kernelkit.cutnorm import weak_regularity_partition
from kernelkit.validation import check_finite, check_floating, check_int_in_range, check_ndim

__all__ = [
    "METHODS",
    "CompressionResult",
    "compress",
    "hidden_kernel",
    "input_kernel",
    "kmeans",
    "partition_neurons",
]

METHODS = ("weak_regularity", "kmeans")


@dataclass(frozen=True)
class CompressionResult:
    """The merged network and its output error against the original on the sample.

    ``parts_used`` may be below the ``parts`` asked for only when fewer neurons have distinct
    feature rows (k-means also drops clusters that end up empty). ``input_labels`` is the
    partition of the input coordinates (``None`` unless ``input_parts`` was given) and
    ``input_parts_used`` its number of blocks. All errors are over the
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
    input_labels: torch.Tensor | None = None

    @property
    def input_parts_used(self) -> int | None:
        return None if self.input_labels is None else int(self.input_labels.max()) + 1


def _layer_inputs(
    layers: Sequence[tuple[torch.Tensor, torch.Tensor]], inputs: torch.Tensor, index: int
) -> torch.Tensor:
    """The inputs of ``layers[index]`` when the network is fed ``inputs`` (float64)."""
    h = inputs.to(torch.float64)
    for weight, bias in layers[:index]:
        h = torch.relu(h @ weight.T + bias)
    return h


def _measurement_inputs(
    layers: Sequence[tuple[torch.Tensor, torch.Tensor]],
    inputs: torch.Tensor | None,
    samples: int = 2048,
    seed: int = 0,
) -> torch.Tensor:
    """``inputs`` checked against the network's input width, or uniform samples of the cube."""
    d0 = layers[0][0].shape[1]
    if inputs is None:
        generator = torch.Generator().manual_seed(seed)
        return torch.rand(samples, d0, generator=generator)
    check_floating("inputs", inputs)
    if inputs.ndim != 2 or inputs.shape[1] != d0 or inputs.shape[0] == 0:
        raise ValueError(
            f"inputs must have shape (samples >= 1, {d0}) (the network's input width), got "
            f"{tuple(inputs.shape)}"
        )
    check_finite("inputs", inputs)
    return inputs


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
    check_int_in_range("index", index, 0, len(layers) - 2)
    weight_in, bias = layers[index]
    inputs = _measurement_inputs(layers, inputs)
    h = _layer_inputs(layers, inputs, index)
    mean, std = h.mean(0), h.std(0, correction=0)
    scale = outgoing_scales(layers, index)
    return scale[:, None] * torch.cat([(weight_in @ mean + bias)[:, None], weight_in * std], 1)


def input_kernel(
    layers: Sequence[tuple[torch.Tensor, torch.Tensor]], inputs: torch.Tensor | None = None
) -> torch.Tensor:
    """The first layer read as a kernel over the input coordinates (``d0 × n``).

    Row ``i`` is ``σ_i · s ⊙ W_1[:, i]``: how input coordinate ``i`` (spread ``σ_i`` on the
    sample) moves the rescaled pre-activations ``u_j = s_j (W_1[j] · x + b_1[j])`` of the first
    hidden layer (``s_j = ‖W_2[:, j]‖₂``, see :func:`hidden_kernel`). Replacing the columns of a
    block ``Q`` of inputs by their average moves ``u`` by ``Σ_{i∈Q} s ⊙ (W_1[:, i] − mean_Q)
    (x_i − μ)`` when the coordinates of ``Q`` share the mean ``μ``; for uncorrelated
    coordinates of equal spread (the cube, the witness family) its mean square is the squared
    distance of the rows to their block mean. ``inputs`` as in :func:`hidden_kernel`.
    """
    weight = layers[0][0]
    inputs = _measurement_inputs(layers, inputs)
    spread = inputs.to(torch.float64).std(0, correction=0)
    return spread[:, None] * (outgoing_scales(layers, 0)[:, None] * weight).T


def partition_neurons(
    kernel: torch.Tensor, parts: int, *, method: str = "weak_regularity", seed: int = 0
) -> torch.Tensor:
    """Labels ``0..p−1`` of the rows of ``kernel``; ``p = parts`` unless fewer rows differ.

    ``kernel`` is a finite float32/float64 ``(neurons, features)`` matrix."""
    check_floating("kernel", kernel, (torch.float32, torch.float64))
    check_ndim("kernel", kernel, 2)
    check_finite("kernel", kernel)
    width = kernel.shape[0]
    check_int_in_range("parts", parts, 1, width)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if parts == width:
        return torch.arange(width)
    generator = torch.Generator().manual_seed(seed)
    if method == "kmeans":
        return kmeans(kernel, parts, generator=generator)
    return weak_regularity_partition(kernel, parts, generator=generator)


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
    return _first_appearance(labels)


def _first_appearance(labels: torch.Tensor) -> torch.Tensor:
    """Relabel ``labels`` as ``0..p−1`` in order of first appearance (dropping unused labels)."""
    _, inverse = torch.unique(labels, return_inverse=True)
    count = int(inverse.max()) + 1
    first = torch.full((count,), labels.shape[0], dtype=torch.int64)
    first.scatter_reduce_(0, inverse, torch.arange(labels.shape[0]), reduce="amin")
    relabel = torch.empty(count, dtype=torch.int64)
    relabel[torch.argsort(first)] = torch.arange(count)
    return relabel[inverse]


def _average_input_blocks(weight: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``weight`` with each column replaced by the mean column of its block of inputs."""
    onehot = nn.functional.one_hot(labels).to(torch.float64)
    return (weight @ onehot / onehot.sum(0)) @ onehot.T


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
    input_parts: int | None = None,
) -> CompressionResult:
    """Merge each hidden layer of ``model`` into at most ``parts`` neurons (see module doc).

    ``model`` is any network of this package (it needs ``affine_layers()``); ``parts`` is one
    count for every hidden layer or one per hidden layer, each in ``[1, width]``. With
    ``input_parts`` in ``[1, d0]`` the input coordinates are partitioned too (same ``method``,
    on :func:`input_kernel`) and the first layer reads only their block averages; ``parts =
    width`` and ``input_parts = d0`` reproduce the network exactly. The features and the errors
    use ``inputs`` if given, else ``samples`` uniform points of ``[0, 1]^{d0}``; for a trained
    network pass samples of its data.
    """
    if not hasattr(model, "affine_layers"):
        raise TypeError(f"model must be a DenseMLP, SparseMLP or MLP, got {type(model).__name__}")
    layers = model.affine_layers()
    hidden = [w.shape[0] for w, _ in layers[:-1]]
    if not hidden:
        raise ValueError("model must have at least one hidden layer to compress")
    if not isinstance(parts, int | Sequence) or isinstance(parts, str):
        raise TypeError(f"parts must be an int or a sequence of ints, got {parts!r}")
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
    inputs = _measurement_inputs(layers, inputs, samples, seed)
    input_labels = None
    if input_parts is not None:
        check_int_in_range("input_parts", input_parts, 1, layers[0][0].shape[1])
    partitions = [
        partition_neurons(hidden_kernel(layers, i, inputs), count, method=method, seed=seed)
        for i, count in enumerate(counts)
    ]
    if input_parts is not None:
        input_labels = partition_neurons(
            input_kernel(layers, inputs), input_parts, method=method, seed=seed
        )
        # Averaging columns within input blocks commutes with averaging rows within neuron
        # parts, so the two merges can be applied one after the other.
        first_weight, first_bias = layers[0]
        layers = [(_average_input_blocks(first_weight, input_labels), first_bias), *layers[1:]]
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
        input_labels=input_labels,
    )
