"""Quality measures for sparse codes: latent usage, reconstruction, retrieval, classification.

Usage metrics are evaluation metrics over a whole set of codes, separate from the training-time
AuxK dead mask: a latent is *dead* here when it is non-zero in no code of the set.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from csrv2.model import check_labels
from kernelkit.topk import SparseCodes, topk_codes
from kernelkit.validation import (
    check_finite,
    check_floating,
    check_int_in_range,
    check_ndim,
    check_same_shape,
    check_tensor,
)

__all__ = [
    "dead_latent_fraction",
    "effective_latents",
    "expected_postings_per_query",
    "knn_accuracy",
    "latent_usage",
    "logistic_accuracy",
    "mrr_at_k",
    "ndcg_at_k",
    "nmse",
    "posting_imbalance",
    "rank_dense",
    "usage_entropy",
    "usage_gini",
]


def latent_usage(codes: SparseCodes) -> torch.Tensor:
    """``[dim]`` number of codes in which each latent has a non-zero stored entry.

    NaN or ±inf code values raise ``ValueError`` (a NaN is "non-zero" and would count as use).
    """
    if not isinstance(codes, SparseCodes):
        raise TypeError(f"codes must be kernelkit SparseCodes, got {type(codes).__name__}")
    check_finite("codes.values", codes.values)
    indices = codes.indices.reshape(-1, codes.k).cpu()
    active = codes.values.reshape(-1, codes.k).cpu() != 0
    rows = torch.arange(indices.shape[0]).unsqueeze(1).expand_as(indices)
    # A latent stored twice in one code (allowed by SparseCodes) still counts once for that code.
    pairs = torch.unique(rows[active] * codes.dim + indices[active])
    return torch.bincount(pairs % codes.dim, minlength=codes.dim)


def dead_latent_fraction(codes: SparseCodes) -> float:
    """Fraction of latents that are zero in every code."""
    return float((latent_usage(codes) == 0).float().mean())


def _usage_distribution(codes: SparseCodes) -> torch.Tensor:
    usage = latent_usage(codes).double()
    total = usage.sum()
    if total == 0:
        raise ValueError("codes have no non-zero entry, so latent usage has no distribution")
    return usage / total


def usage_entropy(codes: SparseCodes) -> float:
    """Entropy (nats) of the share of activations each latent receives."""
    p = _usage_distribution(codes)
    p = p[p > 0]
    return float(-(p * p.log()).sum())


def effective_latents(codes: SparseCodes) -> float:
    """``exp(usage_entropy)``: how many equally used latents would give the same entropy."""
    return math.exp(usage_entropy(codes))


def usage_gini(codes: SparseCodes) -> float:
    """Gini coefficient of latent usage: 0 = every latent used equally, near 1 = one latent."""
    usage = torch.sort(latent_usage(codes).double()).values
    n = usage.numel()
    total = usage.sum()
    if total == 0:
        raise ValueError("codes have no non-zero entry, so latent usage has no Gini coefficient")
    ranks = torch.arange(1, n + 1, dtype=torch.float64)
    return float((2 * (ranks * usage).sum() / (n * total)) - (n + 1) / n)


def expected_postings_per_query(codes: SparseCodes, database_size: int | None = None) -> float:
    """Postings an inverted index touches per query, on average, when the database and the
    queries are distributed like ``codes``: ``D * sum_j f_j^2``, with ``f_j`` the fraction of
    codes in which latent ``j`` is non-zero and ``D`` the database size (default ``len(codes)``).

    A query holds latent ``j`` with probability ``f_j`` and its posting list is ``D f_j`` long.
    For codes with exactly ``k`` non-zeros this is the research note's ``N k^2 sum_j p_j^2``
    (``p_j = f_j / k``, the latent's share of all activations): ``N k^2 / h`` when ``h`` latents
    are used evenly, more when usage is skewed or latents are dead. It is the work of exact
    inverted search, and so its time, up to the cost of one posting.
    """
    usage = latent_usage(codes).double()
    n = codes.indices.reshape(-1, codes.k).shape[0]
    if n == 0:
        raise ValueError("codes must hold at least one code to estimate latent usage, got 0")
    size = n if database_size is None else check_int_in_range("database_size", database_size, 1)
    return float(size * ((usage / n) ** 2).sum())


def posting_imbalance(codes: SparseCodes) -> float:
    """``h * sum_j p_j^2`` over the ``h = codes.dim`` latents (``p``: each latent's share of the
    activations): how many times more postings exact inverted search touches than with every
    latent used equally (1.0 = even usage; dead and popular latents raise it)."""
    p = _usage_distribution(codes)
    return float(codes.dim * (p * p).sum())


def nmse(x: torch.Tensor, reconstruction: torch.Tensor) -> float:
    """Normalised MSE: ``sum ||x - x_hat||^2 / sum ||x - mean(x)||^2`` (1.0 = predicting the mean)."""
    check_floating("x", x)
    check_floating("reconstruction", reconstruction)
    check_same_shape("x", x, "reconstruction", reconstruction)
    check_ndim("x", x, 2)
    check_finite("x", x)
    check_finite("reconstruction", reconstruction)
    spread = (x - x.mean(dim=0, keepdim=True)).pow(2).sum()
    if spread == 0:
        raise ValueError("x has no spread around its mean, so NMSE is undefined")
    return float((x - reconstruction).pow(2).sum() / spread)


def rank_dense(queries: torch.Tensor, documents: torch.Tensor, top_k: int) -> torch.Tensor:
    """Ids ``[Q, top_k]`` of the documents with the largest inner products (ties: lower id)."""
    check_floating("queries", queries)
    check_floating("documents", documents)
    check_finite("queries", queries)
    check_finite("documents", documents)
    return topk_codes(queries @ documents.T, top_k).indices


def _check_relevance(ranked: torch.Tensor, relevant: Sequence[set[int]], k: int) -> None:
    check_tensor("ranked", ranked)
    if ranked.is_floating_point() or ranked.dtype == torch.bool:
        raise TypeError(f"ranked must hold integer document ids, got dtype {ranked.dtype}")
    if ranked.ndim != 2:
        raise ValueError(f"ranked must be [Q, K] document ids, got shape {tuple(ranked.shape)}")
    if ranked.numel() and int(ranked.min()) < 0:
        raise ValueError(f"ranked must hold document ids >= 0, got {int(ranked.min())}")
    if len(relevant) != ranked.shape[0]:
        raise ValueError(
            f"relevant must have one set per query, a row of ranked ({ranked.shape[0]}), got "
            f"{len(relevant)}"
        )
    check_int_in_range("k", k, 1)


def ndcg_at_k(ranked: torch.Tensor, relevant: Sequence[set[int]], k: int = 10) -> float:
    """Mean nDCG@k with binary relevance; queries without relevant documents are skipped."""
    _check_relevance(ranked, relevant, k)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    values = []
    for row, rel in zip(ranked[:, :k].tolist(), relevant, strict=True):
        if not rel:
            continue
        gains = np.array([1.0 if doc in rel else 0.0 for doc in row])
        ideal = discounts[: min(len(rel), k)].sum()
        values.append(float((gains * discounts[: len(gains)]).sum() / ideal))
    if not values:
        raise ValueError("no query has a relevant document; nDCG is undefined")
    return float(np.mean(values))


def mrr_at_k(ranked: torch.Tensor, relevant: Sequence[set[int]], k: int = 10) -> float:
    """Mean reciprocal rank of the first relevant document within the top k (0 if none)."""
    _check_relevance(ranked, relevant, k)
    values = []
    for row, rel in zip(ranked[:, :k].tolist(), relevant, strict=True):
        if not rel:
            continue
        values.append(next((1.0 / (i + 1) for i, doc in enumerate(row) if doc in rel), 0.0))
    if not values:
        raise ValueError("no query has a relevant document; MRR is undefined")
    return float(np.mean(values))


def _features(name: str, representation: SparseCodes | torch.Tensor) -> torch.Tensor:
    """``[N, D]`` finite float features of codes or dense embeddings."""
    if isinstance(representation, SparseCodes):
        features = representation.to_dense().float().cpu()
    else:
        check_floating(name, representation)
        features = representation.float().cpu()
    check_ndim(name, features, 2)
    if 0 in features.shape:
        raise ValueError(
            f"{name} must hold at least one row and one feature, got {tuple(features.shape)}"
        )
    check_finite(name, features)
    return features


def _labelled_features(train, train_labels, test, test_labels):
    train_x, test_x = _features("train", train), _features("test", test)
    if train_x.shape[1] != test_x.shape[1]:
        raise ValueError(
            f"train and test must have the same width, got {tuple(train_x.shape)} and "
            f"{tuple(test_x.shape)}"
        )
    train_labels = check_labels(train_labels, train_x.shape[0], "train_labels").cpu()
    test_labels = check_labels(test_labels, test_x.shape[0], "test_labels").cpu()
    return train_x, train_labels, test_x, test_labels


def knn_accuracy(
    train: SparseCodes | torch.Tensor,
    train_labels: torch.Tensor,
    test: SparseCodes | torch.Tensor,
    test_labels: torch.Tensor,
    neighbours: int = 10,
) -> float:
    """Accuracy of a cosine kNN majority vote (ties: the smallest label; neighbour ties: lower id).

    ``neighbours`` larger than the training set uses the whole training set."""
    train_x, train_labels, test_x, test_labels = _labelled_features(
        train, train_labels, test, test_labels
    )
    check_int_in_range("neighbours", neighbours, 1)
    train_x = torch.nn.functional.normalize(train_x, dim=-1)
    test_x = torch.nn.functional.normalize(test_x, dim=-1)
    neighbours = min(neighbours, train_x.shape[0])
    ids = topk_codes(test_x @ train_x.T, neighbours).indices
    votes = train_labels[ids]
    n_classes = int(torch.cat([train_labels, test_labels]).max()) + 1
    counts = torch.zeros(len(votes), n_classes).scatter_add_(
        1, votes, torch.ones_like(votes).float()
    )
    predicted = topk_codes(counts, 1).indices[:, 0]
    return float((predicted == test_labels).float().mean())


def logistic_accuracy(
    train: SparseCodes | torch.Tensor,
    train_labels: torch.Tensor,
    test: SparseCodes | torch.Tensor,
    test_labels: torch.Tensor,
    max_iter: int = 200,
) -> float:
    """Test accuracy of an L2-regularised logistic regression fitted on the training codes.

    Latents that are zero in every training code carry no information and are dropped first, which
    makes the fit on k-sparse codes as cheap as on a few hundred dense features.
    """
    from sklearn.linear_model import LogisticRegression

    train_x, train_labels, test_x, test_labels = _labelled_features(
        train, train_labels, test, test_labels
    )
    check_int_in_range("max_iter", max_iter, 1)
    used = (train_x != 0).any(dim=0)
    if not bool(used.any()):
        raise ValueError("train has no non-zero feature, so there is nothing to fit")
    if torch.unique(train_labels).numel() < 2:
        raise ValueError("train_labels must hold at least two classes to fit a classifier")
    train_x, test_x = train_x[:, used].numpy(), test_x[:, used].numpy()
    classifier = LogisticRegression(max_iter=max_iter)
    classifier.fit(train_x, train_labels.numpy())
    return float((classifier.predict(test_x) == test_labels.numpy()).mean())
