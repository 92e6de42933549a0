"""Neural-network modules written once for both uses: traced (parameters as graph nodes, for the
projection optimisers) and plain (tensors, for evaluation and Adam through autograd).

A module declares its parameters; ``init(generator)`` returns a flat dict of tensors named
``"<child>.<name>"``, and ``module(params, x)`` runs it with either tensors or nodes. As in the
paper's code, ``Linear`` has no bias: the bias lives in the activation (``ReLU`` is the fused
bias + sum + ReLU constraint), which keeps an MLP's graph 2-colourable.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Literal

import torch

from kernelkit.validation import check_index_range
from pjax_torch import api

__all__ = [
    "CNN",
    "MLP",
    "Conv2d",
    "Embedding",
    "Linear",
    "Module",
    "RNNCell",
    "RNNClassifier",
    "ReLU",
    "Sign",
]


class _Scope(Mapping):
    """The parameters under ``prefix.``, addressed by their local names."""

    def __init__(self, params: Mapping, prefix: str):
        self.params, self.prefix = params, prefix

    def __getitem__(self, key: str):
        return self.params[f"{self.prefix}.{key}"]

    def __iter__(self) -> Iterator[str]:
        start = f"{self.prefix}."
        return (k[len(start) :] for k in self.params if k.startswith(start))

    def __len__(self) -> int:
        return sum(1 for _ in self)


class Module:
    """Base class: ``parameters`` maps local names to (shape, initialiser); children are
    attributes that are modules (or lists of modules)."""

    def parameters(self) -> dict[str, tuple[tuple[int, ...], Literal["he", "zeros", "normal"]]]:
        return {}

    def children(self) -> dict[str, Module]:
        found: dict[str, Module] = {}
        for name, value in vars(self).items():
            if isinstance(value, Module):
                found[name] = value
            elif isinstance(value, list | tuple):
                found.update(
                    {f"{name}.{i}": v for i, v in enumerate(value) if isinstance(v, Module)}
                )
        return found

    def init(
        self, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32
    ) -> dict[str, torch.Tensor]:
        """Fresh parameters: He-normal weights (std √(2/fan_in)), zero biases."""
        params: dict[str, torch.Tensor] = {}
        for name, (shape, kind) in self.parameters().items():
            if kind == "zeros":
                params[name] = torch.zeros(shape, dtype=dtype)
            else:
                values = torch.randn(shape, generator=generator, dtype=dtype)
                params[name] = values * (2.0 / shape[0]) ** 0.5 if kind == "he" else values
        for child_name, child in self.children().items():
            for name, value in child.init(generator, dtype).items():
                params[f"{child_name}.{name}"] = value
        return params

    def scope(self, params: Mapping, name: str) -> Mapping:
        return _Scope(params, name)

    def __call__(self, params: Mapping, *inputs):
        raise NotImplementedError


class Linear(Module):
    """``x @ weight`` with ``weight`` of shape (in_features, out_features); no bias."""

    def __init__(self, in_features: int, out_features: int):
        self.in_features, self.out_features = in_features, out_features

    def parameters(self):
        return {"weight": ((self.in_features, self.out_features), "he")}

    def __call__(self, params, x):
        return api.matmul(x, params["weight"])


class ReLU(Module):
    """``relu(x + bias)`` as one fused constraint; ``bias`` has shape (features,)."""

    def __init__(self, features: int):
        self.features = features

    def parameters(self):
        return {"bias": ((self.features,), "zeros")}

    def __call__(self, params, x):
        bias = params["bias"]
        if x.ndim == 4:  # (batch, channels, H, W): one bias per channel
            bias = api.reshape(bias, [self.features, 1, 1])
        return api.sum_relu(x, bias)


class Sign(Module):
    """``sign(x + bias)``: a non-differentiable unit, a constraint with an exact projection.

    With plain tensors ``straight_through=True`` gives the STE baseline's gradients."""

    def __init__(self, features: int, straight_through: bool = False):
        self.features, self.straight_through = features, straight_through

    def parameters(self):
        return {"bias": ((self.features,), "zeros")}

    def __call__(self, params, x):
        return api.sign(api.add(x, params["bias"]), straight_through=self.straight_through)


class Conv2d(Module):
    """Convolution as patches times a weight: (B, C, H, W) → (B, out_channels, H', W'); no bias."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
    ):
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding

    def parameters(self):
        fan_in = self.in_channels * self.kernel_size**2
        return {"weight": ((fan_in, self.out_channels), "he")}

    def __call__(self, params, x):
        batch, _, height, width = x.shape
        patches = api.conv_patches(x, self.kernel_size, self.stride, self.padding)
        out = api.matmul(patches, params["weight"])  # (B, positions, out_channels)
        out_h = (height + 2 * self.padding - self.kernel_size) // self.stride + 1
        out_w = (width + 2 * self.padding - self.kernel_size) // self.stride + 1
        return api.reshape(api.permute(out, [0, 2, 1]), [batch, self.out_channels, out_h, out_w])


class Embedding(Module):
    """Rows of a (num_embeddings, features) table; repeated tokens average their copies."""

    def __init__(self, num_embeddings: int, features: int):
        self.num_embeddings, self.features = num_embeddings, features

    def parameters(self):
        return {"weight": ((self.num_embeddings, self.features), "normal")}

    def __call__(self, params, tokens):
        check_index_range("tokens", tokens, self.num_embeddings)
        return api.index(params["weight"], tokens)


class RNNCell(Module):
    """``h' = relu(x W_x + h W_h + bias)``, the hidden state as one fused constraint."""

    def __init__(self, input_size: int, hidden_size: int):
        self.input = Linear(input_size, hidden_size)
        self.hidden = Linear(hidden_size, hidden_size)
        self.hidden_size = hidden_size

    def parameters(self):
        return {"bias": ((self.hidden_size,), "zeros")}

    def __call__(self, params, x, h):
        return api.sum_relu(
            self.input(self.scope(params, "input"), x),
            self.hidden(self.scope(params, "hidden"), h),
            params["bias"],
        )


class MLP(Module):
    """Linear → activation blocks, then a linear read-out.

    ``skip=True`` feeds the concatenation of every hidden output to the read-out (the paper
    code's ``--skip``), which shortens the path from the output constraint to each layer.
    """

    def __init__(
        self,
        sizes: list[int] | tuple[int, ...],
        activation: Literal["relu", "sign"] = "relu",
        skip: bool = False,
        straight_through: bool = False,
    ):
        if len(sizes) < 2 or any(
            isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in sizes
        ):
            raise ValueError(f"sizes must be at least two positive ints, got {sizes!r}")
        if activation not in ("relu", "sign"):
            raise ValueError(f"activation must be 'relu' or 'sign', got {activation!r}")
        hidden = list(sizes[1:-1])
        self.layers = [Linear(a, b) for a, b in zip(sizes[:-2], hidden, strict=True)]
        self.activations = [
            ReLU(h) if activation == "relu" else Sign(h, straight_through) for h in hidden
        ]
        self.skip = skip
        readout_in = sum(hidden) if skip and hidden else sizes[-2]
        self.readout = Linear(readout_in, sizes[-1])

    def __call__(self, params, x):
        features = []
        for i, (layer, activation) in enumerate(zip(self.layers, self.activations, strict=True)):
            x = activation(
                self.scope(params, f"activations.{i}"), layer(self.scope(params, f"layers.{i}"), x)
            )
            features.append(x)
        if self.skip and len(features) > 1:
            x = api.concatenate(features, -1)
        return self.readout(self.scope(params, "readout"), x)


class CNN(Module):
    """conv(3×3, padding 1) → ReLU → 2×2 max-pool → linear read-out, for (B, C, H, W) images."""

    def __init__(self, in_channels: int, channels: int, image_size: int, classes: int):
        self.conv = Conv2d(in_channels, channels, 3, padding=1)
        self.activation = ReLU(channels)
        self.channels, self.pooled = channels, image_size // 2
        self.readout = Linear(channels * self.pooled**2, classes)

    def __call__(self, params, x):
        h = self.activation(
            self.scope(params, "activation"), self.conv(self.scope(params, "conv"), x)
        )
        h = api.max_pool2d(h, 2)
        h = api.reshape(h, [h.shape[0], self.channels * self.pooled**2])
        return self.readout(self.scope(params, "readout"), h)


class RNNClassifier(Module):
    """An Elman RNN over (B, T, input_size) sequences; the last hidden state is read out."""

    def __init__(self, input_size: int, hidden_size: int, classes: int):
        self.cell = RNNCell(input_size, hidden_size)
        self.readout = Linear(hidden_size, classes)
        self.hidden_size = hidden_size

    def __call__(self, params, x: torch.Tensor):
        if not isinstance(x, torch.Tensor) or x.ndim != 3:
            raise ValueError(f"x must be a (batch, steps, features) data tensor, got {x!r:.80}")
        h = x.new_zeros(x.shape[0], self.hidden_size)
        for t in range(x.shape[1]):
            h = self.cell(self.scope(params, "cell"), x[:, t], h)
        return self.readout(self.scope(params, "readout"), h)
