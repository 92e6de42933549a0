"""One evaluation for every representation: sparse codes and dense (truncated) embeddings alike.

Classification: cosine kNN (10 neighbours) and logistic-regression accuracy, trained on the
train split's representations, measured on the test split. Retrieval: cosine ranking of the
documents for each query, nDCG@10 and MRR@10 (ties broken by the lower document id; at k = 2
many scores are exactly equal, so the rule matters). Sparse codes also report latent usage over
every text the task encodes, and NMSE on the test embeddings.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from csrv2.index import SparseIndex
from csrv2.metrics import (
    dead_latent_fraction,
    effective_latents,
    knn_accuracy,
    logistic_accuracy,
    mrr_at_k,
    ndcg_at_k,
    rank_dense,
)
from kernelkit.topk import SparseCodes

__all__ = ["ClassificationData", "RetrievalData", "evaluate_classification", "evaluate_retrieval"]

Representation = Callable[[torch.Tensor], SparseCodes | torch.Tensor]


@dataclass
class ClassificationData:
    train: torch.Tensor
    train_labels: torch.Tensor
    test: torch.Tensor
    test_labels: torch.Tensor


@dataclass
class RetrievalData:
    queries: torch.Tensor
    documents: torch.Tensor
    relevant: Sequence[set[int]]


def _usage(codes: list[SparseCodes]) -> dict[str, float]:
    joined = SparseCodes.cat(codes)
    return {
        "dead_pct": 100 * dead_latent_fraction(joined),
        "effective_latents": effective_latents(joined),
    }


def evaluate_classification(
    represent: Representation, data: ClassificationData
) -> dict[str, float]:
    train, test = represent(data.train), represent(data.test)
    row = {
        "knn_acc": 100 * knn_accuracy(train, data.train_labels, test, data.test_labels),
        "logreg_acc": 100 * logistic_accuracy(train, data.train_labels, test, data.test_labels),
    }
    if isinstance(train, SparseCodes):
        row.update(_usage([train, test]))
    return row


def evaluate_retrieval(
    represent: Representation, data: RetrievalData, extra_texts: torch.Tensor | None = None
) -> dict[str, float]:
    queries, documents = represent(data.queries), represent(data.documents)
    if isinstance(queries, SparseCodes):
        index = SparseIndex(queries.dim, similarity="cosine")
        index.add(documents)
        ranked = index.search(queries, min(10, len(documents))).ids
        seen = [queries, documents] + ([represent(extra_texts)] if extra_texts is not None else [])
        usage = _usage(seen)
    else:
        ranked = rank_dense(
            F.normalize(queries, dim=-1), F.normalize(documents, dim=-1), min(10, len(documents))
        )
        usage = {}
    return {
        "ndcg10": 100 * ndcg_at_k(ranked, data.relevant, 10),
        "mrr10": 100 * mrr_at_k(ranked, data.relevant, 10),
        **usage,
    }
