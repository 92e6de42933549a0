"""The head inside sentence-transformers.

:func:`to_sparse_encoder` appends a trained (tied) head to a ``SentenceTransformer`` backbone as
sentence-transformers' own ``SparseAutoEncoder`` module, giving a ``SparseEncoder`` whose
``encode`` returns the same k-sparse codes as :meth:`SparseAutoencoder.encode` on the backbone's
embeddings, and that saves and loads with plain ``SparseEncoder(path)`` (no custom code).
End-to-end training of that pipeline is in :mod:`csrv2.finetuning`.
"""

from __future__ import annotations

import torch

from csrv2.data import load_backbone
from csrv2.model import SparseAutoencoder

__all__ = ["embedding_dimension", "st_head_module", "to_sparse_encoder"]


def embedding_dimension(model) -> int:
    """The sentence-embedding width of a ``SentenceTransformer``."""
    # Renamed in sentence-transformers 6; the old name still exists there but warns.
    getter = (
        getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    )
    return int(getter())


def to_sparse_encoder(head: SparseAutoencoder, backbone=None):
    """A sentence-transformers ``SparseEncoder``: the backbone's modules followed by ``head``.

    ``backbone`` is a ``SentenceTransformer``, a model path, or ``None`` for the bundled MiniLM.
    Raises ``ValueError`` for an untied head (sentence-transformers' module is tied) or a
    backbone whose embedding width differs from the head's ``d_in``.
    """
    from sentence_transformers import SparseEncoder

    model = load_backbone(backbone)
    width = embedding_dimension(model)
    if width != head.d_in:
        raise ValueError(
            f"backbone embeddings have dimension {width}, but the head expects d_in={head.d_in}"
        )
    return SparseEncoder(modules=[*model, st_head_module(head)], device=str(model.device))


def st_head_module(head: SparseAutoencoder, dead_threshold: int = 30):
    """sentence-transformers' ``SparseAutoEncoder`` module with ``head``'s weights and dead-latent
    counters (``k_aux=0``: AuxK is computed by :class:`csrv2.finetuning.CSRv2Loss`, not by the
    module). Raises ``ValueError`` for an untied head."""
    try:  # sentence-transformers >= 6 moved the modules
        from sentence_transformers.sparse_encoder.modules import (
            SparseAutoEncoder as STSparseAutoEncoder,
        )
    except ImportError:
        from sentence_transformers.sparse_encoder.models import (
            SparseAutoEncoder as STSparseAutoEncoder,
        )

    if not head.tied:
        raise ValueError("head must be tied: sentence-transformers' SparseAutoEncoder ties W_dec")
    module = STSparseAutoEncoder(
        input_dim=head.d_in,
        hidden_dim=head.hidden,
        k=head.k,
        k_aux=0,
        dead_threshold=dead_threshold,
    )
    with torch.no_grad():
        module.pre_bias.copy_(head.pre_bias)
        module.encoder.weight.copy_(head.encoder.weight)
        module.latent_bias.copy_(head.latent_bias)
        module.stats_last_nonzero.copy_(head.calls_since_fired)
    return module.to(head.pre_bias.device)
