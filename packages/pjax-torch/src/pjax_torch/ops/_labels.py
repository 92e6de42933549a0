"""Checks for the label tensors of the output constraints."""

from __future__ import annotations

import torch

from kernelkit.validation import check_finite, check_floating


def check_logits_and_labels(logits: torch.Tensor, labels: torch.Tensor) -> None:
    """``logits`` is ``(..., classes)`` floating and finite; ``labels`` is ``(...)`` integer (not
    bool) in range."""
    check_floating("logits", logits)
    if logits.ndim < 1 or logits.shape[-1] < 2:
        raise ValueError(
            f"logits must have shape (..., classes) with classes >= 2, got {tuple(logits.shape)}"
        )
    if (
        not isinstance(labels, torch.Tensor)
        or labels.is_floating_point()
        or labels.is_complex()
        or labels.dtype == torch.bool
    ):
        raise TypeError(f"labels must be an integer tensor of class indices, got {labels!r:.80}")
    if labels.shape != logits.shape[:-1]:
        raise ValueError(
            f"labels must have shape logits.shape[:-1] = {tuple(logits.shape[:-1])}, got {tuple(labels.shape)}"
        )
    classes = logits.shape[-1]
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= classes):
        raise ValueError(
            f"labels must lie in [0, {classes - 1}], got values in [{int(labels.min())}, {int(labels.max())}]"
        )
    check_finite("logits", logits)
