import os

import pytest
import torch
from csrv2 import SparseAutoencoder
from csrv2.backbone import to_sparse_encoder
from csrv2.data import load_backbone

os.environ.setdefault("HF_HUB_OFFLINE", "1")

TEXTS = [
    "How do I reset my password?",
    "I forgot my password.",
    "My printer is not printing.",
    "The printer shows an error.",
    "What is a computer?",
    "Who invented computers?",
]


@pytest.fixture(scope="module")
def minilm():
    return load_backbone()


def test_sparse_encoder_pipeline_matches_the_head(minilm):
    torch.manual_seed(0)
    head = SparseAutoencoder(384, 1536, 4)
    with torch.no_grad():
        head.latent_bias.normal_(0, 0.1)
    encoder = to_sparse_encoder(head, minilm)
    sparse = encoder.encode(TEXTS, convert_to_tensor=True, convert_to_sparse_tensor=False)
    with torch.no_grad():
        expected = head.encode(minilm.encode(TEXTS, convert_to_tensor=True)).to_dense()
    torch.testing.assert_close(sparse.float(), expected, rtol=1e-4, atol=1e-5)


def test_dimension_mismatch_with_the_backbone_is_an_error(minilm):
    with pytest.raises(ValueError, match="dimension 384, but the head expects d_in=128"):
        to_sparse_encoder(SparseAutoencoder(128, 512, 2), minilm)
    with pytest.raises(ValueError, match="must be tied"):
        to_sparse_encoder(SparseAutoencoder(384, 512, 2, tied=False), minilm)
