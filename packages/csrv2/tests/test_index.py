import json

import pytest
import torch
from csrv2 import SparseIndex
from csrv2 import index as index_module
from hypothesis import given, settings
from hypothesis import strategies as st

from kernelkit.io import ArtifactError, load_artifact, save_artifact
from kernelkit.topk import SparseCodes, topk_codes

needs_numba = pytest.mark.skipif(
    not index_module.numba_available(), reason="numba not installed (csrv2[fast])"
)
# Every way the index can search; the numba kernel only where numba is installed. The third
# entry is the index's pruning option (numba: the threshold algorithm; torch and scan walk the
# impact-ordered lists exhaustively).
SEARCHES = [
    (method, kernel, pruning)
    for method, kernel in [("inverted", "torch"), ("scan", "auto")]
    + ([("inverted", "numba")] if index_module.numba_available() else [])
    for pruning in (False, True)
]


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
    """Codes with small integer values (many exact ties), some all-zero rows and, when drawn,
    repeated latents within a code; when drawn, no negative value (the threshold algorithm's
    own path: with one, a pruning index falls back to the exhaustive kernel)."""
    dim = draw(st.integers(1, 12))
    k = draw(st.integers(1, min(dim, 4)))
    duplicates = draw(st.booleans())
    low = draw(st.sampled_from([-1, 0]))
    seed = draw(st.integers(0, 2**16))
    gen = torch.Generator().manual_seed(seed)

    def make(rows):
        if duplicates:
            indices = torch.randint(0, dim, (rows, k), generator=gen)
        else:
            indices = torch.topk(torch.rand(rows, dim, generator=gen), k, dim=1).indices
        values = torch.randint(low, 3, (rows, k), generator=gen).float()
        values[torch.rand(rows, generator=gen) < 0.2] = 0.0
        return SparseCodes(indices, values, dim)

    docs = make(draw(st.integers(1, max_rows)))
    queries = make(draw(st.integers(0, 8)))
    top_k = draw(st.integers(1, len(docs)))
    return docs, queries, top_k


@settings(max_examples=120)
@given(
    case=integer_codes(),
    search=st.sampled_from(SEARCHES),
    value_dtype=st.sampled_from([torch.float32, torch.float16]),
)
def test_search_equals_brute_force_with_ties_duplicates_and_zero_queries(case, search, value_dtype):
    docs, queries, top_k = case
    method, kernel, pruning = search
    index = SparseIndex(docs.dim, value_dtype=value_dtype, pruning=pruning)
    # Added in two batches: ids continue across add() calls, and a later add() merges into
    # posting lists that were already built.
    split = len(docs) // 2
    index.add(docs[:split])
    index.posting_lengths()
    index.add(docs[split:])
    scores, ids = index.search(queries, top_k, method=method, kernel=kernel)
    ref_scores, ref_ids = brute_force(docs, queries, top_k)
    assert torch.equal(ids, ref_ids)
    assert torch.equal(scores.double(), ref_scores)


@settings(max_examples=20)
@given(case=integer_codes(), search=st.sampled_from(SEARCHES))
def test_cosine_search_equals_brute_force(case, search):
    docs, queries, top_k = case
    index = SparseIndex(docs.dim, similarity="cosine", pruning=search[2])
    index.add(docs)
    scores, _ = index.search(queries, top_k, method=search[0], kernel=search[1])
    ref_scores, _ = brute_force(docs, queries, top_k, cosine=True)
    torch.testing.assert_close(scores.double(), ref_scores, rtol=1e-5, atol=1e-6)


@needs_numba
@settings(max_examples=15)
@given(
    seed=st.integers(0, 2**16),
    k=st.integers(1, 8),
    value_dtype=st.sampled_from([torch.float32, torch.float16]),
    top_k=st.integers(1, 50),
)
def test_numba_and_torch_kernels_agree_bit_for_bit(seed, k, value_dtype, top_k):
    """Real-valued codes (signed, so some scores are negative and zeros rank between): both
    kernels sum the same float64 products in the same order."""
    gen = torch.Generator().manual_seed(seed)
    docs = topk_codes(torch.randn(400, 64, generator=gen), k)
    queries = topk_codes(torch.randn(9, 64, generator=gen), k)
    index = SparseIndex(64, value_dtype=value_dtype)
    index.add(docs)
    a = index.search(queries, top_k, kernel="numba")
    b = index.search(queries, top_k, kernel="torch")
    assert torch.equal(a.ids, b.ids) and torch.equal(a.scores, b.scores)
    ref_scores, ref_ids = brute_force(index.codes(), queries, top_k)
    assert torch.equal(a.ids, ref_ids)
    torch.testing.assert_close(a.scores.double(), ref_scores, rtol=1e-6, atol=1e-6)


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


@pytest.mark.parametrize("kernel", ["torch", "auto"])
def test_all_zero_query_returns_lowest_ids(kernel):
    index = SparseIndex(5)
    index.add(SparseCodes(torch.tensor([[0], [1], [2], [3]]), torch.ones(4, 1), 5))
    zero = SparseCodes(torch.tensor([[4]]), torch.zeros(1, 1), 5)
    scores, ids = index.search(zero, 3, kernel=kernel)
    assert ids.tolist() == [[0, 1, 2]] and scores.tolist() == [[0.0, 0.0, 0.0]]


@pytest.mark.parametrize("kernel", ["torch", "auto"])
def test_negative_scores_rank_below_untouched_documents(kernel):
    index = SparseIndex(3)
    index.add(
        SparseCodes(torch.tensor([[0], [1], [0], [2]]), torch.tensor([[1.0], [1], [-1], [1]]), 3)
    )
    query = SparseCodes(torch.tensor([[0]]), torch.tensor([[2.0]]), 3)
    scores, ids = index.search(query, 4, kernel=kernel)
    assert ids.tolist() == [[0, 1, 3, 2]] and scores.tolist() == [[2.0, 0.0, 0.0, -2.0]]


def test_auto_falls_back_to_torch_without_numba(monkeypatch):
    gen = torch.Generator().manual_seed(3)
    docs = topk_codes(torch.randn(200, 32, generator=gen), 2)
    queries = topk_codes(torch.randn(5, 32, generator=gen), 2)
    index = SparseIndex(32)
    index.add(docs)
    expected = index.search(queries, 5, kernel="torch")
    monkeypatch.setattr(index_module, "_numba_module", lambda: None)
    assert not index_module.numba_available()
    got = index.search(queries, 5)
    assert torch.equal(got.ids, expected.ids) and torch.equal(got.scores, expected.scores)
    with pytest.raises(ImportError, match=r"csrv2\[fast\]"):
        index.search(queries, 5, kernel="numba")


@pytest.mark.parametrize("value_dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("similarity", ["dot", "cosine"])
def test_save_load_round_trip_in_the_compact_form(tmp_path, value_dtype, similarity):
    gen = torch.Generator().manual_seed(1)
    docs = topk_codes(torch.randn(50, 32, generator=gen), 2)
    index = SparseIndex(32, similarity=similarity, value_dtype=value_dtype)
    index.add(docs)
    index.save(tmp_path / "idx")
    tensors, config = load_artifact(tmp_path / "idx")
    assert tensors["indices"].dtype == torch.uint16 and tensors["values"].dtype == value_dtype
    assert tensors["indices"].shape == (50, 2)
    assert config["value_dtype"] == str(value_dtype).removeprefix("torch.")
    loaded = SparseIndex.load(tmp_path / "idx")
    assert loaded.similarity == similarity and len(loaded) == 50
    assert loaded.value_dtype == value_dtype and loaded.latent_dtype == torch.uint16
    assert torch.equal(loaded.codes().indices, index.codes().indices)
    assert torch.equal(loaded.codes().values, index.codes().values)
    queries = topk_codes(torch.randn(5, 32, generator=gen), 2)
    a, b = index.search(queries, 7), loaded.search(queries, 7)
    assert torch.equal(a.ids, b.ids) and torch.equal(a.scores, b.scores)
    (tmp_path / "idx" / "manifest.json").write_text("{}")
    with pytest.raises(ArtifactError):
        SparseIndex.load(tmp_path / "idx")


def test_load_reads_the_int64_float32_form_of_csrv2_0_1(tmp_path):
    gen = torch.Generator().manual_seed(4)
    docs = topk_codes(torch.randn(20, 16, generator=gen), 3)
    save_artifact(
        tmp_path / "old",
        {"indices": docs.indices, "values": docs.values},
        {"dim": 16, "similarity": "cosine", "size": 20},
        kind=index_module.INDEX_KIND,
    )
    loaded = SparseIndex.load(tmp_path / "old")
    fresh = SparseIndex(16, similarity="cosine")
    fresh.add(docs)
    assert torch.equal(loaded.codes().values, fresh.codes().values)
    assert loaded.value_dtype == torch.float32


def test_load_refuses_unknown_dtypes(tmp_path):
    index = SparseIndex(4)
    index.add(SparseCodes(torch.tensor([[0, 1]]), torch.ones(1, 2), 4))
    index.save(tmp_path / "idx")
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    save_artifact(
        tmp_path / "bad",
        load_artifact(tmp_path / "idx")[0],
        {**manifest["config"], "value_dtype": "int8"},
        kind=index_module.INDEX_KIND,
    )
    with pytest.raises(ArtifactError, match="unknown dtype"):
        SparseIndex.load(tmp_path / "bad")


def test_codes_are_the_stored_form():
    index = SparseIndex(4)
    index.add(
        SparseCodes(
            torch.tensor([[3, 1, 3], [2, 2, 0], [1, 0, 2]]),
            torch.tensor([[1.0, 2.0, 4.0], [1.0, -1.0, 0.0], [0.5, 0.0, 0.0]]),
            4,
        )
    )
    stored = index.codes()
    # Duplicates summed, zeros dropped, latents ascending, padded to the widest row.
    assert stored.indices.tolist() == [[1, 3], [0, 0], [1, 0]]
    assert stored.values.tolist() == [[2.0, 5.0], [0.0, 0.0], [0.5, 0.0]]


def test_float16_values_are_rounded_once_and_searched_as_stored():
    index = SparseIndex(2, value_dtype=torch.float16)
    index.add(SparseCodes(torch.tensor([[0], [0], [1]]), torch.tensor([[0.1], [1e-9], [1.0]]), 2))
    stored = index.codes()
    assert stored.values[0, 0] == torch.tensor(0.1).half().float()
    # 1e-9 rounds to 0 in float16: no posting.
    assert index.posting_lengths().tolist() == [1, 1]
    query = SparseCodes(torch.tensor([[0]]), torch.ones(1, 1), 2)
    assert index.search(query, 1).scores.item() == torch.tensor(0.1).half().float().item()
    with pytest.raises(ValueError, match="float16"):
        index.add(SparseCodes(torch.tensor([[0]]), torch.tensor([[1e5]]), 2))


def test_posting_lengths_and_memory():
    codes = SparseCodes(torch.tensor([[0, 1], [1, 2], [1, 3]]), torch.ones(3, 2), 4)
    index = SparseIndex(4)
    index.add(codes)
    assert index.posting_lengths().tolist() == [1, 3, 1, 1]
    # 6 postings x (4-byte id + 4-byte value) + 5 int64 offsets.
    assert index.memory_bytes() == 6 * 8 + 5 * 8
    assert index.bytes_per_vector() == (6 * 8 + 5 * 8) / 3
    half = SparseIndex(4, value_dtype=torch.float16)
    half.add(codes)
    assert half.memory_bytes() == 6 * 6 + 5 * 8


def test_bad_inputs():
    index = SparseIndex(8)
    with pytest.raises(ValueError, match="empty index"):
        index.search(SparseCodes(torch.zeros(1, 1, dtype=torch.long), torch.ones(1, 1), 8))
    with pytest.raises(ValueError, match="empty"):
        index.bytes_per_vector()
    with pytest.raises(ValueError, match="dim=8"):
        index.add(SparseCodes(torch.zeros(1, 1, dtype=torch.long), torch.ones(1, 1), 9))
    with pytest.raises(TypeError, match="SparseCodes"):
        index.add(torch.ones(2, 8))
    index.add(SparseCodes(torch.zeros(2, 1, dtype=torch.long), torch.ones(2, 1), 8))
    query = SparseCodes(torch.zeros(1, 1, dtype=torch.long), torch.ones(1, 1), 8)
    with pytest.raises(ValueError, match="top_k must be >= 1 and <= 2"):
        index.search(query, 3)
    with pytest.raises(ValueError, match="kernel must be"):
        index.search(query, 1, kernel="cuda")
    with pytest.raises(ValueError, match="method must be"):
        index.search(query, 1, method="brute")
    with pytest.raises(ValueError, match="finite"):
        index.add(
            SparseCodes(torch.zeros(1, 1, dtype=torch.long), torch.full((1, 1), float("nan")), 8)
        )
    with pytest.raises(ValueError, match="similarity"):
        SparseIndex(8, similarity="l2")
    with pytest.raises(ValueError, match="value_dtype"):
        SparseIndex(8, value_dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="latent_dtype"):
        SparseIndex(8, latent_dtype=torch.int64)
    with pytest.raises(ValueError, match="dim <= 65536"):
        SparseIndex(2**16 + 1, latent_dtype=torch.uint16)
    assert SparseIndex(2**16 + 1).latent_dtype == torch.int32


@pytest.mark.gpu
@pytest.mark.parametrize("chunked", [False, True])
def test_gpu_scan_matches_the_inverted_lists(chunked, monkeypatch):
    if chunked:  # several chunks merged (1500 codes each here), as a large index is searched
        monkeypatch.setattr(index_module, "_SCAN_CHUNK", 1000)
        monkeypatch.setattr(index_module, "_SCAN_SCORES_ON_ACCELERATOR", 33 * 1500)
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


@needs_numba
def test_float16_table_decodes_every_finite_half():
    from csrv2 import _numba_search

    bits = torch.arange(2**16, dtype=torch.int32).to(torch.int16)
    halves = bits.view(torch.float16)
    finite = torch.isfinite(halves)
    table = torch.from_numpy(_numba_search.float16_table())
    assert torch.equal(table[finite.numpy()], halves[finite].float())


@needs_numba
@settings(max_examples=10)
@given(seed=st.integers(0, 2**16), width=st.integers(1, 6))
def test_numba_kernel_on_wide_queries_with_repeated_latents(seed, width):
    """Queries wider than the stored codes, every latent repeated: the kernel's own merge of
    query entries (stable, float32 sums, zeros dropped) ranks as brute force does."""
    gen = torch.Generator().manual_seed(seed)
    docs = topk_codes(torch.randn(300, 16, generator=gen), 2)
    indices = torch.randint(0, 4, (7, width), generator=gen).repeat(1, 2)
    values = torch.randint(-2, 3, (7, 2 * width), generator=gen).float()
    queries = SparseCodes(indices, values, 16)
    index = SparseIndex(16)
    index.add(docs)
    a = index.search(queries, 20, kernel="numba")
    b = index.search(queries, 20, kernel="torch")
    assert torch.equal(a.ids, b.ids) and torch.equal(a.scores, b.scores)
    assert torch.equal(a.ids, brute_force(docs, queries, 20)[1])


def test_bench_anchors_are_not_install_dependencies():
    """`pip install csrv2` must not pull the bench's anchors (they sit in the `bench` extra)."""
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    core = {
        dep.split(">")[0].split("=")[0].split("[")[0].strip() for dep in project["dependencies"]
    }
    anchors = {"scipy", "sparse-dot-topn", "pyseismic-lsr", "numba"}
    assert core & anchors == set()
    bench = {dep.split(">")[0].strip() for dep in project["optional-dependencies"]["bench"]}
    assert anchors - {"numba"} <= bench


@needs_numba
@settings(max_examples=40)
@given(
    seed=st.integers(0, 2**16),
    k=st.integers(1, 6),
    value_dtype=st.sampled_from([torch.float32, torch.float16]),
    top_k=st.integers(1, 40),
    levels=st.sampled_from([2, 3, 50, 0]),
    n=st.sampled_from([600, 5000]),
)
def test_pruned_search_equals_the_exhaustive_one(seed, k, value_dtype, top_k, levels, n):
    """Non-negative codes drawn from a skewed latent usage (lists many blocks long, the threshold
    algorithm stops early), values either few levels (many tied scores at the stopping boundary)
    or real: the pruning index returns the exhaustive search's ids and scores bit for bit, and
    reads no more postings."""
    gen = torch.Generator().manual_seed(seed)
    dim = 48
    usage = 1.0 / torch.arange(1, dim + 1).double()
    indices = torch.multinomial(usage, n * k, replacement=True, generator=gen).view(n, k)
    values = torch.rand(n, k, generator=gen)
    if levels:
        values = torch.ceil(values * levels)
    docs = SparseCodes(indices, values, dim)
    q_indices = torch.multinomial(usage, 12 * k, replacement=True, generator=gen).view(12, k)
    q_values = torch.ceil(torch.rand(12, k, generator=gen) * 3)
    queries = SparseCodes(q_indices, q_values, dim)
    exhaustive = SparseIndex(dim, value_dtype=value_dtype)
    pruned = SparseIndex(dim, value_dtype=value_dtype, pruning=True)
    exhaustive.add(docs)
    pruned.add(docs)
    a, b = exhaustive.search(queries, top_k), pruned.search(queries, top_k)
    assert torch.equal(a.ids, b.ids) and torch.equal(a.scores, b.scores)
    walked, every = pruned.postings_walked(queries, top_k), exhaustive.postings_walked(queries)
    assert (walked >= 0).all() and (walked <= every).all()
    assert torch.equal(a.ids, brute_force(pruned.codes(), queries, top_k)[1])


@needs_numba
def test_pruned_search_stops_early_on_skewed_codes_and_falls_back_on_negative_values():
    gen = torch.Generator().manual_seed(5)
    dim, n = 64, 5000
    usage = 1.0 / torch.arange(1, dim + 1).double()
    docs = SparseCodes(
        torch.multinomial(usage, 2 * n, replacement=True, generator=gen).view(n, 2),
        torch.rand(n, 2, generator=gen),
        dim,
    )
    queries = SparseCodes(torch.tensor([[0, 1], [0, 2]]), torch.tensor([[1.0, 0.5], [2, 1]]), dim)
    pruned = SparseIndex(dim, pruning=True)
    pruned.add(docs)
    every = pruned.posting_lengths()[queries.indices].sum(dim=1)
    walked = pruned.postings_walked(queries, 10)
    # The oracle count on Zipf usage: the walk reads a small share of the lists.
    assert (walked * 5 < every).all()
    negative = queries.with_values(torch.tensor([[1.0, -0.5], [2, 1]]))
    assert pruned.postings_walked(negative, 10).tolist() == [int(every[0]), int(walked[1])]
    reference = SparseIndex(dim)
    reference.add(docs)
    for q in (queries, negative):
        a, b = reference.search(q, 10), pruned.search(q, 10)
        assert torch.equal(a.ids, b.ids) and torch.equal(a.scores, b.scores)


def test_pruning_index_holds_the_forward_codes_and_reloads_pruned(tmp_path):
    codes = SparseCodes(torch.tensor([[0, 1], [1, 2], [1, 3]]), torch.ones(3, 2), 4)
    index = SparseIndex(4, value_dtype=torch.float16, pruning=True)
    index.add(codes)
    # 6 postings x (int32 id + float16 value) + 5 int64 offsets + 3 x 2 x (uint16 + float16).
    assert index.memory_bytes() == 6 * 6 + 5 * 8 + 3 * 2 * 4
    assert torch.equal(index.codes().indices, codes.indices)
    index.save(tmp_path / "idx")
    tensors, config = load_artifact(tmp_path / "idx")
    assert config["pruning"] is True and tensors["indices"].shape == (3, 2)
    loaded = SparseIndex.load(tmp_path / "idx")
    assert loaded.pruning and loaded.memory_bytes() == index.memory_bytes()
    assert not SparseIndex.load(tmp_path / "idx", pruning=False).pruning
    query = SparseCodes(torch.tensor([[1, 3]]), torch.tensor([[1.0, 2.0]]), 4)
    assert loaded.search(query, 3).ids.tolist() == [[2, 0, 1]]
    with pytest.raises(TypeError, match="pruning must be a bool"):
        SparseIndex(4, pruning=1)


def test_bench_subset_arguments_are_checked():
    from csrv2 import bench

    with pytest.raises(ValueError, match="ks must be"):
        bench.run(ks=(3,))
    with pytest.raises(ValueError, match="usages must be"):
        bench.run(usages=("zipf",))


@needs_numba
def test_pruned_search_does_not_stop_on_a_tie_with_an_unmet_lower_id():
    """After the block of latent 1's list (Y, then X), the bound (U's value, at the head of latent
    0's list) equals the kept X's score; U has the lower id, so stopping there would be wrong."""
    indices = torch.full((61, 2), 2)
    values = torch.zeros(61, 2)
    values[:, 0] = 1.0
    indices[10], values[10] = torch.tensor([0, 2]), torch.tensor([2.0, 0.0])  # U: score 2
    indices[40], values[40] = torch.tensor([0, 1]), torch.tensor([1.0, 1.0])  # X: score 2
    indices[60], values[60] = torch.tensor([1, 2]), torch.tensor([100.0, 0.0])  # Y: score 100
    index = SparseIndex(3, pruning=True)
    index.add(SparseCodes(indices, values, 3))
    query = SparseCodes(torch.tensor([[0, 1]]), torch.ones(1, 2), 3)
    assert index.search(query, 2).ids.tolist() == [[60, 10]]


def test_cli_index_builds_a_pruning_index(tmp_path, capsys):
    from csrv2.cli import CODES_KIND, main

    gen = torch.Generator().manual_seed(6)
    docs = topk_codes(torch.randn(40, 16, generator=gen).relu(), 2)
    save_artifact(
        tmp_path / "codes", {"indices": docs.indices, "values": docs.values}, {"dim": 16},
        kind=CODES_KIND,
    )  # fmt: skip
    args = ["index", "--codes", str(tmp_path / "codes"), "--similarity", "dot"]
    assert main([*args, "--out", str(tmp_path / "plain")]) == 0
    assert main([*args, "--out", str(tmp_path / "pruned"), "--pruning"]) == 0
    plain, pruned = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert pruned["bytes"] > plain["bytes"]
    assert SparseIndex.load(tmp_path / "pruned").pruning
    assert not SparseIndex.load(tmp_path / "plain").pruning
