"""csrv2: ultra-sparse embeddings (CSR / CSRv2 sparse heads) and fast sparse retrieval.

A :class:`SparseAutoencoder` turns a dense embedding into a k-sparse code (k = 2..8 latents out
of thousands); :func:`train` fits it on precomputed embeddings with CSRv2's k-annealing and
supervised contrastive loss; :class:`SparseIndex` searches the codes through an inverted index.
"""

from importlib.metadata import version

from csrv2.backbone import to_sparse_encoder
from csrv2.finetuning import CSRv2Loss, FinetuneConfig, FinetuneResult, finetune
from csrv2.index import SearchResult, SparseIndex, numba_available
from csrv2.losses import (
    LossConfig,
    LossTerms,
    auxk_loss,
    balance_loss,
    csr_loss,
    self_contrastive_loss,
    supervised_contrastive_loss,
)
from csrv2.metrics import (
    dead_latent_fraction,
    effective_latents,
    expected_postings_per_query,
    knn_accuracy,
    latent_usage,
    logistic_accuracy,
    mrr_at_k,
    ndcg_at_k,
    nmse,
    posting_imbalance,
    usage_entropy,
    usage_gini,
)
from csrv2.model import SparseAutoencoder
from csrv2.schedule import annealed_k, effective_k_init
from csrv2.training import RECIPES, TrainConfig, TrainResult, recipe, train, usage_report

__version__ = version("csrv2")

__all__ = [
    "RECIPES",
    "CSRv2Loss",
    "FinetuneConfig",
    "FinetuneResult",
    "LossConfig",
    "LossTerms",
    "SearchResult",
    "SparseAutoencoder",
    "SparseIndex",
    "TrainConfig",
    "TrainResult",
    "__version__",
    "annealed_k",
    "auxk_loss",
    "balance_loss",
    "csr_loss",
    "dead_latent_fraction",
    "effective_k_init",
    "effective_latents",
    "expected_postings_per_query",
    "finetune",
    "knn_accuracy",
    "latent_usage",
    "logistic_accuracy",
    "mrr_at_k",
    "ndcg_at_k",
    "nmse",
    "numba_available",
    "posting_imbalance",
    "recipe",
    "self_contrastive_loss",
    "supervised_contrastive_loss",
    "to_sparse_encoder",
    "train",
    "usage_entropy",
    "usage_gini",
    "usage_report",
]
