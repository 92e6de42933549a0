"""The five terms of the SEMoLA objective, each a plain function.

    L = L_task + w_eq * L_eq + w_aug * L_aug + w_orth * L_orth + w_sp * L_sp

The paper names the five terms (task, equivariance, an augmentation-property term, basis
orthogonality, basis sparsity) but, in what we could read, not every exact form or weight. The
forms below are ours where marked; :class:`SEMoLALossConfig` holds the weights.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import torch

from kernelkit.validation import (
    check_finite,
    check_floating,
    check_int_in_range,
    check_ndim,
    check_real_in_range,
)
from semola.actions import GroupAction

__all__ = [
    "SEMoLALossConfig",
    "augmentation_loss",
    "equivariance_loss",
    "orthogonality_loss",
    "sparsity_loss",
]


EQUIVARIANCE_FORMS = ("squared", "kl")


@dataclass
class SEMoLALossConfig:
    """Weights and settings of the five-term loss (defaults are ours; the paper gives none we could read)."""

    num_views: int = field(default=4, metadata={"help": "K, augmented views per sample"})
    equivariance_weight: float = field(
        default=1.0, metadata={"help": "w_eq on mean_k ||f(g_k x) - rho(g_k) f(x)||^2"}
    )
    augmentation_weight: float = field(
        default=1.0,
        metadata={
            "help": "w_aug on the anti-collapse hinge mean relu(margin - ||gx - x|| / ||x||)"
        },
    )
    augmentation_margin: float = field(
        default=0.1,
        metadata={
            "help": "smallest mean relative displacement ||gx - x|| / ||x|| before the hinge acts"
        },
    )
    orthogonality_weight: float = field(
        default=0.1, metadata={"help": "w_orth on sum over pairs of |cos| between generators"}
    )
    sparsity_weight: float = field(
        default=0.01, metadata={"help": "w_sp on the scale-free l1/l2 sparsity of each generator"}
    )
    equivariance_form: str = field(
        default="squared",
        metadata={
            "help": "squared: ||f(gx) - rho(g) f(x)||^2; kl: KL(softmax f(x) || softmax f(gx)),"
            " for classifiers with invariant outputs"
        },
    )
    task_on_views: bool = field(
        default=False,
        metadata={
            "help": "also apply the task loss to the views (targets moved by the output action)"
        },
    )

    def __post_init__(self) -> None:
        check_int_in_range("num_views", self.num_views, 1)
        if self.equivariance_form not in EQUIVARIANCE_FORMS:
            raise ValueError(
                f"equivariance_form must be one of {EQUIVARIANCE_FORMS}, got {self.equivariance_form!r}"
            )
        for name in (
            "equivariance_weight",
            "augmentation_weight",
            "augmentation_margin",
            "orthogonality_weight",
            "sparsity_weight",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")


def equivariance_loss(
    outputs: torch.Tensor,
    view_outputs: torch.Tensor,
    group_elements: torch.Tensor,
    output_action: GroupAction | None = None,
    form: str = "squared",
) -> torch.Tensor:
    """``mean_{k,b} ||f(g_kb x_b) - rho(g_kb) f(x_b)||^2`` (squared norm over output entries).

    ``outputs``: ``f(x)``, ``(B, ...)``; ``view_outputs``: ``f(g x)``, ``(K, B, ...)``;
    ``group_elements``: ``(K, B, d, d)``. ``output_action=None`` means an invariant output
    (``rho(g) = I``); otherwise ``rho(g) f(x)`` is ``output_action(g, f(x))``.

    ``form="kl"`` (classifiers with invariant outputs, ``(B, C)`` logits): the mean over views of
    ``KL(softmax f(x) || softmax f(g x))``, which compares the predicted class distributions
    rather than raw logits (a logit shift that leaves the softmax unchanged costs nothing).

    NaN and ±inf in the outputs propagate to the loss, as in torch's own losses (the training
    loop sees a NaN loss), except that an ``output_action`` applies its own data check to
    ``outputs`` (:class:`VectorAction` and :class:`ImageAction` refuse non-finite data); a
    non-finite group element, wrong shapes, dtypes and empty batches raise.
    """
    check_floating("outputs", outputs)
    check_floating("view_outputs", view_outputs)
    if outputs.ndim < 1 or outputs.shape[0] == 0:
        raise ValueError(
            f"outputs must hold a non-empty batch (B, ...), got {tuple(outputs.shape)}"
        )
    if view_outputs.shape[1:] != outputs.shape or view_outputs.shape[0] == 0:
        raise ValueError(
            f"view_outputs must have shape (K, *outputs.shape) = (K, {', '.join(map(str, outputs.shape))})"
            f" with K >= 1, got {tuple(view_outputs.shape)}"
        )
    num_views = view_outputs.shape[0]
    if form == "kl":
        if output_action is not None or outputs.ndim != 2:
            raise ValueError(
                "form='kl' needs invariant (output_action=None) class logits of shape (B, C),"
                f" got output_action={output_action!r} and outputs of shape {tuple(outputs.shape)}"
            )
        log_p = torch.log_softmax(outputs, dim=-1).unsqueeze(0).expand_as(view_outputs)
        log_q = torch.log_softmax(view_outputs, dim=-1)
        return (log_p.exp() * (log_p - log_q)).sum(-1).mean()
    if form != "squared":
        raise ValueError(f"form must be one of {EQUIVARIANCE_FORMS}, got {form!r}")
    expected = outputs.unsqueeze(0).expand_as(view_outputs)
    if output_action is not None:
        check_floating("group_elements", group_elements)
        output_action.check_data("outputs", outputs)
        wanted = (*view_outputs.shape[:2], output_action.dim, output_action.dim)
        if tuple(group_elements.shape) != wanted:
            raise ValueError(
                f"group_elements must have shape (K, B, d, d) = {wanted}, got"
                f" {tuple(group_elements.shape)}"
            )
        check_finite("group_elements", group_elements)
        flat_g = group_elements.reshape(-1, *group_elements.shape[2:])
        flat_out = expected.reshape(-1, *outputs.shape[1:])
        expected = output_action(flat_g, flat_out).reshape(view_outputs.shape)
    diff = (view_outputs - expected).reshape(num_views * outputs.shape[0], -1)
    return (diff**2).sum(-1).mean()


def augmentation_loss(
    inputs: torch.Tensor, views: torch.Tensor, margin: float = 0.1
) -> torch.Tensor:
    """Anti-collapse hinge ``relu(margin - mean_{k,b} ||g x - x|| / ||x||)`` (our form).

    Zero as soon as the augmentations move the data by ``margin`` on average, so it does not
    fight the equivariance term once the augmentations are non-trivial; positive, with a gradient
    that enlarges the generators, when they shrink toward the identity.

    NaN in ``inputs`` or ``views`` propagates to the loss, as in torch's own losses; computed in at
    least float32 (the norms of half-precision data underflow).
    """
    check_floating("inputs", inputs)
    check_floating("views", views)
    check_real_in_range("margin", margin, 0.0)
    if inputs.ndim < 1 or 0 in inputs.shape:
        raise ValueError(f"inputs must hold a non-empty batch (B, ...), got {tuple(inputs.shape)}")
    if views.shape[1:] != inputs.shape or views.shape[0] == 0:
        raise ValueError(
            f"views must have shape (K, *inputs.shape) with K >= 1, got {tuple(views.shape)} for"
            f" inputs {tuple(inputs.shape)}"
        )
    work = torch.promote_types(torch.promote_types(inputs.dtype, views.dtype), torch.float32)
    flat_views = views.to(work).reshape(views.shape[0], inputs.shape[0], -1)
    flat_inputs = inputs.to(work).reshape(1, inputs.shape[0], -1)
    displacement = (flat_views - flat_inputs).norm(dim=-1) / flat_inputs.norm(dim=-1).clamp_min(
        1e-12
    )
    return torch.relu(margin - displacement.mean())


def _check_basis(basis: torch.Tensor) -> None:
    check_floating("basis", basis)
    check_ndim("basis", basis, 3)
    if 0 in basis.shape or basis.shape[-1] != basis.shape[-2]:
        raise ValueError(
            f"basis must hold k >= 1 square generators (k, d, d), got {tuple(basis.shape)}"
        )


def orthogonality_loss(basis: torch.Tensor) -> torch.Tensor:
    """``sum_{a<b} |<L_a, L_b>_F| / (||L_a||_F ||L_b||_F)``: zero for an orthogonal basis.

    ``basis`` is ``(k, d, d)``; NaN propagates to the loss, as in torch's own losses.
    """
    _check_basis(basis)
    flat = basis.reshape(basis.shape[0], -1)
    unit = flat / flat.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    pairs = list(itertools.combinations(range(basis.shape[0]), 2))
    if not pairs:
        return basis.new_zeros(())
    first, second = zip(*pairs, strict=True)
    return (unit[list(first)] * unit[list(second)]).sum(-1).abs().sum()


def sparsity_loss(basis: torch.Tensor) -> torch.Tensor:
    """Mean over generators of ``(||L||_1 / ||L||_F - 1) / (d - 1)`` (our scale-free form).

    0 for a single non-zero entry, 1 for all ``d^2`` entries equal in size; dividing by the
    Frobenius norm keeps the term from rewarding small generators (which would feed collapse).
    ``basis`` is ``(k, d, d)``; NaN propagates to the loss, as in torch's own losses.
    """
    _check_basis(basis)
    flat = basis.reshape(basis.shape[0], -1)
    ratio = flat.abs().sum(-1) / flat.norm(dim=-1).clamp_min(1e-12)
    dim = basis.shape[-1]
    return ((ratio - 1) / max(dim - 1, 1)).mean()
