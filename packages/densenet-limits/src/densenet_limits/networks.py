"""ReLU networks with dense weights, and the unconstrained and sparse networks they are compared to.

A layer with fan-in ``d`` is **B-dense** when ``|W_ij| ≤ B / d`` and ``|b_i| ≤ B``; equivalently
``h = σ((1/d) V x + b)`` with ``|V|, |b| ≤ B``, where ``V = d · W`` is the layer read as a
step kernel on ``[0, 1]²`` (the normalised weights). Two ways to keep a layer in that box:

- ``parametrization="tanh"`` (default): ``W = (B/d) tanh(V_raw)``, ``b = B tanh(c_raw)``; any
  optimiser step stays inside the box and Adam's step size is independent of ``B / d``;
- ``parametrization="clamp"``: raw ``W, b`` projected onto the box after every optimiser step
  (:meth:`DenseLinear.project_`), with per-parameter learning rates proportional to the bound
  (:func:`parameter_groups`); a fixed learning rate against a box of width ``B / d`` would make
  saturation partly an optimiser artefact (the authors' code uses Adam 1e-3 against 10/2048).

All networks expose :meth:`affine_layers` (the effective ``(W, b)`` per layer), which is what
:func:`densenet_limits.compress` reads, and save/load as safetensors through kernelkit.io.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from kernelkit.io import load_artifact, save_artifact
from kernelkit.validation import (
    check_finite,
    check_floating,
    check_int_in_range,
    check_ndim,
    check_real_in_range,
)


def check_network_input(name: str, x: object, module: nn.Module) -> None:
    """A floating tensor with a feature axis of ``module``'s input width, in the dtype of its
    parameters."""
    check_floating(name, x)
    if x.ndim < 1:
        raise ValueError(f"{name} must have a feature axis, got a 0-d tensor")
    parameter = next(module.parameters(), None)
    if parameter is not None and x.dtype != parameter.dtype:
        raise TypeError(f"{name} must have the network's dtype {parameter.dtype}, got {x.dtype}")
    widths = getattr(module, "widths", None)
    expected = widths[0] if widths is not None else getattr(module, "in_features", None)
    if expected is not None and x.shape[-1] != expected:
        raise ValueError(
            f"{name} must have last dimension {expected} (the input width), got shape "
            f"{tuple(x.shape)}"
        )


def check_batch(model: nn.Module, inputs: object, name: str = "inputs") -> None:
    """A non-empty, finite ``(N, d0)`` batch for ``model`` (its input width, its dtype)."""
    check_network_input(name, inputs, model)
    check_ndim(name, inputs, 2)
    if inputs.shape[0] == 0:
        raise ValueError(f"{name} must hold at least one row, got shape {tuple(inputs.shape)}")
    check_finite(name, inputs)


__all__ = [
    "MLP",
    "PARAMETRIZATIONS",
    "DenseLinear",
    "DenseMLP",
    "FanInOneLinear",
    "SparseMLP",
    "load_network",
    "parameter_groups",
]

PARAMETRIZATIONS = ("tanh", "clamp")
# Raw parameters start uniform in ±_INIT_RAW, so effective values start inside ±tanh(1)·bound
# and biases spread the ReLU kinks (zero biases with nonnegative inputs leave ReLUs dead).
_INIT_RAW = 1.0
_BIAS_INIT_RAW = 0.5


def _check_bound(bound: object) -> float:
    if isinstance(bound, bool) or not isinstance(bound, int | float):
        raise TypeError(f"bound must be a number, got {type(bound).__name__} ({bound!r})")
    if not (math.isfinite(bound) and bound > 0):
        raise ValueError(f"bound must be a finite number > 0, got {bound}")
    return float(bound)


def _check_widths(widths: Sequence[int]) -> tuple[int, ...]:
    if isinstance(widths, str | bytes) or not isinstance(widths, Sequence) or len(widths) < 2:
        raise ValueError(
            f"widths must be a sequence of at least 2 layer sizes (input, ..., output), got {widths!r}"
        )
    for index, width in enumerate(widths):
        check_int_in_range(f"widths[{index}]", width, 1)
    return tuple(int(w) for w in widths)


def _check_parametrization(parametrization: str) -> str:
    if parametrization not in PARAMETRIZATIONS:
        raise ValueError(
            f"parametrization must be one of {PARAMETRIZATIONS}, got {parametrization!r}"
        )
    return parametrization


class DenseLinear(nn.Module):
    """An affine layer with ``|W| ≤ bound / in_features`` and ``|b| ≤ bound`` (see module doc)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bound: float,
        *,
        parametrization: str = "tanh",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        check_int_in_range("in_features", in_features, 1)
        check_int_in_range("out_features", out_features, 1)
        self.in_features, self.out_features = in_features, out_features
        self.bound = _check_bound(bound)
        self.parametrization = _check_parametrization(parametrization)
        raw_weight = (
            torch.rand(out_features, in_features, generator=generator) * 2 - 1
        ) * _INIT_RAW
        raw_bias = (torch.rand(out_features, generator=generator) * 2 - 1) * _BIAS_INIT_RAW
        if parametrization == "clamp":
            # Same initial distribution as the tanh form, stored directly.
            raw_weight = self.weight_bound * torch.tanh(raw_weight)
            raw_bias = self.bound * torch.tanh(raw_bias)
        self.raw_weight = nn.Parameter(raw_weight)
        self.raw_bias = nn.Parameter(raw_bias)

    @property
    def weight_bound(self) -> float:
        return self.bound / self.in_features

    @property
    def weight(self) -> torch.Tensor:
        if self.parametrization == "tanh":
            return self.weight_bound * torch.tanh(self.raw_weight)
        return self.raw_weight

    @property
    def bias(self) -> torch.Tensor:
        if self.parametrization == "tanh":
            return self.bound * torch.tanh(self.raw_bias)
        return self.raw_bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x[..., in_features]`` through the layer; NaN propagates, as in ``nn.Linear``."""
        check_network_input("x", x, self)
        return nn.functional.linear(x, self.weight, self.bias)

    @torch.no_grad()
    def project_(self) -> None:
        """Clamp raw parameters onto the box (clamp form; a no-op for the tanh form)."""
        if self.parametrization == "clamp":
            self.raw_weight.clamp_(-self.weight_bound, self.weight_bound)
            self.raw_bias.clamp_(-self.bound, self.bound)

    def learning_rate_scales(self) -> dict[str, float]:
        """Per-parameter learning-rate multipliers: the bound for clamped raw values, else 1."""
        if self.parametrization == "clamp":
            return {"raw_weight": self.weight_bound, "raw_bias": self.bound}
        return {"raw_weight": 1.0, "raw_bias": 1.0}

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bound={self.bound}, parametrization={self.parametrization}"
        )


class FanInOneLinear(nn.Module):
    """Neuron ``j`` reads input coordinate ``j mod in_features`` only: ``w_j x_{j mod d} + b_j``.

    ``|w_j|, |b_j| ≤ bound`` through ``bound · tanh``; the sparse first layer of :class:`SparseMLP`.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bound: float,
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        check_int_in_range("in_features", in_features, 1)
        check_int_in_range("out_features", out_features, 1)
        self.in_features, self.out_features = in_features, out_features
        self.bound = _check_bound(bound)
        self.register_buffer("source", torch.arange(out_features) % in_features, persistent=False)
        self.raw_weight = nn.Parameter(torch.rand(out_features, generator=generator) * 2 - 1)
        self.raw_bias = nn.Parameter(
            (torch.rand(out_features, generator=generator) * 2 - 1) * _BIAS_INIT_RAW
        )

    @property
    def weight(self) -> torch.Tensor:
        """The equivalent dense ``out × in`` matrix (one nonzero per row)."""
        dense = torch.zeros(self.out_features, self.in_features, dtype=self.raw_weight.dtype)
        values = self.bound * torch.tanh(self.raw_weight)
        return dense.index_put((torch.arange(self.out_features), self.source), values)

    @property
    def bias(self) -> torch.Tensor:
        return self.bound * torch.tanh(self.raw_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x[..., in_features]`` through the layer; NaN propagates, as in ``nn.Linear``."""
        check_network_input("x", x, self)
        if x.shape[-1] != self.in_features:
            raise ValueError(
                f"x must have last dimension {self.in_features}, got shape {tuple(x.shape)}"
            )
        return x[..., self.source] * (self.bound * torch.tanh(self.raw_weight)) + self.bias

    def project_(self) -> None:
        """Nothing to project: the tanh form keeps the parameters in their box."""

    def learning_rate_scales(self) -> dict[str, float]:
        return {"raw_weight": 1.0, "raw_bias": 1.0}


class _ReLUNetwork(nn.Module):
    """ReLU between layers, none after the last; shared save/load and layer access."""

    layers: nn.ModuleList
    widths: tuple[int, ...]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The network on ``x[..., d0]``; NaN propagates, as in any torch layer."""
        check_network_input("x", x, self)
        for index, layer in enumerate(self.layers):
            x = layer(x)
            if index < len(self.layers) - 1:
                x = torch.relu(x)
        return x

    def affine_layers(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The effective ``(W, b)`` of every layer, detached, in float64."""
        return [
            (layer.weight.detach().to(torch.float64), layer.bias.detach().to(torch.float64))
            for layer in self.layers
        ]

    @torch.no_grad()
    def project_(self) -> None:
        """Bring every constrained layer back into its box (after an optimiser step)."""
        for layer in self.layers:
            if hasattr(layer, "project_"):
                layer.project_()

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write ``manifest.json`` + ``tensors.safetensors`` (atomic) into ``directory``."""
        tensors = {name: value.detach() for name, value in self.state_dict().items()}
        return save_artifact(
            directory,
            tensors,
            {"class": type(self).__name__, **self.config()},
            kind="densenet-limits-network",
        )


class DenseMLP(_ReLUNetwork):
    """A ReLU network whose every layer is B-dense: ``|W| ≤ B / fan_in`` and ``|b| ≤ B``."""

    def __init__(
        self,
        widths: Sequence[int],
        bound: float,
        *,
        parametrization: str = "tanh",
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.widths = _check_widths(widths)
        self.bound = _check_bound(bound)
        self.parametrization = _check_parametrization(parametrization)
        self.seed = seed
        generator = torch.Generator().manual_seed(seed)
        self.layers = nn.ModuleList(
            DenseLinear(a, b, bound, parametrization=parametrization, generator=generator)
            for a, b in zip(self.widths[:-1], self.widths[1:], strict=True)
        )

    def config(self) -> dict:
        return {
            "widths": list(self.widths),
            "bound": self.bound,
            "parametrization": self.parametrization,
            "seed": self.seed,
        }


class SparseMLP(_ReLUNetwork):
    """A fan-in-1 first layer (``|w|, |b| ≤ B``) followed by B-dense layers (tanh form)."""

    def __init__(self, widths: Sequence[int], bound: float, *, seed: int = 0) -> None:
        super().__init__()
        self.widths = _check_widths(widths)
        if len(self.widths) < 3:
            raise ValueError(
                f"widths must have at least one hidden layer for SparseMLP, got {self.widths}"
            )
        self.bound = _check_bound(bound)
        self.seed = seed
        generator = torch.Generator().manual_seed(seed)
        first = FanInOneLinear(self.widths[0], self.widths[1], bound, generator=generator)
        rest = [
            DenseLinear(a, b, bound, generator=generator)
            for a, b in zip(self.widths[1:-1], self.widths[2:], strict=True)
        ]
        self.layers = nn.ModuleList([first, *rest])

    def config(self) -> dict:
        return {"widths": list(self.widths), "bound": self.bound, "seed": self.seed}


class MLP(_ReLUNetwork):
    """An unconstrained ReLU network (``nn.Linear`` layers with PyTorch's default init)."""

    def __init__(self, widths: Sequence[int], *, seed: int = 0) -> None:
        super().__init__()
        self.widths = _check_widths(widths)
        self.seed = seed
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.layers = nn.ModuleList(
                nn.Linear(a, b) for a, b in zip(self.widths[:-1], self.widths[1:], strict=True)
            )

    @classmethod
    def from_affine_layers(cls, layers: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> MLP:
        """An MLP with exactly these ``(W, b)`` (float64 tensors become float32 parameters)."""
        if not layers:
            raise ValueError("layers must hold at least one (W, b) pair")
        widths = [layers[0][0].shape[1]] + [w.shape[0] for w, _ in layers]
        for index, (weight, bias) in enumerate(layers):
            if weight.shape != (widths[index + 1], widths[index]) or bias.shape != (
                widths[index + 1],
            ):
                raise ValueError(
                    f"layers[{index}] has W {tuple(weight.shape)} and b {tuple(bias.shape)}; "
                    f"expected ({widths[index + 1]}, {widths[index]}) and ({widths[index + 1]},)"
                )
        model = cls(widths)
        with torch.no_grad():
            for layer, (weight, bias) in zip(model.layers, layers, strict=True):
                layer.weight.copy_(weight)
                layer.bias.copy_(bias)
        return model

    def config(self) -> dict:
        return {"widths": list(self.widths), "seed": self.seed}


def parameter_groups(model: nn.Module, lr: float) -> list[dict]:
    """Adam parameter groups: ``lr`` times each parameter's bound scale (1 where unconstrained)."""
    check_real_in_range("lr", lr, 0.0)
    groups: list[dict] = []
    seen: set[int] = set()
    for module in model.modules():
        if hasattr(module, "learning_rate_scales"):
            for name, scale in module.learning_rate_scales().items():
                parameter = getattr(module, name)
                seen.add(id(parameter))
                groups.append({"params": [parameter], "lr": lr * scale})
    rest = [p for p in model.parameters() if id(p) not in seen]
    if rest:
        groups.append({"params": rest, "lr": lr})
    return groups


_CLASSES = {"DenseMLP": DenseMLP, "SparseMLP": SparseMLP, "MLP": MLP}


def load_network(directory: str | os.PathLike) -> DenseMLP | SparseMLP | MLP:
    """Load a network written by ``save_pretrained`` (shapes checked against its config)."""
    tensors, config = load_artifact(directory, kind="densenet-limits-network")
    name = config.pop("class", None)
    if name not in _CLASSES:
        raise ValueError(f"artifact {str(directory)!r} holds an unknown network class {name!r}")
    model = _CLASSES[name](**config)
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    found = {key: tuple(value.shape) for key, value in tensors.items()}
    if expected != found:
        raise ValueError(
            f"artifact {str(directory)!r} tensors {found} do not match its config {expected}"
        )
    model.load_state_dict(tensors)
    return model
