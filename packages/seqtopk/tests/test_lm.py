import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import seqtopk.repro_lm as repro_lm
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from seqtopk.cli import main
from seqtopk.experiment import SmallMoEConfig
from seqtopk.finetune import FinetuneConfig
from seqtopk.lm import (
    BYTE_OFFSET,
    VOCAB_SIZE,
    LMTrainConfig,
    bits_per_byte,
    byte_tokenizer,
    encode_bytes,
    evaluate_lm,
    heldout_windows,
    load_stdlib_corpus,
    save_model,
    train_lm,
)
from transformers import AutoModelForCausalLM

from kernelkit.repro import Report

TINY = SmallMoEConfig(hidden_size=16, num_layers=1, num_heads=2, num_experts=4, expert_hidden=4)


def _write_files(root: Path, count: int = 5) -> tuple[str, ...]:
    names = []
    for index in range(count):
        name = f"m{index}.py"
        (root / name).write_text(f"def f{index}(x):\n    return x * {index} + 1  # é\n" * 20)
        names.append(name)
    return tuple(reversed(names))  # the loader sorts


def test_corpus_is_deterministic_and_split_by_file(tmp_path):
    names = _write_files(tmp_path)
    first = load_stdlib_corpus(names, heldout_every=5, root=tmp_path)
    second = load_stdlib_corpus(tuple(sorted(names)), heldout_every=5, root=tmp_path)
    assert torch.equal(first.train, second.train) and torch.equal(first.heldout, second.heldout)
    assert first.sha256 == second.sha256
    assert first.train_files == ("m0.py", "m1.py", "m2.py", "m3.py")
    assert first.heldout_files == ("m4.py",)
    expected = b"".join((tmp_path / name).read_bytes() for name in first.train_files)
    assert bytes((first.train - BYTE_OFFSET).tolist()) == expected
    (tmp_path / "m4.py").write_text("changed")
    assert load_stdlib_corpus(names, root=tmp_path).sha256 != first.sha256
    with pytest.raises(FileNotFoundError, match=r"missing\.py"):
        load_stdlib_corpus((*names, "missing.py"), root=tmp_path)
    with pytest.raises(ValueError, match="heldout_every"):
        load_stdlib_corpus(names, heldout_every=1, root=tmp_path)


def test_stdlib_corpus_loads_the_same_twice():
    first, second = load_stdlib_corpus(), load_stdlib_corpus()
    assert first.sha256 == second.sha256 and torch.equal(first.heldout, second.heldout)
    assert not set(first.train_files) & set(first.heldout_files)
    assert first.train.numel() > 2 * first.heldout.numel() > 0


def test_bytes_are_the_tokenizers_ids():
    text = "def f(x):\n\treturn 'é' + x\n"
    ids = byte_tokenizer()(text, add_special_tokens=False)["input_ids"]
    assert encode_bytes(text.encode()).tolist() == ids
    assert len(byte_tokenizer()) == VOCAB_SIZE


class _FixedLogits(torch.nn.Module):
    """Logits ``bonus`` on the true next token (the input shifted by one) and 0 elsewhere."""

    def __init__(self, bonus: float):
        super().__init__()
        self.bonus = bonus

    def forward(self, input_ids):
        logits = torch.zeros(*input_ids.shape, VOCAB_SIZE)
        logits[:, :-1].scatter_(-1, input_ids[:, 1:, None], self.bonus)
        return SimpleNamespace(logits=logits)


@settings(max_examples=20, deadline=None)
@given(bonus=st.floats(-5.0, 20.0), rows=st.integers(1, 5), length=st.integers(2, 9))
def test_bits_per_byte_on_known_logits(bonus, rows, length):
    windows = torch.randint(BYTE_OFFSET, VOCAB_SIZE, (rows, length))
    # Every position gives the true token probability e^b / (e^b + V - 1).
    expected = -math.log2(math.exp(bonus) / (math.exp(bonus) + VOCAB_SIZE - 1))
    # float32 log-softmax: errors of about 1e-5 bits.
    assert bits_per_byte(_FixedLogits(bonus), windows, batch_size=2) == pytest.approx(
        expected, rel=1e-5, abs=1e-4
    )


def test_bits_per_byte_uniform_and_bad_inputs():
    windows = torch.randint(BYTE_OFFSET, VOCAB_SIZE, (3, 7))
    assert bits_per_byte(_FixedLogits(0.0), windows) == pytest.approx(math.log2(VOCAB_SIZE))
    with pytest.raises(ValueError, match="windows"):
        bits_per_byte(_FixedLogits(0.0), windows[:, :1])
    with pytest.raises(ValueError, match="windows"):
        bits_per_byte(_FixedLogits(0.0), windows[0])
    with pytest.raises(ValueError, match="batch_size"):
        bits_per_byte(_FixedLogits(0.0), windows, batch_size=0)


def test_heldout_windows_are_evenly_spaced():
    data = torch.arange(100)
    windows = heldout_windows(data, 4, 10)
    assert windows[:, 0].tolist() == [0, 30, 60, 90] and windows[-1, -1] == 99
    assert torch.equal(windows, heldout_windows(data, 4, 10))
    with pytest.raises(ValueError, match="length"):
        heldout_windows(data, 4, 101)
    with pytest.raises(ValueError, match="count"):
        heldout_windows(data, 0, 10)


def _tiny_corpus(tmp_path: Path):
    root = tmp_path / "src"
    root.mkdir()
    return load_stdlib_corpus(_write_files(root), root=root)


@pytest.mark.slow
def test_cli_adoption_path_end_to_end(tmp_path, capsys):
    corpus = _tiny_corpus(tmp_path)
    config = LMTrainConfig(routing="topk", k=2, steps=2, batch_size=4, seq_len=16)
    model, losses = train_lm(corpus, config, model_config=TINY)
    assert len(losses) == 2 and all(loss > 0 for loss in losses)
    windows = heldout_windows(corpus.heldout, 3, 16)
    before = evaluate_lm(model, windows, routing="topk", k=2)
    base = save_model(model, tmp_path / "base")
    assert evaluate_lm(
        AutoModelForCausalLM.from_pretrained(base), windows, routing="topk", k=2
    ) == pytest.approx(before, abs=1e-5)
    train_file = tmp_path / "train.txt"
    train_file.write_bytes(bytes((corpus.train - BYTE_OFFSET).tolist()))
    common = ["--model-dir", str(base), "--train-file", str(train_file), "--block-size", "16"]
    common += ["--max-steps", "2", "--batch-size", "4", "--learning-rate", "1e-3"]
    tuned = {}
    for routing in ("seqtopk", "topk"):
        out = tmp_path / routing
        assert main(["finetune", *common, "--output-dir", str(out), "--routing", routing]) == 0
        recorded = json.loads((out / "seqtopk.json").read_text())
        assert recorded["routing"] == routing and recorded["finetune"]["block_size"] == 16
        bounds = (2, 1, 4) if routing == "seqtopk" else (2, 2, 2)
        assert (recorded["k"], recorded["min_per_token"], recorded["max_per_token"]) == bounds
        loaded = AutoModelForCausalLM.from_pretrained(out)
        tuned[routing] = evaluate_lm(loaded, windows, routing=routing, k=2, min_per_token=1)
        assert math.isfinite(tuned[routing])
    assert tuned["seqtopk"] != tuned["topk"]
    capsys.readouterr()
    out = str(tmp_path / "bad")
    assert main(["finetune", *common, "--output-dir", out, "--routing", "topk", "--k", "3"]) == 2
    assert "num_experts_per_tok=2" in capsys.readouterr().err
    assert main(["finetune", *common[:-6], "--output-dir", out, "--block-size", "99999"]) == 2
    assert "block_size=99999" in capsys.readouterr().err


def test_finetune_config_rejects_bad_routing_and_block_size():
    with pytest.raises(ValueError, match="routing"):
        FinetuneConfig("m", "t", "o", routing="dense")
    with pytest.raises(ValueError, match="block_size"):
        FinetuneConfig("m", "t", "o", block_size=-1)


@pytest.mark.slow
def test_byte_lm_repro_runs_its_claims_at_tiny_size(tmp_path, monkeypatch):
    corpus = _tiny_corpus(tmp_path)
    monkeypatch.setattr(repro_lm, "load_stdlib_corpus", lambda: corpus)
    monkeypatch.setattr(repro_lm, "LM_MODEL", TINY)
    monkeypatch.setattr(repro_lm, "SEQ_LEN", 16)
    monkeypatch.setattr(repro_lm, "BATCH", 4)
    sizes = {"seeds": (0, 1), "levels": (1,), "premise": True, "pretrain": 2, "finetune": 1}
    sizes |= {"cli_steps": 1, "windows": 2, "cli_train_bytes": None}
    monkeypatch.setitem(repro_lm.SIZES, False, sizes)
    report = Report("seqtopk", tmp_path / "report", quick=False)
    repro_lm.run_byte_lm(report, quick=False, work_dir=tmp_path / "work")
    runs = {(row["run"], row["k"]) for row in report.metrics}
    assert ("TopK", 2) in runs and ("SeqTopK online", 1) in runs
    assert ("adoption: finetune --routing topk", 2) in runs
    assert len(report.claims) == 5 and all(len(claim.samples) == 2 for claim in report.claims)
    premise = report.claims[0]
    assert premise.statement.startswith("byte LM premise control, K=1")
    expected = "meaningful" if premise.verdict == "held" else "carries no evidence"
    assert expected in report.claims[1].details
    assert (tmp_path / "work" / "seed1" / "cli-seqtopk" / "seqtopk.json").is_file()
    assert (tmp_path / "report" / "byte_lm_bits_per_byte.png").is_file()
