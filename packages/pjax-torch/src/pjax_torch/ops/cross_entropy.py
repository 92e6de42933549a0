"""Cross-entropy proximal output step: argmin_x CE(x, y) + ‖x − l‖²/(2λ) for logits l.

With y the one-hot label, the objective F(x) = logsumexp(x) − y·x + ‖x − l‖²/(2λ) is strictly
convex, with gradient G = softmax(x) − y + (x − l)/λ and Hessian H = diag(s) − s sᵀ + I/λ. We take
Newton steps, solving H d = G in O(classes) by Sherman–Morrison (H = D − s sᵀ with D diagonal and
sᵀD⁻¹s < 1), with a backtracking (Armijo) line search, in float64. This converges for every
λ > 0. The reference code's default, the fixed point x ← l + λ(y − softmax x) with λ = 5, is not a
contraction for λ above about 2 and does not converge there.
"""

from __future__ import annotations

import math

import torch

from pjax_torch.ops._common import Projection
from pjax_torch.ops._labels import check_logits_and_labels

MAX_ITERATIONS = 50
MAX_HALVINGS = 40
GRADIENT_TOLERANCE = 1e-10


def _objective(x, logits, onehot, lam):
    return torch.logsumexp(x, -1) - (onehot * x).sum(-1) + ((x - logits) ** 2).sum(-1) / (2 * lam)


def _gradient(x, logits, onehot, lam):
    return torch.softmax(x, -1) - onehot + (x - logits) / lam


def _project(logits: torch.Tensor, labels: torch.Tensor, *, lam: float = 5.0) -> Projection:
    l64 = logits.double()
    onehot = torch.nn.functional.one_hot(labels, logits.shape[-1]).double()
    x = l64.clone()
    for _ in range(MAX_ITERATIONS):
        gradient = _gradient(x, l64, onehot, lam)
        if float(gradient.abs().max()) <= GRADIENT_TOLERANCE:
            break
        s = torch.softmax(x, -1)
        diagonal = s + 1.0 / lam
        d_inv_g = gradient / diagonal
        d_inv_s = s / diagonal
        correction = (s * d_inv_g).sum(-1, keepdim=True) / (1 - (s * d_inv_s).sum(-1, keepdim=True))
        direction = -(d_inv_g + d_inv_s * correction)
        slope = (gradient * direction).sum(-1, keepdim=True)
        current = _objective(x, l64, onehot, lam).unsqueeze(-1)
        step = torch.ones_like(current)
        for _ in range(MAX_HALVINGS):
            trial = _objective(x + step * direction, l64, onehot, lam).unsqueeze(-1)
            # the small absolute slack lets full steps through once float64 cannot see the decrease
            slack = 1e-13 * (1 + current.abs())
            accepted = trial <= current + 1e-4 * step * slope + slack
            if bool(accepted.all()):
                break
            step = torch.where(accepted, step, step / 2)
        x = x + step * direction
    residual = _gradient(x, l64, onehot, lam).abs().amax(-1)
    return Projection((x.to(logits.dtype),), residual.to(logits.dtype))


def project(logits: torch.Tensor, labels: torch.Tensor, *, lam: float = 5.0) -> Projection:
    """The cross-entropy prox of ``logits`` for integer ``labels``; residual = ‖∇F‖∞."""
    check_logits_and_labels(logits, labels)
    if isinstance(lam, bool) or not isinstance(lam, int | float) or not 0 < lam < math.inf:
        raise ValueError(f"lam must be a positive, finite number, got {lam!r}")
    return _project(logits, labels, lam=float(lam))
