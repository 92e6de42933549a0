"""Margin output constraint: the true class's logit ≥ ``margin`` and every other logit ≤ 0.

The set is a box, so its projection clips each logit to its interval; this is the constraint
the reference code calls ``margin_loss`` (with margin 1).
"""

from __future__ import annotations

import torch

from kernelkit.validation import check_real_in_range
from pjax_torch.ops._common import Projection
from pjax_torch.ops._labels import check_logits_and_labels


def _project(logits: torch.Tensor, labels: torch.Tensor, *, margin: float = 1.0) -> Projection:
    is_true = torch.nn.functional.one_hot(labels, logits.shape[-1]).bool()
    new_logits = torch.where(is_true, torch.clamp(logits, min=margin), torch.clamp(logits, max=0.0))
    violation = torch.where(
        is_true, torch.clamp(margin - new_logits, min=0), torch.clamp(new_logits, min=0)
    ).amax(-1)
    return Projection((new_logits,), violation)


def project(logits: torch.Tensor, labels: torch.Tensor, *, margin: float = 1.0) -> Projection:
    """Nearest logits satisfying the margin constraint for integer ``labels``."""
    check_logits_and_labels(logits, labels)
    margin = check_real_in_range("margin", margin, 0.0)
    return _project(logits, labels, margin=margin)
