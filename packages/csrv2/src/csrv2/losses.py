"""Training losses of CSR and CSRv2.

``L = MSE(x, x_hat_k) + multi_topk_weight * MSE(x, x_hat_4k) + auxk_coef * L_aux + cl_coef * L_cl``
``+ balance_coef * L_balance`` (the last term is ours, off by default; the papers have none)

- The 4k term (OpenAI's "Multi-TopK", weight 1/8) keeps the latents ranked k+1..4k useful.
- ``L_aux`` (AuxK) fits the detached residual ``x - x_hat_k`` from the top pre-activations of
  *dead* latents only, normalised by the error of predicting the residual's batch mean, so dead
  latents get gradient. It is exactly 0 when nothing is dead.
- ``L_cl`` is CSR's self-supervised InfoNCE on L2-normalised codes (the two "views" of a
  precomputed embedding are identical, so it acts as a uniformity term) or CSRv2's supervised
  contrastive loss (every same-label sample is a positive).
- ``L_balance`` (:func:`balance_loss`) evens out latent usage, so that posting lists are of
  similar length and inverted search touches fewer postings (see
  :func:`csrv2.metrics.posting_imbalance`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F

from csrv2.model import SparseAutoencoder, _compact_dense, check_labels
from kernelkit.topk import SparseCodes, topk_codes
from kernelkit.validation import (
    check_finite,
    check_floating,
    check_int_in_range,
    check_ndim,
    check_tensor,
)

__all__ = [
    "LossConfig",
    "LossTerms",
    "auxk_from_decoder",
    "auxk_loss",
    "balance_loss",
    "csr_loss",
    "self_contrastive_loss",
    "supervised_contrastive_loss",
]

ContrastiveKind = Literal["supervised", "self", "none"]


@dataclass
class LossConfig:
    """Loss coefficients; defaults are the CSRv2 text setting."""

    multi_topk_weight: float = field(
        default=0.125, metadata={"help": "weight of the reconstruction at 4k (Multi-TopK)"}
    )
    auxk: int = field(
        default=1024, metadata={"help": "dead latents used by the AuxK reconstruction"}
    )
    auxk_coef: float = field(default=0.1, metadata={"help": "weight of the AuxK loss"})
    dead_threshold: int = field(
        default=30,
        metadata={
            "help": "a latent is dead for AuxK after this many top-k calls without firing "
            "(each step makes 2 calls, k and 4k, plus 1 for the contrastive term)"
        },
    )
    contrastive: ContrastiveKind = field(
        default="supervised",
        metadata={
            "help": "contrastive term: 'supervised' (CSRv2, same-label positives), 'self' "
            "(CSR, in-batch InfoNCE) or 'none'"
        },
    )
    cl_coef: float = field(default=0.1, metadata={"help": "weight of the contrastive term"})
    temperature: float = field(
        default=0.2, metadata={"help": "temperature of the contrastive term (cosine similarity)"}
    )
    balance_coef: float = field(
        default=0.0,
        metadata={
            "help": "weight of the latent-usage balance term (shorter popular posting lists, "
            "faster inverted search); 0 = off, as in the paper"
        },
    )

    def __post_init__(self) -> None:
        for name in ("multi_topk_weight", "auxk_coef", "cl_coef", "balance_coef"):
            value = getattr(self, name)
            if not value >= 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.contrastive not in ("supervised", "self", "none"):
            raise ValueError(
                f"contrastive must be 'supervised', 'self' or 'none', got {self.contrastive!r}"
            )
        if isinstance(self.auxk, bool) or not isinstance(self.auxk, int) or self.auxk < 0:
            raise ValueError(f"auxk must be an int >= 0, got {self.auxk!r}")
        if (
            isinstance(self.dead_threshold, bool)
            or not isinstance(self.dead_threshold, int)
            or self.dead_threshold < 0
        ):
            raise ValueError(f"dead_threshold must be an int >= 0, got {self.dead_threshold!r}")


@dataclass
class LossTerms:
    """The total loss and its parts (parts detached, for logging)."""

    total: torch.Tensor
    reconstruction_k: float
    reconstruction_4k: float
    auxk: float
    contrastive: float
    balance: float
    dead_fraction: float
    codes: SparseCodes


def auxk_loss(
    model: SparseAutoencoder,
    pre: torch.Tensor,
    residual: torch.Tensor,
    dead: torch.Tensor,
    auxk: int,
) -> torch.Tensor:
    """Normalised MSE of reconstructing ``residual`` from the top-``auxk`` dead pre-activations.

    ``dead`` is a ``[hidden]`` bool mask. Returns an exact 0 (still part of the graph) when no
    latent is dead or ``auxk`` is 0; uses ``min(auxk, #dead)`` latents otherwise. A residual with no
    spread (normaliser 0) gives 0, not NaN. NaN or ±inf in ``pre`` or ``residual`` raises.
    """
    check_floating("pre", pre)
    check_ndim("pre", pre, 2)
    if pre.shape[1] != model.hidden:
        raise ValueError(f"pre must have shape (N, hidden={model.hidden}), got {tuple(pre.shape)}")
    check_floating("residual", residual)
    if tuple(residual.shape) != (pre.shape[0], model.d_in):
        raise ValueError(
            f"residual must have shape (N, d_in) = {(pre.shape[0], model.d_in)}, got "
            f"{tuple(residual.shape)}"
        )
    check_tensor("dead", dead)
    if dead.dtype != torch.bool or tuple(dead.shape) != (model.hidden,):
        raise ValueError(
            f"dead must be a bool mask of shape ({model.hidden},), got {dead.dtype} "
            f"{tuple(dead.shape)}"
        )
    check_int_in_range("auxk", auxk, 0)
    check_finite("pre", pre)
    check_finite("residual", residual)
    return auxk_from_decoder(
        model.decoder_rows, pre.to(model.decoder_rows.dtype), residual, dead, auxk
    )


def auxk_from_decoder(
    decoder_rows: torch.Tensor,
    pre: torch.Tensor,
    residual: torch.Tensor,
    dead: torch.Tensor,
    auxk: int,
) -> torch.Tensor:
    """:func:`auxk_loss` given the ``[hidden, d_in]`` decoder rows instead of the head (so a
    sentence-transformers head module can use it too)."""
    n_dead = int(dead.sum())
    if n_dead == 0 or auxk == 0:
        return pre.sum() * 0.0
    # Only the dead columns take part: the top-k among them (ties to the lower latent index, as
    # the columns stay in ascending order) decoded through their own decoder rows.
    dead_ids = dead.nonzero().squeeze(1)
    codes = topk_codes(pre.index_select(1, dead_ids), min(auxk, n_dead))
    aux = torch.zeros(pre.shape[0], n_dead, dtype=pre.dtype, device=pre.device).scatter_add(
        1, codes.indices, F.relu(codes.values)
    )
    prediction = aux @ decoder_rows.index_select(0, dead_ids)
    error = (prediction - residual).pow(2).mean()
    baseline = (residual - residual.mean(dim=0, keepdim=True)).pow(2).mean()
    return torch.nan_to_num(error / baseline, nan=0.0, posinf=0.0)


def balance_loss(codes: SparseCodes) -> torch.Tensor:
    """``h * sum_j f_j * P_j`` over the ``h = codes.dim`` latents of a batch of codes.

    ``f_j`` is the fraction of the batch's non-zero entries on latent ``j`` (a count, no
    gradient) and ``P_j`` the batch mean of each code's value share on ``j`` (``v / sum v``
    within the code, with gradient): the load-balancing loss of Switch Transformers with latents
    as experts and the code's values as router weights. It is 1 when usage is even and ``h``
    when one latent takes everything; its gradient shrinks the values, and through the shared
    latent bias the pre-activations, of the latents the batch over-uses. Codes with no positive
    value add nothing.
    """
    indices = codes.indices.reshape(-1, codes.k)
    values = codes.values.reshape(-1, codes.k).clamp_min(0)
    active = (values > 0).flatten()
    total = values.sum(dim=1, keepdim=True)
    share = torch.where(total > 0, values / total.clamp_min(1e-30), 0.0)
    flat = indices.flatten()
    counts = torch.zeros(codes.dim, dtype=values.dtype, device=values.device).index_add_(
        0, flat, active.to(values.dtype)
    )
    if float(counts.sum()) == 0:
        return values.sum() * 0.0
    f = counts / counts.sum()
    mean_share = torch.zeros(codes.dim, dtype=values.dtype, device=values.device).index_add(
        0, flat, share.flatten()
    ) / max(int((total > 0).sum()), 1)
    return codes.dim * (f * mean_share).sum()


def _normalised_dense(codes: SparseCodes) -> torch.Tensor:
    # Over the latents the batch uses only: same inner products as the full [B, hidden] codes.
    return F.normalize(_compact_dense(codes.indices, codes.values), dim=-1)


def _check_temperature(temperature: object) -> float:
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, int | float)
        or not 0 < temperature < float("inf")
    ):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    return float(temperature)


def self_contrastive_loss(codes: SparseCodes, temperature: float = 0.2) -> torch.Tensor:
    """CSR's in-batch InfoNCE between two views of the codes (here one deterministic view twice).

    With identical views the positive is the anchor itself and the loss pushes codes apart.
    NaN in the code values propagates to the loss, as in torch's own losses.
    """
    temperature = _check_temperature(temperature)
    z = _normalised_dense(codes)
    logits = z @ z.T / temperature
    targets = torch.arange(z.shape[0], device=z.device)
    return F.cross_entropy(logits, targets)


def supervised_contrastive_loss(
    codes: SparseCodes, labels: torch.Tensor, temperature: float = 0.2
) -> torch.Tensor:
    """CSRv2's supervised contrastive loss over two views of the batch.

    The batch is stacked with its second view (identical for a frozen backbone, as in the public
    code); for each of the 2B anchors the positives are all *other* rows with the same label,
    including the anchor's own copy, and the loss is ``-log(sum_pos / sum_all_but_self)`` with the
    ratio clamped at 1e-8, averaged over anchors. NaN in the code values propagates to the loss,
    as in torch's own losses; ``labels`` must be class ids ``>= 0``.
    """
    temperature = _check_temperature(temperature)
    labels = check_labels(labels, codes.shape[0] if codes.indices.ndim == 2 else -1)
    z = _normalised_dense(codes)
    # The second view is a copy of the first, so the [2B, 2B] similarities are the [B, B] block
    # tiled twice in each direction.
    exp_sim = torch.exp(z @ z.T / temperature).repeat(2, 2)
    both = torch.cat([labels, labels]).to(z.device)
    not_self = ~torch.eye(exp_sim.shape[0], dtype=torch.bool, device=z.device)
    positive = (both[:, None] == both[None, :]) & not_self
    numerator = (exp_sim * positive).sum(dim=1)
    denominator = (exp_sim * not_self).sum(dim=1)
    return -torch.log((numerator / denominator).clamp_min(1e-8)).mean()


def csr_loss(
    model: SparseAutoencoder,
    x: torch.Tensor,
    k: int,
    config: LossConfig,
    labels: torch.Tensor | None = None,
    *,
    track_dead: bool = True,
) -> LossTerms:
    """The full training loss of one batch at the current ``k`` (the 4k term uses ``min(4k, hidden)``).

    ``track_dead`` advances the head's dead-latent counters (one per top-k call), as training does.
    """
    k = check_int_in_range("k", k, 1, model.hidden)
    if config.contrastive == "supervised" and labels is None:
        raise ValueError("contrastive='supervised' needs labels, got labels=None")
    pre = model.pre_activations(x)
    if labels is not None:
        labels = check_labels(labels, x.shape[0])
    codes_4k = model.codes_from_pre_activations(pre, min(4 * k, model.hidden))
    # Top-k indices come ordered by value (ties to the lower index), so the top-k code is the
    # first k entries of the top-4k one: one top-k call instead of two.
    codes_k = SparseCodes(codes_4k.indices[..., :k], codes_4k.values[..., :k], model.hidden)
    recon_k = model.decode(codes_k)
    recon_4k = model.decode(codes_4k)
    loss_k = F.mse_loss(recon_k, x)
    loss_4k = F.mse_loss(recon_4k, x)
    if track_dead:
        model.record_topk_call(codes_k)
        model.record_topk_call(codes_4k)
    dead = model.dead_mask(config.dead_threshold)
    # Unchecked: pre and the residual come from the head itself.
    loss_aux = auxk_from_decoder(model.decoder_rows, pre, (x - recon_k).detach(), dead, config.auxk)

    if config.contrastive == "none":
        loss_cl = pre.sum() * 0.0
    else:
        if track_dead:
            # The public code draws the contrastive view with a third top-k call.
            model.record_topk_call(codes_k)
        if config.contrastive == "supervised":
            assert labels is not None
            loss_cl = supervised_contrastive_loss(codes_k, labels, config.temperature)
        else:
            loss_cl = self_contrastive_loss(codes_k, config.temperature)
    loss_balance = balance_loss(codes_k) if config.balance_coef > 0 else pre.sum() * 0.0

    total = (
        loss_k
        + config.multi_topk_weight * loss_4k
        + config.auxk_coef * loss_aux
        + config.cl_coef * loss_cl
        + config.balance_coef * loss_balance
    )
    return LossTerms(
        total=total,
        reconstruction_k=float(loss_k.detach()),
        reconstruction_4k=float(loss_4k.detach()),
        auxk=float(loss_aux.detach()),
        contrastive=float(loss_cl.detach()),
        balance=float(loss_balance.detach()),
        dead_fraction=float(dead.float().mean()),
        codes=codes_k,
    )
