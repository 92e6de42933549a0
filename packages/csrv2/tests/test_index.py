import pytest
import torch
from csrv2 import SparseIndex
from hypothesis import given, settings
from hypothesis import strategies as st

from kernelkit.io import ArtifactError
from kernelkit.topk import SparseCodes, topk_codes


def brute_force(docs: SparseCodes, queries: SparseCodes, top_k: int, cosine: bool = False):
    d, q = docs.to_dense().double(), queries.to_dense().double()
    if cosine:
        d = torch.nn.functional.normalize(d, dim=-1)
        q = torch.nn.functional.normalize(q, dim=-1)
    scores = q @ d.T
    # Stable sort on score descending: equal scores stay in id order.
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :top_k]
    return scores.gather(1, order), order


@st.composite
def integer_codes(draw, max_rows=30):
    """Codes with small integer values (many exact ties) and some all-zero rows."""
    dim = draw(st.integers(1, 12))
    k = draw(st.integers(1, min(dim, 4)))
    seed = draw(st.integers(0, 2**16))
    gen = torch.Generator().manual_seed(seed)

    def make(rows):
        keys = torch.rand(rows, dim, generator=gen)
        indices = torch.topk(keys, k, dim=1).indices
        values = torch.randint(-1, 3, (rows, k), generator=gen).float()
        values[torch.rand(rows, generator=gen) < 0.2] = 0.0
        return SparseCodes(indices, values, dim)

    docs = make(draw(st.integers(1, max_rows)))
    queries = make(draw(st.integers(0, 8)))
    top_k = draw(st.integers(1, len(docs)))
    return docs, queries, top_k


@settings(max_examples=60)
@given(case=integer_codes(), method=st.sampled_from(["inverted", "scan"]))
def test_search_equals_brute_force_with_ties_and_zero_queries(case, method):
    docs, queries, top_k = case
    index = SparseIndex(docs.dim)
    # Added in two batches: ids continue across add() calls.
    split = len(docs) // 2
    index.add(docs[:split])
    index.add(docs[split:])
    scores, ids = index.search(queries, top_k, method=method)
    ref_scores, ref_ids = brute_force(docs, queries, top_k)
    assert torch.equal(ids, ref_ids)
    assert torch.equal(scores.double(), ref_scores)


@settings(max_examples=20)
@given(case=integer_codes())
def test_cosine_search_equals_brute_force(case):
    docs, queries, top_k = case
    index = SparseIndex(docs.dim, similarity="cosine")
    index.add(docs)
    scores, _ = index.search(queries, top_k)
    ref_scores, _ = brute_force(docs, queries, top_k, cosine=True)
    torch.testing.assert_close(scores.double(), ref_scores, rtol=1e-5, atol=1e-6)


def test_real_valued_codes_match_scan_and_rank_the_same():
    gen = torch.Generator().manual_seed(0)
    docs = topk_codes(torch.randn(3000, 256, generator=gen), 4)
    docs = docs.with_values(docs.values.relu())
    queries = topk_codes(torch.randn(40, 256, generator=gen), 4)
    queries = queries.with_values(queries.values.relu())
    index = SparseIndex(256)
    index.add(docs)
    fast = index.search(queries, 10)
    scan = index.search(queries, 10, method="scan")
    torch.testing.assert_close(fast.scores, scan.scores)
    assert torch.equal(fast.ids, scan.ids)


def test_all_zero_query_returns_lowest_ids():
    index = SparseIndex(5)
    index.add(SparseCodes(torch.tensor([[0], [1], [2], [3]]), torch.ones(4, 1), 5))
    zero = SparseCodes(torch.tensor([[4]]), torch.zeros(1, 1), 5)
    scores, ids = index.search(zero, 3)
    assert ids.tolist() == [[0, 1, 2]] and scores.tolist() == [[0.0, 0.0, 0.0]]


def test_save_load_round_trip(tmp_path):
    gen = torch.Generator().manual_seed(1)
    docs = topk_codes(torch.randn(50, 32, generator=gen), 2)
    index = SparseIndex(32, similarity="cosine")
    index.add(docs)
    index.save(tmp_path / "idx")
    loaded = SparseIndex.load(tmp_path / "idx")
    assert loaded.similarity == "cosine" and len(loaded) == 50
    assert torch.equal(loaded.codes().indices, docs.indices)
    assert torch.equal(loaded.codes().values, docs.values)
    queries = topk_codes(torch.randn(5, 32, generator=gen), 2)
    a, b = index.search(queries, 7), loaded.search(queries, 7)
    assert torch.equal(a.ids, b.ids) and torch.equal(a.scores, b.scores)
    (tmp_path / "idx" / "manifest.json").write_text("{}")
    with pytest.raises(ArtifactError):
        SparseIndex.load(tmp_path / "idx")


def test_posting_lengths_and_memory():
    index = SparseIndex(4)
    index.add(SparseCodes(torch.tensor([[0, 1], [1, 2], [1, 3]]), torch.ones(3, 2), 4))
    assert index.posting_lengths().tolist() == [1, 3, 1, 1]
    # 6 postings x (8-byte id + 4-byte value) + 5 int64 offsets.
    assert index.memory_bytes() == 6 * 12 + 5 * 8


def test_bad_inputs():
    index = SparseIndex(8)
    with pytest.raises(ValueError, match="empty index"):
        index.search(SparseCodes(torch.zeros(1, 1, dtype=torch.long), torch.ones(1, 1), 8))
    with pytest.raises(ValueError, match="dim=8"):
        index.add(SparseCodes(torch.zeros(1, 1, dtype=torch.long), torch.ones(1, 1), 9))
    with pytest.raises(TypeError, match="SparseCodes"):
        index.add(torch.ones(2, 8))
    index.add(SparseCodes(torch.zeros(2, 1, dtype=torch.long), torch.ones(2, 1), 8))
    query = SparseCodes(torch.zeros(1, 1, dtype=torch.long), torch.ones(1, 1), 8)
    with pytest.raises(ValueError, match="top_k must be >= 1 and <= 2"):
        index.search(query, 3)
    with pytest.raises(ValueError, match="finite"):
        index.add(
            SparseCodes(torch.zeros(1, 1, dtype=torch.long), torch.full((1, 1), float("nan")), 8)
        )
    with pytest.raises(ValueError, match="similarity"):
        SparseIndex(8, similarity="l2")


@pytest.mark.gpu
def test_gpu_scan_matches_the_inverted_lists():
    gen = torch.Generator().manual_seed(2)
    docs = topk_codes(torch.randn(5000, 512, generator=gen), 2)
    docs = docs.with_values(docs.values.relu())
    queries = topk_codes(torch.randn(33, 512, generator=gen), 2)
    index = SparseIndex(512)
    index.add(docs)
    on_cpu = index.search(queries, 10)
    on_gpu = index.search(queries.to("cuda"), 10, method="scan")
    torch.testing.assert_close(on_gpu.scores, on_cpu.scores)
    assert torch.equal(on_gpu.ids, on_cpu.ids)
