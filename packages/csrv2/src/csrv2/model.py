"""The CSR / CSRv2 sparse head: a TopK autoencoder over dense embeddings.

``pre = W_enc (x - b_pre) + b_lat`` and ``z = ReLU(TopK_k(pre))``: the top-k is taken on the raw
pre-activations and the ReLU applied afterwards, so a code has at most ``k`` non-zeros (fewer when
some of the top-k pre-activations are negative). The reconstruction is ``x_hat = W_dec z + b_pre``
with ``W_dec = W_enc^T`` when the decoder is tied (CSR, CSRv2 and sentence-transformers do this;
there is no unit-norm step) or a separate matrix when untied.

Codes are :class:`kernelkit.topk.SparseCodes` built straight from the top-k indices and values, so
no ``[batch, hidden]`` dense code is ever materialised on the encode path.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from kernelkit.io import ArtifactError, load_artifact, save_artifact
from kernelkit.topk import SparseCodes, topk_codes
from kernelkit.validation import (
    check_finite,
    check_floating,
    check_int_in_range,
    check_ndim,
    check_tensor,
)

__all__ = ["ARTIFACT_KIND", "SparseAutoencoder", "advance_silence_counter", "check_embeddings"]

ARTIFACT_KIND = "csrv2.SparseAutoencoder"


def check_embeddings(name: str, x: object, d_in: int) -> torch.Tensor:
    """Require a finite floating ``[N, d_in]`` tensor; raise naming ``name`` otherwise."""
    check_tensor(name, x)
    assert isinstance(x, torch.Tensor)
    check_floating(name, x)
    check_ndim(name, x, 2)
    if x.shape[1] != d_in:
        raise ValueError(
            f"{name} must have {d_in} features per row (the head's d_in; a backbone with a "
            f"different embedding size does not fit this head), got shape {tuple(x.shape)}"
        )
    check_finite(name, x)
    return x


def check_labels(labels: object, n: int, name: str = "labels") -> torch.Tensor:
    """Require integer class ids ``labels[n]`` (>= 0; a float, bool or negative label is an
    error, never a value to group by); returns them as int64."""
    check_tensor(name, labels)
    assert isinstance(labels, torch.Tensor)
    check_ndim(name, labels, 1)
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor, got {labels.dtype}")
    if labels.shape[0] != n:
        raise ValueError(f"{name} must have one entry per row ({n}), got {labels.shape[0]}")
    if labels.numel() and int(labels.min()) < 0:
        raise ValueError(f"{name} must hold class ids >= 0, got {int(labels.min())}")
    return labels.long()


@torch.no_grad()
def advance_silence_counter(counter: torch.Tensor, codes: SparseCodes) -> None:
    """One top-k call: add 1 to every latent's ``counter[hidden]`` entry, then zero the entries
    of the latents that fired (a positive value) in ``codes``."""
    fired = torch.zeros(counter.shape[0], device=counter.device).index_add_(
        0, codes.indices.reshape(-1), (codes.values > 0).reshape(-1).float()
    )
    counter.add_(1).mul_((fired == 0).long())


def _compact_dense(indices: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """``[N, C]`` dense codes over only the ``C`` distinct latents in ``indices[N, k]`` (sorted
    ascending, as ``torch.unique`` returns them); duplicates in a row are summed. Inner products
    and products with ``W[torch.unique(indices)]`` equal those of the full ``[N, hidden]`` codes."""
    columns, inverse = torch.unique(indices, return_inverse=True)
    out = torch.zeros(*indices.shape[:-1], len(columns), dtype=values.dtype, device=values.device)
    return out.scatter_add(-1, inverse, values)


class SparseAutoencoder(nn.Module):
    """TopK sparse autoencoder ``d_in -> hidden`` keeping ``k`` latents per embedding.

    Args:
        d_in: input embedding width.
        hidden: number of latents (the papers use 4x ``d_in``; CSRv2's figures go to 16x).
        k: latents kept per code at inference (the target k of training).
        tied: share the decoder with the encoder (``W_dec = W_enc^T``), as CSR/CSRv2 do.

    Raises ``TypeError`` for non-int sizes and ``ValueError`` for ``k`` outside ``[1, hidden]``.
    """

    def __init__(self, d_in: int, hidden: int, k: int, tied: bool = True) -> None:
        super().__init__()
        self.d_in = check_int_in_range("d_in", d_in, 1)
        self.hidden = check_int_in_range("hidden", hidden, 1)
        self.k = check_int_in_range("k", k, 1, hidden)
        if not isinstance(tied, bool):
            raise TypeError(f"tied must be a bool, got {type(tied).__name__} ({tied!r})")
        self.tied = tied
        self.pre_bias = nn.Parameter(torch.zeros(d_in))
        # nn.Linear's default init, as in the public CSR code; rows are the latents' directions.
        self.encoder = nn.Linear(d_in, hidden, bias=False)
        self.latent_bias = nn.Parameter(torch.zeros(hidden))
        self.untied_decoder = (
            nn.Parameter(self.encoder.weight.detach().clone()) if not tied else None
        )
        # Top-k calls since each latent last fired; AuxK treats long-silent latents as dead.
        self.calls_since_fired: torch.Tensor
        self.register_buffer("calls_since_fired", torch.zeros(hidden, dtype=torch.long))

    # -- parameters ----------------------------------------------------------------------------

    @property
    def decoder_rows(self) -> torch.Tensor:
        """``[hidden, d_in]``: row ``j`` is the direction latent ``j`` adds to the reconstruction."""
        return self.encoder.weight if self.untied_decoder is None else self.untied_decoder

    @torch.no_grad()
    def init_pre_bias_(self, embeddings: torch.Tensor) -> SparseAutoencoder:
        """Set ``b_pre`` to the mean of ``embeddings`` (centres anisotropic inputs); returns self."""
        check_embeddings("embeddings", embeddings, self.d_in)
        if embeddings.shape[0] == 0:
            raise ValueError("embeddings must have at least one row to take a mean, got 0 rows")
        self.pre_bias.copy_(embeddings.mean(dim=0).to(self.pre_bias))
        return self

    # -- forward pieces ------------------------------------------------------------------------

    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        """``W_enc (x - b_pre) + b_lat`` for ``x[N, d_in]``: ``[N, hidden]``.

        Floating ``x`` of another dtype than the head (float16 or bfloat16 embeddings from a
        half-precision backbone, float64) is cast to the head's dtype first.
        """
        check_embeddings("x", x, self.d_in)
        if x.dtype != self.encoder.weight.dtype:
            x = x.to(self.encoder.weight.dtype)
        if torch.is_grad_enabled() and not x.requires_grad and not x.is_inference():
            # Same value as below; written as x W^T + (b_lat - W b_pre) so that training on
            # fixed embeddings skips the [N, hidden] x [hidden, d_in] product for x's gradient,
            # which only b_pre would use (its gradient is a matrix-vector product this way).
            # Inference-mode tensors (sentence-transformers' encode) cannot be saved for
            # backward, so they take the plain path.
            bias = self.latent_bias - self.encoder.weight @ self.pre_bias
            return F.linear(x, self.encoder.weight, bias)
        return F.linear(x - self.pre_bias, self.encoder.weight, self.latent_bias)

    def codes_from_pre_activations(self, pre: torch.Tensor, k: int) -> SparseCodes:
        """ReLU of the top-``k`` pre-activations (ties to the lower latent index)."""
        k = check_int_in_range("k", k, 1, self.hidden)
        codes = topk_codes(pre, k)
        return codes.with_values(F.relu(codes.values))

    def encode(self, x: torch.Tensor, k: int | None = None) -> SparseCodes:
        """k-sparse codes of ``x[N, d_in]`` (``k`` defaults to the head's): at most k non-zeros,
        all non-negative."""
        return self.codes_from_pre_activations(self.pre_activations(x), self.k if k is None else k)

    def decode(self, codes: SparseCodes | torch.Tensor, *, with_bias: bool = True) -> torch.Tensor:
        """Reconstruct ``[N, d_in]`` from sparse codes or dense latents ``[N, hidden]``.

        ``with_bias=False`` leaves out ``b_pre`` (AuxK fits a residual, which has no offset).
        Codes of another floating dtype are cast to the head's. NaN in the codes propagates to
        the reconstruction (a linear map, like ``nn.Linear``); :meth:`encode` never produces it.
        """
        if isinstance(codes, SparseCodes):
            if codes.dim != self.hidden:
                raise ValueError(
                    f"codes must have dim == hidden ({self.hidden}), got dim={codes.dim}"
                )
            if codes.indices.ndim != 2:
                raise ValueError(
                    f"codes must be a batch [N, k], got indices of shape {tuple(codes.indices.shape)}"
                )
            weights = codes.values.to(self.decoder_rows.dtype)
            if torch.is_grad_enabled() and (
                weights.requires_grad or self.decoder_rows.requires_grad
            ):
                # embedding_bag's backward with per-sample weights is several times slower on
                # CPU than a scatter followed by a matmul; the scatter goes into the columns the
                # batch actually uses ([N, <= N*k]), not all ``hidden`` of them.
                out = (
                    _compact_dense(codes.indices, weights)
                    @ self.decoder_rows[torch.unique(codes.indices)]
                )
            else:
                # Sum of k decoder rows weighted by the code values, without a dense [N, hidden].
                out = F.embedding_bag(
                    codes.indices, self.decoder_rows, per_sample_weights=weights, mode="sum"
                )
        else:
            check_tensor("codes", codes)
            check_floating("codes", codes)
            check_ndim("codes", codes, 2)
            if codes.shape[1] != self.hidden:
                raise ValueError(
                    f"dense codes must have hidden={self.hidden} columns, got shape "
                    f"{tuple(codes.shape)}"
                )
            out = codes.to(self.decoder_rows.dtype) @ self.decoder_rows
        return out + self.pre_bias if with_bias else out

    def forward(self, x: torch.Tensor, k: int | None = None) -> tuple[SparseCodes, torch.Tensor]:
        """``(codes, reconstruction)`` of ``x`` at ``k`` (default: the head's k)."""
        codes = self.encode(x, k)
        return codes, self.decode(codes)

    # -- dead-latent bookkeeping ---------------------------------------------------------------

    @torch.no_grad()
    def record_topk_call(self, codes: SparseCodes) -> None:
        """Advance every latent's silence counter by one call and reset those that fired."""
        advance_silence_counter(self.calls_since_fired, codes)

    def dead_mask(self, dead_threshold: int) -> torch.Tensor:
        """Latents silent for more than ``dead_threshold`` top-k calls (the AuxK training mask)."""
        return self.calls_since_fired > dead_threshold

    # -- persistence ---------------------------------------------------------------------------

    def config(self) -> dict[str, int | bool]:
        return {"d_in": self.d_in, "hidden": self.hidden, "k": self.k, "tied": self.tied}

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write the head as safetensors plus a JSON manifest (atomic; the tied matrix once)."""
        tensors = {
            "pre_bias": self.pre_bias,
            "encoder_weight": self.encoder.weight,
            "latent_bias": self.latent_bias,
            "calls_since_fired": self.calls_since_fired,
        }
        if self.untied_decoder is not None:
            tensors["decoder_rows"] = self.untied_decoder
        return save_artifact(directory, tensors, self.config(), kind=ARTIFACT_KIND)

    @classmethod
    def from_pretrained(
        cls, directory: str | os.PathLike, device: str | torch.device = "cpu"
    ) -> SparseAutoencoder:
        """Load a head written by :meth:`save_pretrained` (shapes checked against its config)."""
        tensors, config = load_artifact(directory, kind=ARTIFACT_KIND)
        model = cls(
            int(config["d_in"]), int(config["hidden"]), int(config["k"]), bool(config["tied"])
        )
        expected = {
            "pre_bias": (model.d_in,),
            "encoder_weight": (model.hidden, model.d_in),
            "latent_bias": (model.hidden,),
            "calls_since_fired": (model.hidden,),
        }
        if not model.tied:
            expected["decoder_rows"] = (model.hidden, model.d_in)
        for name, shape in expected.items():
            found = tuple(tensors[name].shape) if name in tensors else None
            if found != shape:
                raise ArtifactError(
                    f"artifact {str(directory)!r}: tensor {name!r} should have shape {shape} for "
                    f"config {config}, found {found}"
                )
        with torch.no_grad():
            model.pre_bias.copy_(tensors["pre_bias"])
            model.encoder.weight.copy_(tensors["encoder_weight"])
            model.latent_bias.copy_(tensors["latent_bias"])
            model.calls_since_fired.copy_(tensors["calls_since_fired"])
            if model.untied_decoder is not None:
                model.untied_decoder.copy_(tensors["decoder_rows"])
        return model.to(device)
