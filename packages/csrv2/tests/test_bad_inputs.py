"""csrv2's public functions under kernelkit's bad-input harness (kernelkit.testing_inputs).

Functions that take ``SparseCodes`` are registered with the codes' ``indices`` and ``values``
as their arguments, so the harness varies those (the codes are built in the call).
"""

import functools

import csrv2
import torch
from hypothesis import strategies as st

from kernelkit import SparseCodes
from kernelkit.testing import (
    ChoiceArg,
    CountArg,
    IdsArg,
    PublicFunction,
    RealArg,
    TensorArg,
    assert_handles_bad_inputs,
    tensors,
    uncovered_names,
)

D_IN, HIDDEN, K = 4, 8, 2
FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


@functools.cache
def head():
    torch.manual_seed(0)
    return csrv2.SparseAutoencoder(D_IN, HIDDEN, K)


@st.composite
def embeddings(draw, rows=None):
    n = draw(st.integers(2, 5)) if rows is None else rows
    # Distinct, non-zero rows: a spread for nmse, features for the classifiers.
    noise = draw(tensors(shape=(n, D_IN), min_value=0, max_value=1))
    return noise + torch.arange(1, n + 1).unsqueeze(1) * torch.tensor([1.0, -1.0, 0.5, 2.0])


@st.composite
def codes_parts(draw):
    n = draw(st.integers(2, 5))
    indices = torch.stack(
        [
            torch.randperm(
                HIDDEN, generator=torch.Generator().manual_seed(draw(st.integers(0, 99)))
            )[:K]
            for _ in range(n)
        ]
    )
    values = draw(tensors(shape=(n, K), min_value=0.125, max_value=2))
    return {"indices": indices, "values": values, "labels": torch.arange(n) % 2}


def codes(indices, values):
    return SparseCodes(indices, values, HIDDEN)


CODES = {
    "indices": IdsArg(high=HIDDEN, ndim=2),
    "values": TensorArg(ndim=2),
}
# The contrastive losses propagate NaN code values, like torch's losses (their docstrings).
LOSS_CODES = {**CODES, "values": TensorArg(ndim=2, nan="propagate")}


def _codes_entry(name, fn, arguments=CODES, **extra_args):
    return PublicFunction(
        name,
        lambda indices, values, labels, **kw: fn(codes(indices, values), **kw),
        codes_parts().map(lambda kw: {**kw, **{k: v[1] for k, v in extra_args.items()}}),
        {**arguments, **{k: v[0] for k, v in extra_args.items()}},
    )


@st.composite
def ranking(draw):
    queries, docs = draw(st.integers(1, 3)), 6
    ranked = torch.stack([torch.randperm(docs)[:4] for _ in range(queries)])
    return {"ranked": ranked, "relevant": [{0, 1}] * queries, "k": 3}


@st.composite
def labelled(draw):
    train, test = draw(embeddings(rows=6)), draw(embeddings(rows=3))
    return {
        "train": train,
        "train_labels": torch.tensor([0, 1, 0, 1, 0, 1]),
        "test": test,
        "test_labels": torch.tensor([1, 0, 1]),
    }


LABELLED = {
    "train": TensorArg(ndim=2),
    "train_labels": IdsArg(high=None, ndim=1),
    "test": TensorArg(ndim=2),
    "test_labels": IdsArg(high=None, ndim=1),
}

FUNCTIONS = [
    PublicFunction(
        "SparseAutoencoder.encode",
        lambda x, k: head().encode(x, k),
        embeddings().map(lambda x: {"x": x, "k": K}),
        {"x": TensorArg(dtypes=FLOATS, ndim=2), "k": CountArg(low=1, high=HIDDEN, optional=True)},
    ),
    PublicFunction(
        "SparseAutoencoder.decode",
        lambda codes: head().decode(codes),
        embeddings().map(lambda x: {"codes": torch.relu(x.repeat(1, HIDDEN // D_IN))}),
        {"codes": TensorArg(dtypes=FLOATS, ndim=2, nan="propagate")},
    ),
    PublicFunction(
        "SparseAutoencoder.forward",
        lambda x: head()(x),
        embeddings().map(lambda x: {"x": x}),
        {"x": TensorArg(dtypes=FLOATS, ndim=2)},
    ),
    PublicFunction(
        "csr_loss",
        lambda x, k, labels: (
            csrv2.csr_loss(head(), x, k, csrv2.LossConfig(auxk=4), labels, track_dead=False).total
        ),
        embeddings().map(lambda x: {"x": x, "k": K, "labels": torch.arange(x.shape[0]) % 2}),
        {
            "x": TensorArg(ndim=2),
            "k": CountArg(low=1, high=HIDDEN),
            "labels": IdsArg(high=None, ndim=1),
        },
    ),
    PublicFunction(
        "auxk_loss",
        lambda pre, residual, auxk: csrv2.auxk_loss(
            head(), pre, residual, torch.arange(HIDDEN) % 2 == 0, auxk
        ),
        embeddings().map(lambda x: {"pre": x.repeat(1, HIDDEN // D_IN), "residual": x, "auxk": 2}),
        {"pre": TensorArg(ndim=2), "residual": TensorArg(ndim=2), "auxk": CountArg(low=0)},
    ),
    _codes_entry("latent_usage", csrv2.latent_usage),
    _codes_entry("dead_latent_fraction", csrv2.dead_latent_fraction),
    _codes_entry("usage_entropy", csrv2.usage_entropy),
    _codes_entry("effective_latents", csrv2.effective_latents),
    _codes_entry("usage_gini", csrv2.usage_gini),
    _codes_entry("posting_imbalance", csrv2.posting_imbalance),
    _codes_entry(
        "expected_postings_per_query",
        csrv2.expected_postings_per_query,
        database_size=(CountArg(low=1, optional=True), 1000),
    ),
    _codes_entry("balance_loss", csrv2.balance_loss, LOSS_CODES),
    PublicFunction(
        "usage_report",
        lambda embeddings, k, batch_size: csrv2.usage_report(head(), embeddings, k, batch_size),
        embeddings().map(lambda x: {"embeddings": x, "k": K, "batch_size": 2}),
        {
            "embeddings": TensorArg(dtypes=FLOATS, ndim=2),
            "k": CountArg(low=1, high=HIDDEN),
            "batch_size": CountArg(low=1),
        },
    ),
    _codes_entry(
        "self_contrastive_loss",
        csrv2.self_contrastive_loss,
        LOSS_CODES,
        temperature=(RealArg(low=1e-12), 0.2),
    ),
    PublicFunction(
        "supervised_contrastive_loss",
        lambda indices, values, labels, temperature: csrv2.supervised_contrastive_loss(
            codes(indices, values), labels, temperature
        ),
        codes_parts().map(lambda kw: {**kw, "temperature": 0.2}),
        {**LOSS_CODES, "labels": IdsArg(high=None, ndim=1), "temperature": RealArg(low=1e-12)},
    ),
    PublicFunction(
        "nmse",
        csrv2.nmse,
        embeddings().map(lambda x: {"x": x, "reconstruction": x.flip(0)}),
        {"x": TensorArg(ndim=2), "reconstruction": TensorArg(ndim=2)},
    ),
    PublicFunction(
        "ndcg_at_k",
        csrv2.ndcg_at_k,
        ranking(),
        {"ranked": IdsArg(high=None, ndim=2), "k": CountArg(low=1)},
    ),
    PublicFunction(
        "mrr_at_k",
        csrv2.mrr_at_k,
        ranking(),
        {"ranked": IdsArg(high=None, ndim=2), "k": CountArg(low=1)},
    ),
    PublicFunction(
        "knn_accuracy",
        lambda neighbours, **kw: csrv2.knn_accuracy(**kw, neighbours=neighbours),
        labelled().map(lambda kw: {**kw, "neighbours": 3}),
        {**LABELLED, "neighbours": CountArg(low=1)},
    ),
    PublicFunction(
        "logistic_accuracy",
        lambda max_iter, **kw: csrv2.logistic_accuracy(**kw, max_iter=max_iter),
        labelled().map(lambda kw: {**kw, "max_iter": 20}),
        {**LABELLED, "max_iter": CountArg(low=1)},
        examples=1,
    ),
    PublicFunction(
        "annealed_k",
        csrv2.annealed_k,
        st.builds(
            lambda: {
                "step": 2,
                "total_steps": 10,
                "k_final": 2,
                "hidden": 16,
                "k_init": 4,
                "decay_fraction": 0.5,
            }
        ),
        {
            "step": CountArg(low=0, high=lambda kw: kw["total_steps"] - 1),
            "total_steps": CountArg(low=1),
            "k_final": CountArg(low=1, high=lambda kw: kw["hidden"]),
            "hidden": CountArg(low=1),
            "k_init": CountArg(low=1),
            "decay_fraction": RealArg(low=0.0, high=1.0),
        },
    ),
    PublicFunction(
        "effective_k_init",
        csrv2.effective_k_init,
        st.builds(lambda: {"k_init": 4, "k_final": 2, "hidden": 16}),
        {
            "k_init": CountArg(low=1),
            "k_final": CountArg(low=1, high=lambda kw: kw["hidden"]),
            "hidden": CountArg(low=1),
        },
    ),
    PublicFunction(
        "recipe",
        csrv2.recipe,
        st.builds(lambda: {"name": "csrv2"}),
        {"name": ChoiceArg()},
    ),
    PublicFunction(
        "train",
        lambda embeddings, labels, epochs: csrv2.train(
            embeddings,
            labels,
            csrv2.TrainConfig(k=K, hidden=HIDDEN, epochs=epochs, batch_size=4, auxk=4),
            show_progress=False,
        ).model.encode(embeddings if isinstance(embeddings, torch.Tensor) else None),
        embeddings(rows=6).map(
            lambda x: {"embeddings": x, "labels": torch.arange(6) % 2, "epochs": 1}
        ),
        {
            "embeddings": TensorArg(ndim=2),
            "labels": IdsArg(high=None, ndim=1, optional=True),
            "epochs": CountArg(low=1),
        },
        examples=1,
    ),
    PublicFunction(
        "SparseIndex.search",
        lambda indices, values, labels, top_k: _index().search(codes(indices, values), top_k),
        codes_parts().map(lambda kw: {**kw, "top_k": 2}),
        {**CODES, "top_k": CountArg(low=1, high=4)},
    ),
    PublicFunction(
        "SparseIndex.add",
        lambda indices, values, labels: csrv2.SparseIndex(HIDDEN).add(codes(indices, values)),
        codes_parts(),
        CODES,
    ),
]


@functools.cache
def _stored():
    generator = torch.Generator().manual_seed(0)
    indices = torch.stack([torch.randperm(HIDDEN, generator=generator)[:K] for _ in range(4)])
    return SparseCodes(indices, torch.rand(4, K, generator=generator) + 0.1, HIDDEN)


def _index():
    index = csrv2.SparseIndex(HIDDEN)
    index.add(_stored())
    return index


EXEMPT = {
    "RECIPES": "a dict of named configurations (used by the registered recipe)",
    "CSRv2Loss": "a sentence-transformers loss module; its batches go through csr_loss",
    "FinetuneConfig": "configuration dataclass; validated in __post_init__",
    "FinetuneResult": "result dataclass of finetune",
    "LossConfig": "configuration dataclass; validated in __post_init__",
    "LossTerms": "result dataclass of csr_loss",
    "SearchResult": "result tuple of SparseIndex.search",
    "TrainConfig": "configuration dataclass; validated in __post_init__",
    "TrainResult": "result dataclass of train",
    "__version__": "a string",
    "numba_available": "takes no arguments; says whether the optional numba kernel imports",
    "finetune": "fine-tunes a sentence-transformers backbone on texts (minutes); tested in test_finetuning",
    "to_sparse_encoder": "wraps a trained head and a backbone into a sentence-transformers model",
}


def test_bad_inputs(bad_input_table):
    bad_input_table("csrv2", FUNCTIONS, assert_handles_bad_inputs(FUNCTIONS))


def test_every_public_name_is_registered_or_exempt():
    assert uncovered_names(csrv2, FUNCTIONS, EXEMPT) == []
