"""Inputs of tiny.sh: a random 2-layer Llama with its tokenizer, and key=value examples."""

import json
import sys
from pathlib import Path

if __name__ == "__main__":
    target = Path(sys.argv[1])
    if not (target / "model").is_dir():  # a rerun (to resume) keeps the inputs
        from kernelkit.testing import tiny_causal_lm

        model, tokenizer = tiny_causal_lm("llama")
        model.save_pretrained(target / "model")
        tokenizer.save_pretrained(target / "model")
        examples = [{"prompt": f"k{i}=", "completion": "xyz"[i % 3]} for i in range(16)]
        lines = "".join(json.dumps(example) + "\n" for example in examples)
        (target / "examples.jsonl").write_text(lines, encoding="utf-8")
