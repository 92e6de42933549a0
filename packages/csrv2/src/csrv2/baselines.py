"""Dense low-dimensional baselines: PCA truncation and a Matryoshka (MRL) linear head.

Both map an embedding to its first ``m`` coordinates in a learned basis, so ``m`` active
dimensions compare with ``k`` active latents. The MRL head is trained on the same data and labels
as the sparse heads, with the supervised contrastive loss applied to every prefix in ``dims``,
which includes 2 and 4 (the public CSRv2 MRL baseline trained only prefixes of 8 and up).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from csrv2.model import check_embeddings
from kernelkit.utils import progress, seed_everything
from kernelkit.validation import check_int_in_range

__all__ = ["MRL_DIMS", "MatryoshkaHead", "PCABasis", "train_matryoshka"]

MRL_DIMS = (2, 4, 8, 16, 32, 64)


class PCABasis:
    """Principal axes of a set of embeddings, strongest first."""

    def __init__(self, embeddings: torch.Tensor) -> None:
        check_embeddings("embeddings", embeddings, embeddings.shape[-1] if embeddings.ndim else 0)
        if embeddings.shape[0] < 2:
            raise ValueError(f"embeddings must have at least 2 rows, got {embeddings.shape[0]}")
        self.mean = embeddings.mean(dim=0)
        _, _, vh = torch.linalg.svd(embeddings - self.mean, full_matrices=False)
        self.components = vh  # [r, d]

    def project(self, x: torch.Tensor, dims: int) -> torch.Tensor:
        """The first ``dims`` principal coordinates of ``x``."""
        check_int_in_range("dims", dims, 1, self.components.shape[0])
        return (x - self.mean) @ self.components[:dims].T


class MatryoshkaHead(nn.Module):
    """A linear map ``d -> d`` whose every prefix is meant to be a usable embedding."""

    def __init__(self, d_in: int) -> None:
        super().__init__()
        self.d_in = check_int_in_range("d_in", d_in, 1)
        self.linear = nn.Linear(d_in, d_in)

    def embed(self, x: torch.Tensor, dims: int) -> torch.Tensor:
        """The L2-normalised first ``dims`` outputs."""
        check_embeddings("x", x, self.d_in)
        check_int_in_range("dims", dims, 1, self.d_in)
        return F.normalize(self.linear(x)[:, :dims], dim=-1)


def _supervised_contrastive(z: torch.Tensor, labels: torch.Tensor, temperature: float):
    sim = torch.exp(z @ z.T / temperature)
    not_self = ~torch.eye(len(z), dtype=torch.bool, device=z.device)
    positive = (labels[:, None] == labels[None, :]) & not_self
    has_positive = positive.any(dim=1)
    ratio = (sim * positive).sum(1) / (sim * not_self).sum(1)
    return (
        -torch.log(ratio[has_positive].clamp_min(1e-8)).mean()
        if bool(has_positive.any())
        else z.sum() * 0
    )


def train_matryoshka(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    dims: Sequence[int] = MRL_DIMS,
    epochs: int = 10,
    batch_size: int = 128,
    lr: float = 1e-3,
    temperature: float = 0.2,
    seed: int = 1227,
    show_progress: bool = False,
) -> MatryoshkaHead:
    """Fit an MRL head: mean over ``dims`` (plus the full width) of the supervised contrastive loss.

    The head starts at the PCA rotation, so before training each prefix is the PCA truncation.
    """
    n, d_in = embeddings.shape
    check_embeddings("embeddings", embeddings, d_in)
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), got {tuple(labels.shape)}")
    prefixes = sorted({*(check_int_in_range("dims", m, 1, d_in) for m in dims), d_in})
    seed_everything(seed)
    head = MatryoshkaHead(d_in)
    pca = PCABasis(embeddings)
    with torch.no_grad():
        rotation = torch.zeros(d_in, d_in)
        rotation[: pca.components.shape[0]] = pca.components
        head.linear.weight.copy_(rotation)
        head.linear.bias.copy_(-rotation @ pca.mean)
    optimizer = torch.optim.Adam(head.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    for _ in progress(range(epochs), desc="MRL head", disable=not show_progress):
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, batch_size):
            batch = order[start : start + batch_size]
            out = head.linear(embeddings[batch])
            loss = sum(
                _supervised_contrastive(F.normalize(out[:, :m], dim=-1), labels[batch], temperature)
                for m in prefixes
            ) / len(prefixes)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    head.eval()
    return head
