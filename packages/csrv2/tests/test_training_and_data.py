import json

import pytest
import torch
from csrv2 import (
    SparseIndex,
    TrainConfig,
    dead_latent_fraction,
    effective_latents,
    expected_postings_per_query,
    knn_accuracy,
    latent_usage,
    mrr_at_k,
    ndcg_at_k,
    nmse,
    posting_imbalance,
    recipe,
    train,
    usage_gini,
)
from csrv2.baselines import PCABasis, train_matryoshka
from csrv2.cli import main
from csrv2.data import (
    chatterbot_classification,
    chatterbot_retrieval,
    corpus_files,
    load_labelled_texts,
    parse_corpus_yaml,
    save_embeddings,
)

from kernelkit.io import ArtifactError
from kernelkit.topk import SparseCodes


def clusters(n=240, d=16, classes=6, seed=0):
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, d, generator=gen)
    labels = torch.randint(0, classes, (n,), generator=gen)
    x = centres[labels] + 0.3 * torch.randn(n, d, generator=gen)
    return torch.nn.functional.normalize(x, dim=-1), labels


# -- metrics -----------------------------------------------------------------------------------


def test_usage_metrics_on_a_known_code_set():
    codes = SparseCodes(
        torch.tensor([[0, 1], [0, 2], [0, 0]]),
        torch.tensor([[1.0, 1.0], [1.0, 0.0], [1.0, 1.0]]),
        4,
    )
    # Latent 0 is in all three codes (twice in the last: counted once), 1 in one, 2 stored as 0.
    assert latent_usage(codes).tolist() == [3, 1, 0, 0]
    assert dead_latent_fraction(codes) == 0.5
    p = torch.tensor([0.75, 0.25])
    assert effective_latents(codes) == pytest.approx(float(torch.exp(-(p * p.log()).sum())))
    assert usage_gini(SparseCodes(torch.tensor([[0], [1]]), torch.ones(2, 1), 2)) == pytest.approx(
        0.0
    )


def test_posting_balance_metrics_count_what_the_index_touches():
    codes = SparseCodes(torch.tensor([[0, 1], [0, 2], [0, 3], [1, 2]]), torch.ones(4, 2), 8)
    # f = (3/4, 2/4, 2/4, 1/4) over latents 0..3.
    assert expected_postings_per_query(codes) == pytest.approx(4 * (9 + 4 + 4 + 1) / 16)
    assert expected_postings_per_query(codes, 1000) == pytest.approx(1000 * 18 / 16)
    # p = (3, 2, 2, 1) / 8 over h = 8 latents.
    assert posting_imbalance(codes) == pytest.approx(8 * (9 + 4 + 4 + 1) / 64)
    index = SparseIndex(8)
    index.add(codes)
    lengths = index.posting_lengths()
    # Each stored code used as a query touches the posting lists of its latents.
    touched = [int(lengths[row].sum()) for row in codes.indices]
    assert expected_postings_per_query(codes) == pytest.approx(sum(touched) / len(touched))
    even = SparseCodes(torch.arange(8).view(4, 2), torch.ones(4, 2), 8)
    assert posting_imbalance(even) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="database_size"):
        expected_postings_per_query(codes, 0)
    with pytest.raises(ValueError, match="no non-zero"):
        posting_imbalance(SparseCodes(torch.zeros(2, 1, dtype=torch.long), torch.zeros(2, 1), 4))


def test_ranking_metrics():
    ranked = torch.tensor([[3, 1, 2], [0, 1, 2]])
    relevant = [{1}, {5}]
    assert ndcg_at_k(ranked, relevant, 3) == pytest.approx(
        (1 / torch.log2(torch.tensor(3.0)).item()) / 2
    )
    assert mrr_at_k(ranked, relevant, 3) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="one set per query"):
        ndcg_at_k(ranked, [{1}], 3)


def test_nmse_and_knn():
    x = torch.randn(20, 4)
    assert nmse(x, x) == 0.0
    assert nmse(x, x.mean(0).expand_as(x)) == pytest.approx(1.0)
    labels = torch.arange(20) % 2
    feats = torch.nn.functional.one_hot(labels).float()
    assert knn_accuracy(feats, labels, feats, labels, neighbours=3) == 1.0


# -- training ----------------------------------------------------------------------------------


def test_training_reduces_reconstruction_and_csrv2_separates_classes():
    x, y = clusters()
    config = recipe("csrv2", k=2, hidden=64, epochs=15, batch_size=60, lr=3e-3, k_init=16)
    result = train(x, y, config, show_progress=False)
    first, last = result.history[0], result.history[-1]
    assert last["reconstruction_k"] < first["reconstruction_k"]
    assert last["k"] == 2 and first["k"] == 16
    with torch.no_grad():
        codes = result.model.encode(x)
    assert knn_accuracy(codes[:160], y[:160], codes[160:], y[160:]) > 0.8
    # The trainer reports how the final codes use the latents.
    assert result.usage["posting_imbalance"] == pytest.approx(posting_imbalance(codes))
    assert result.usage["expected_postings_per_query"] == pytest.approx(
        expected_postings_per_query(codes)
    )
    assert result.usage["dead_fraction"] == pytest.approx(dead_latent_fraction(codes))


def test_training_resumes_exactly(tmp_path, monkeypatch):
    import csrv2.training as train_module

    x, _ = clusters(n=100)
    config = recipe(
        "csr+anneal", k=2, hidden=32, epochs=4, batch_size=25, checkpoint_every=5, k_init=8
    )
    uninterrupted = train(x, None, config, show_progress=False)

    save = train_module._save_checkpoint

    def save_then_crash(directory, model, optimizer, step, history, cfg):
        save(directory, model, optimizer, step, history, cfg)
        if step == 5:
            raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "_save_checkpoint", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        train(x, None, config, out_dir=tmp_path, show_progress=False)
    monkeypatch.setattr(train_module, "_save_checkpoint", save)
    resumed = train(x, None, config, out_dir=tmp_path, show_progress=False)

    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in uninterrupted.history]
    for a, b in zip(
        uninterrupted.model.state_dict().values(), resumed.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)
    other = recipe("csr", k=2, hidden=32, epochs=4, batch_size=25)
    with pytest.raises(ArtifactError, match="different configuration"):
        train(x, None, other, out_dir=tmp_path, show_progress=False)


def test_training_bad_inputs():
    x, y = clusters(n=20)
    with pytest.raises(ValueError, match="needs labels"):
        train(x, None, TrainConfig(hidden=32), show_progress=False)
    with pytest.raises(ValueError, match="one entry per row"):
        train(x, y[:5], TrainConfig(hidden=32), show_progress=False)
    bad = x.clone()
    bad[3, 2] = float("nan")
    with pytest.raises(ValueError, match="must be finite"):
        train(bad, y, TrainConfig(hidden=32), show_progress=False)
    with pytest.raises(ValueError, match="k must be <= hidden"):
        TrainConfig(k=40, hidden=32)
    with pytest.raises(ValueError, match="name must be one of the recipes"):
        recipe("splade")


def test_mrl_head_starts_at_pca_and_learns():
    x, y = clusters(n=120)
    pca = PCABasis(x)
    head = train_matryoshka(x, y, dims=(2, 4), epochs=3, batch_size=60)
    with torch.no_grad():
        two = head.embed(x, 2)
    assert two.shape == (120, 2)
    assert (
        knn_accuracy(two[:80], y[:80], two[80:], y[80:])
        >= knn_accuracy(pca.project(x, 2)[:80], y[:80], pca.project(x, 2)[80:], y[80:]) - 0.05
    )


# -- data --------------------------------------------------------------------------------------


def test_corpus_parser_keeps_scalars_as_text_on_the_whole_english_corpus():
    compared = 0
    for path in corpus_files("english"):
        got = parse_corpus_yaml(path.read_text(encoding="utf-8"), str(path))
        assert got["categories"] and all(isinstance(c, str) for c in got["categories"])
        for conversation in got["conversations"]:
            turns = [conversation] if isinstance(conversation, str) else conversation
            assert all(isinstance(turn, str) for turn in turns)
            compared += len(turns)
    assert compared > 4000
    parsed = parse_corpus_yaml("categories:\n- trivia\nconversations:\n- - yes\n  - 1984\n")
    assert parsed == {"categories": ["trivia"], "conversations": [["yes", "1984"]]}


def test_parser_rejects_invalid_documents():
    with pytest.raises(ValueError, match=r"x\.yml is not valid YAML"):
        parse_corpus_yaml("conversations:\n- - 'open\n", "x.yml")
    with pytest.raises(ValueError, match=r"x\.yml must hold a mapping"):
        parse_corpus_yaml("- just a list\n", "x.yml")


def test_chatterbot_sets_are_consistent():
    cls = chatterbot_classification()
    assert len(cls.label_names) >= 15
    assert int(torch.bincount(cls.train_labels).max()) <= 150
    ret = chatterbot_retrieval()
    assert len(ret.queries) == len(ret.relevant) > 100
    assert all(rel and max(rel) < len(ret.documents) for rel in ret.relevant)
    assert len(ret.train_labels) == len(ret.train_texts)
    # No training text under two labels (groups sharing a text such as "Yes." are merged).
    assert len(set(ret.train_texts)) == len(ret.train_texts)
    assert len(set(ret.train_labels.tolist())) > 500


def test_labelled_text_loaders(tmp_path):
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text('{"text": "a", "label": "x"}\n{"text": "b", "label": "y"}\n')
    texts, labels, names = load_labelled_texts(jsonl)
    assert texts == ["a", "b"] and labels.tolist() == [0, 1] and names == ["x", "y"]
    csv_file = tmp_path / "d.csv"
    csv_file.write_text("text,label\nhello,2\nworld,1\n")
    texts, labels, names = load_labelled_texts(csv_file)
    assert labels.tolist() == [1, 0] and names == ["1", "2"]
    jsonl.write_text('{"body": "a"}\n')
    with pytest.raises(ValueError, match="no string field 'text'"):
        load_labelled_texts(jsonl)
    with pytest.raises(ValueError, match=r"\.jsonl or \.csv"):
        load_labelled_texts(tmp_path / "missing.txt")


# -- CLI ---------------------------------------------------------------------------------------


def test_cli_train_encode_index_search_eval(tmp_path, capsys):
    x, y = clusters(n=120)
    save_embeddings(tmp_path / "emb", x, y)
    args = ["--embeddings", str(tmp_path / "emb")]
    assert (
        main(
            [
                "train",
                *args,
                "--out",
                str(tmp_path / "run"),
                "--k",
                "2",
                "--hidden",
                "32",
                "--epochs",
                "2",
                "--k-init",
                "8",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "encode",
                *args,
                "--model",
                str(tmp_path / "run" / "model"),
                "--out",
                str(tmp_path / "codes"),
            ]
        )
        == 0
    )
    assert main(["index", "--codes", str(tmp_path / "codes"), "--out", str(tmp_path / "idx")]) == 0
    capsys.readouterr()
    assert (
        main(
            [
                "search",
                "--index",
                str(tmp_path / "idx"),
                "--queries",
                str(tmp_path / "codes"),
                "--top-k",
                "3",
            ]
        )
        == 0
    )
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 120 and all(len(r["ids"]) == 3 for r in rows)
    assert main(["eval", *args, "--model", str(tmp_path / "run" / "model")]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["mean_l0"] <= 2 and 0 <= metrics["dead_latent_pct"] <= 100
    with pytest.raises(SystemExit):
        main(["train", *args, "--out", str(tmp_path / "bad"), "--contrastive", "bogus"])


def test_epoch_order_keeps_label_groups_together():
    from csrv2.training import epoch_order

    labels = torch.tensor([5, 1, 5, 9, 1, 1, 9, 7])
    order = epoch_order(8, labels, torch.Generator().manual_seed(0))
    assert sorted(order.tolist()) == list(range(8))
    grouped = labels[order].tolist()
    # Each label appears as one contiguous run.
    runs = [value for i, value in enumerate(grouped) if i == 0 or grouped[i - 1] != value]
    assert sorted(runs) == sorted(set(grouped))
    # Deterministic in the generator, different across epochs' generators.
    again = epoch_order(8, labels, torch.Generator().manual_seed(0))
    assert torch.equal(order, again)
    plain = epoch_order(8, None, torch.Generator().manual_seed(0))
    assert sorted(plain.tolist()) == list(range(8))


def test_batch_by_label_needs_labels_and_trains():
    from csrv2.training import TrainConfig, train

    x = torch.nn.functional.normalize(
        torch.randn(64, 16, generator=torch.Generator().manual_seed(0)), dim=1
    )
    with pytest.raises(ValueError, match="batch_by_label=True needs labels"):
        train(
            x,
            None,
            TrainConfig(k=2, hidden=32, contrastive="self", batch_by_label=True, epochs=1),
            show_progress=False,
        )
    labels = torch.arange(64) // 2
    result = train(
        x,
        labels,
        TrainConfig(k=2, hidden=32, batch_by_label=True, epochs=2, batch_size=16),
        show_progress=False,
    )
    assert len(result.history) == 8


def test_gaussian_mixture_embeddings_are_unit_norm_and_seeded():
    from csrv2.data import gaussian_mixture_embeddings

    x, component = gaussian_mixture_embeddings(500, dim=24, components=5, seed=3)
    assert x.shape == (500, 24) and component.shape == (500,)
    assert torch.allclose(x.norm(dim=1), torch.ones(500), atol=1e-5)
    assert set(component.tolist()) <= set(range(5))
    assert torch.equal(x, gaussian_mixture_embeddings(500, dim=24, components=5, seed=3)[0])
    with pytest.raises(ValueError, match="num must be >= 1"):
        gaussian_mixture_embeddings(0)
