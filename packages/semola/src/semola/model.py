"""SEMoLA around any ``nn.Module``, and the baselines trained in the same harness.

Every trainer here has ``compute_loss(x, y, task_loss) -> LossTerms`` and ``forward(x)`` (the
prediction used at test time), so :func:`semola.training.fit` treats them alike:

- :class:`SEMoLA`: base model plus a learnable :class:`LieAugmenter`, the five-term loss;
- :class:`PlainModel`: the base model alone, task loss only (no augmentation);
- :class:`AugmentedTraining`: ordinary data augmentation from a given augmenter: with a fixed
  ground-truth basis it is the ground-truth-augmentation baseline; with a fixed basis of affine
  generators and learned ranges plus a reward on the ranges it is Augerino;
- :class:`LieGAN`: LieGAN-style adversarial discovery. The augmenter is the generator of a GAN
  whose discriminator tells transformed pairs ``(g x, rho(g) y)`` from original pairs ``(x, y)``;
  the base model trains on views augmented with the group found so far.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from kernelkit.validation import check_finite, check_floating, check_int_in_range, check_tensor
from semola.actions import GroupAction
from semola.augmenter import LieAugmenter
from semola.loss import (
    SEMoLALossConfig,
    augmentation_loss,
    equivariance_loss,
    orthogonality_loss,
    sparsity_loss,
)

__all__ = ["AugmentedTraining", "LieGAN", "LossTerms", "PlainModel", "SEMoLA", "pair_discriminator"]

TaskLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class LossTerms:
    """The total loss and its parts (unweighted), for logging."""

    total: torch.Tensor
    parts: dict[str, float] = field(default_factory=dict)


def check_model_input(name: str, x: torch.Tensor, model: nn.Module) -> None:
    """A finite floating batch ``(B, ...)`` with no zero-size dimension, in the dtype of ``model``'s parameters.

    NaN inputs raise rather than propagate: one NaN sample turns the whole batch's loss (and
    every parameter after the step) into NaN.
    """
    check_floating(name, x)
    if x.ndim < 1 or x.numel() == 0:
        raise ValueError(
            f"{name} must hold a non-empty batch (B, ...) with no zero-size dimension, got "
            f"{tuple(x.shape)}"
        )
    parameter = next(model.parameters(), None)
    if parameter is not None and parameter.dtype != x.dtype:
        raise TypeError(f"{name} must have the model's dtype {parameter.dtype}, got {x.dtype}")
    check_finite(name, x)


def _check_batch(x: torch.Tensor, y: torch.Tensor, model: nn.Module) -> None:
    """Inputs as :func:`check_model_input`; targets finite floats or class ids ``>= 0``."""
    check_model_input("x", x, model)
    check_tensor("y", y)
    if y.ndim < 1 or x.shape[0] != y.shape[0]:
        raise ValueError(
            f"x and y must have the same batch size, got shapes {tuple(x.shape)} and {tuple(y.shape)}"
        )
    if y.is_floating_point():
        check_finite("y", y)  # a NaN target is an error, never a value to fit
    elif y.dtype == torch.bool:
        raise TypeError("y must hold float targets or integer class ids, got torch.bool")
    elif bool((y < 0).any()):
        raise ValueError(f"y must hold class ids >= 0, got {int(y.min())}")


def forward_checked(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``model(x)``, with a shape mismatch inside the model reported as a bad ``x``.

    The base model is any module, so its expected input shape is known only by running it."""
    try:
        return model(x)
    except RuntimeError as exc:
        if not any(word in str(exc) for word in ("shape", "size")):
            raise
        raise ValueError(f"x of shape {tuple(x.shape)} does not fit the base model: {exc}") from exc


def _check_targets(outputs: torch.Tensor, y: torch.Tensor) -> None:
    """Targets that fit the predictions: the same shape, or one class id per row of logits."""
    if y.is_floating_point():
        if y.shape != outputs.shape:
            raise ValueError(
                f"y must have the shape of the model's outputs {tuple(outputs.shape)}, got"
                f" {tuple(y.shape)}"
            )
        return
    if outputs.ndim != 2 or y.shape != outputs.shape[:1]:
        raise ValueError(
            f"y (class ids) must have shape ({outputs.shape[0]},) for logits of shape"
            f" {tuple(outputs.shape)}, got {tuple(y.shape)}"
        )
    if bool((y >= outputs.shape[1]).any()):
        raise ValueError(
            f"y must hold class ids < {outputs.shape[1]} (the number of logits), got {int(y.max())}"
        )


def _moved_targets(
    y: torch.Tensor, elements: torch.Tensor, output_action: GroupAction | None
) -> torch.Tensor:
    """``rho(g) y`` for every view, flattened to ``(K * B, ...)``."""
    num_views = elements.shape[0]
    repeated = y.unsqueeze(0).expand(num_views, *y.shape).reshape(-1, *y.shape[1:])
    if output_action is None:
        return repeated
    return output_action(elements.reshape(-1, *elements.shape[2:]), repeated)


def _run_on_views(model: nn.Module, views: torch.Tensor, *, frozen: bool = False) -> torch.Tensor:
    flat = views.reshape(-1, *views.shape[2:])
    if frozen:
        # The model's parameters enter as constants: gradients reach the views (and through them
        # the generators) but not the model.
        params = {name: value.detach() for name, value in model.named_parameters()}
        outputs = functional_call(model, params, (flat,))
    else:
        outputs = model(flat)
    return outputs.reshape(views.shape[0], views.shape[1], *outputs.shape[1:])


class SEMoLA(nn.Module):
    """Soft equivariance to a symmetry discovered by a learnable Lie-algebra augmenter.

    Args:
        base_model: any module mapping a batch ``x`` to predictions ``(B, ...)``.
        augmenter: the :class:`LieAugmenter` (its action says how ``g`` moves the inputs).
        output_action: how ``g`` moves the outputs (``rho(g)``); ``None`` for invariant outputs.
        config: loss weights and ``K``.
        inference: ``"base"`` predicts with the base model alone (no extra cost); ``"average"``
            averages ``rho(g)^{-1} f(g x)`` over ``inference_views`` views and the original.
        inference_views: views averaged when ``inference="average"``.

    ``discovering`` (attribute, default ``False``; :func:`semola.training.fit` sets it during the
    first ``TrainConfig.discovery_steps`` steps): the equivariance term then trains only the
    generators. The model is held fixed inside that term and learns from the task alone, so it
    cannot co-adapt to the random initial generator before the generator has turned.
    """

    def __init__(
        self,
        base_model: nn.Module,
        augmenter: LieAugmenter,
        *,
        output_action: GroupAction | None = None,
        config: SEMoLALossConfig | None = None,
        inference: Literal["base", "average"] = "base",
        inference_views: int = 8,
    ) -> None:
        super().__init__()
        if not isinstance(base_model, nn.Module):
            raise TypeError(
                f"base_model must be a torch.nn.Module, got {type(base_model).__name__}"
            )
        if not isinstance(augmenter, LieAugmenter):
            raise TypeError(f"augmenter must be a LieAugmenter, got {type(augmenter).__name__}")
        if output_action is not None and output_action.dim != augmenter.dim:
            raise ValueError(
                f"output_action acts with {output_action.dim}x{output_action.dim} matrices,"
                f" the augmenter's group with {augmenter.dim}x{augmenter.dim}; they must match"
            )
        if inference not in ("base", "average"):
            raise ValueError(f"inference must be 'base' or 'average', got {inference!r}")
        check_int_in_range("inference_views", inference_views, 1)
        self.base_model, self.augmenter, self.output_action = base_model, augmenter, output_action
        self.config = config if config is not None else SEMoLALossConfig()
        self.inference, self.inference_views = inference, inference_views
        self.discovering = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.inference == "base":
            return self.base_model(x)
        augmented = self.augmenter(x, self.inference_views)
        outputs = _run_on_views(self.base_model, augmented.views)
        if self.output_action is not None:
            inverse = torch.linalg.inv(augmented.group_elements).reshape(
                -1, self.augmenter.dim, self.augmenter.dim
            )
            outputs = self.output_action(inverse, outputs.reshape(-1, *outputs.shape[2:])).reshape(
                outputs.shape
            )
        return torch.cat([self.base_model(x).unsqueeze(0), outputs]).mean(0)

    def compute_loss(self, x: torch.Tensor, y: torch.Tensor, task_loss: TaskLoss) -> LossTerms:
        """The five-term loss on one batch (see the module :mod:`semola.loss`)."""
        _check_batch(x, y, self.base_model)
        cfg = self.config
        augmented = self.augmenter(x, cfg.num_views)
        outputs = forward_checked(self.base_model, x)
        _check_targets(outputs, y)
        view_outputs = _run_on_views(self.base_model, augmented.views, frozen=self.discovering)
        task = task_loss(outputs, y)
        if cfg.task_on_views:
            moved = _moved_targets(y, augmented.group_elements, self.output_action)
            task = (task + task_loss(view_outputs.reshape(-1, *outputs.shape[1:]), moved)) / 2
        basis = self.augmenter.basis()
        equivariance = equivariance_loss(
            outputs.detach() if self.discovering else outputs,
            view_outputs,
            augmented.group_elements,
            self.output_action,
            form=cfg.equivariance_form,
        )
        anti_collapse = augmentation_loss(x, augmented.views, cfg.augmentation_margin)
        orthogonality = orthogonality_loss(basis)
        sparsity = sparsity_loss(basis)
        total = (
            task
            + cfg.equivariance_weight * equivariance
            + cfg.augmentation_weight * anti_collapse
            + cfg.orthogonality_weight * orthogonality
            + cfg.sparsity_weight * sparsity
        )
        parts = {
            "task": task.item(),
            "equivariance": equivariance.item(),
            "augmentation": anti_collapse.item(),
            "orthogonality": orthogonality.item(),
            "sparsity": sparsity.item(),
        }
        return LossTerms(total, parts)


class PlainModel(nn.Module):
    """The base model trained on the task loss alone (the no-augmentation baseline)."""

    def __init__(self, base_model: nn.Module) -> None:
        super().__init__()
        if not isinstance(base_model, nn.Module):
            raise TypeError(
                f"base_model must be a torch.nn.Module, got {type(base_model).__name__}"
            )
        self.base_model = base_model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base_model(x)

    def compute_loss(self, x: torch.Tensor, y: torch.Tensor, task_loss: TaskLoss) -> LossTerms:
        _check_batch(x, y, self.base_model)
        outputs = forward_checked(self.base_model, x)
        _check_targets(outputs, y)
        task = task_loss(outputs, y)
        return LossTerms(task, {"task": task.item()})


class AugmentedTraining(nn.Module):
    """Task loss on augmented views ``(g x, rho(g) y)``; optionally reward wider learned ranges.

    ``range_reward`` is Augerino's regulariser: the loss is ``task - range_reward * ||s||`` over
    the augmenter's coefficient scales ``s`` (only meaningful with ``learn_scale=True``).
    """

    def __init__(
        self,
        base_model: nn.Module,
        augmenter: LieAugmenter,
        *,
        output_action: GroupAction | None = None,
        num_views: int = 1,
        range_reward: float = 0.0,
    ) -> None:
        super().__init__()
        if not isinstance(base_model, nn.Module):
            raise TypeError(
                f"base_model must be a torch.nn.Module, got {type(base_model).__name__}"
            )
        if not isinstance(augmenter, LieAugmenter):
            raise TypeError(f"augmenter must be a LieAugmenter, got {type(augmenter).__name__}")
        check_int_in_range("num_views", num_views, 1)
        if not range_reward >= 0:
            raise ValueError(f"range_reward must be >= 0, got {range_reward!r}")
        self.base_model, self.augmenter, self.output_action = base_model, augmenter, output_action
        self.num_views, self.range_reward = num_views, float(range_reward)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base_model(x)

    def compute_loss(self, x: torch.Tensor, y: torch.Tensor, task_loss: TaskLoss) -> LossTerms:
        _check_batch(x, y, self.base_model)
        augmented = self.augmenter(x, self.num_views)
        outputs = self.base_model(augmented.views.reshape(-1, *x.shape[1:]))
        _check_targets(outputs[: x.shape[0]], y)
        task = task_loss(outputs, _moved_targets(y, augmented.group_elements, self.output_action))
        width = self.augmenter.scales().norm()
        total = task - self.range_reward * width
        return LossTerms(total, {"task": task.item(), "range": width.item()})


def pair_discriminator(in_features: int, hidden: int = 64) -> nn.Module:
    """A small MLP from a flattened ``(x, y)`` pair, ``(B, in_features)``, to one logit ``(B,)``."""
    check_int_in_range("in_features", in_features, 1)
    check_int_in_range("hidden", hidden, 1)
    return nn.Sequential(
        nn.Linear(in_features, hidden),
        nn.LeakyReLU(0.2),
        nn.Linear(hidden, hidden),
        nn.LeakyReLU(0.2),
        nn.Linear(hidden, 1),
        nn.Flatten(0),
    )


class LieGAN(nn.Module):
    """LieGAN-style discovery (Yang et al., ICML 2023): the augmenter is trained adversarially.

    The augmenter (the GAN's generator) samples ``g = exp(sum_i c_i L_i)`` and moves each pair to
    ``(g x, rho(g) y)``. The discriminator sees the input *and* the target, so a transformation that
    breaks the relation between them (or moves ``x`` off the data distribution) is detectable; only
    the symmetries of the joint distribution fool it. Losses (non-saturating GAN):

    - discriminator: ``softplus(-D(x, y)) + softplus(D(g x, rho(g) y))`` (the fake pair detached);
    - generators: ``softplus(-D(g x, rho(g) y))`` with the discriminator held fixed;
    - base model: the task loss on views augmented with the current group, the group elements
      detached (the discovered symmetry used as data augmentation, as LieGAN's downstream use).

    All three are summed into one total; each part's gradient reaches only its own parameters, so
    one optimiser step is a simultaneous GAN update. Collapse (``L -> 0`` makes ``g = I`` and the
    fake pairs real) is prevented by the augmenter's fixed-norm basis (``normalize=True``), not by
    LieGAN's own regulariser.

    Args:
        base_model: the predictor (``forward`` uses it alone).
        augmenter: the learnable basis (LieGAN samples Gaussian coefficients:
            ``distribution="gaussian"``).
        discriminator: maps ``(B, F)`` flattened pairs to ``(B,)`` logits, e.g.
            :func:`pair_discriminator`.
        output_action: ``rho(g)`` on the targets; ``None`` for invariant targets.
        num_classes: for integer class labels, which enter the discriminator one-hot.
        task_weight: weight of the base model's task loss (0 for discovery alone).
    """

    def __init__(
        self,
        base_model: nn.Module,
        augmenter: LieAugmenter,
        discriminator: nn.Module,
        *,
        output_action: GroupAction | None = None,
        num_classes: int | None = None,
        task_weight: float = 1.0,
    ) -> None:
        super().__init__()
        for name, module in (("base_model", base_model), ("discriminator", discriminator)):
            if not isinstance(module, nn.Module):
                raise TypeError(f"{name} must be a torch.nn.Module, got {type(module).__name__}")
        if not isinstance(augmenter, LieAugmenter):
            raise TypeError(f"augmenter must be a LieAugmenter, got {type(augmenter).__name__}")
        if output_action is not None and output_action.dim != augmenter.dim:
            raise ValueError(
                f"output_action acts with {output_action.dim}x{output_action.dim} matrices,"
                f" the augmenter's group with {augmenter.dim}x{augmenter.dim}; they must match"
            )
        if num_classes is not None:
            check_int_in_range("num_classes", num_classes, 2)
        if not task_weight >= 0:
            raise ValueError(f"task_weight must be >= 0, got {task_weight!r}")
        self.base_model, self.augmenter, self.discriminator = base_model, augmenter, discriminator
        self.output_action, self.num_classes = output_action, num_classes
        self.task_weight = float(task_weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base_model(x)

    def pair_features(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The discriminator's input: flattened ``x`` beside flattened (or one-hot) ``y``."""
        if not y.is_floating_point():
            if self.num_classes is None:
                raise ValueError("integer targets need num_classes (they enter one-hot)")
            y = F.one_hot(y, self.num_classes).to(x.dtype)
        return torch.cat([x.reshape(x.shape[0], -1), y.reshape(y.shape[0], -1).to(x.dtype)], 1)

    def compute_loss(self, x: torch.Tensor, y: torch.Tensor, task_loss: TaskLoss) -> LossTerms:
        _check_batch(x, y, self.base_model)
        if self.num_classes is not None:
            if y.is_floating_point():
                raise TypeError(
                    f"y must hold integer class ids (num_classes={self.num_classes}), got {y.dtype}"
                )
            _check_targets(x.new_zeros(x.shape[0], self.num_classes), y)
        augmented = self.augmenter(x, 1)
        elements = augmented.group_elements
        fake = self.pair_features(
            augmented.views[0], _moved_targets(y, elements, self.output_action)
        )
        real = self.pair_features(x, y)
        discriminator_loss = (
            F.softplus(-self.discriminator(real)).mean()
            + F.softplus(self.discriminator(fake.detach())).mean()
        )
        frozen = {name: p.detach() for name, p in self.discriminator.named_parameters()}
        generator_loss = F.softplus(-functional_call(self.discriminator, frozen, (fake,))).mean()
        fixed = elements.detach()
        views = self.augmenter.action(fixed.reshape(-1, *fixed.shape[2:]), x)
        outputs = self.base_model(views)
        _check_targets(outputs, y)
        task = task_loss(outputs, _moved_targets(y, fixed, self.output_action))
        total = self.task_weight * task + discriminator_loss + generator_loss
        parts = {
            "task": task.item(),
            "discriminator": discriminator_loss.item(),
            "generator": generator_loss.item(),
        }
        return LossTerms(total, parts)
