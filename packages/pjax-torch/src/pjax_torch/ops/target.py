"""Regression target: the output must equal a given tensor, so its projection is that tensor."""

from __future__ import annotations

import torch

from kernelkit.validation import check_finite, check_floating, check_same_shape
from pjax_torch.ops._common import Projection


def _project(values: torch.Tensor, target: torch.Tensor) -> Projection:
    return Projection(
        (target.to(values.dtype).expand_as(values).clone(),), torch.zeros_like(values)
    )


def project(values: torch.Tensor, target: torch.Tensor) -> Projection:
    """Nearest point of {values = target}: the target itself."""
    check_floating("values", values)
    check_floating("target", target)
    check_same_shape("values", values, "target", target)
    check_finite("values", values)
    check_finite("target", target)
    return _project(values, target)
