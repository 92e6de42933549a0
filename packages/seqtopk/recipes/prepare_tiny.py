"""Inputs of tiny.sh: a random OLMoE (4 experts, K = 2) with its tokenizer, and training text."""

import sys
from pathlib import Path

LINES = [f"sequence {i}: the router spends more experts on hard tokens" for i in range(16)]

if __name__ == "__main__":
    target = Path(sys.argv[1])
    if not (target / "model").is_dir():  # a rerun (to resume) keeps the inputs
        from kernelkit.testing import tiny_causal_lm

        model, tokenizer = tiny_causal_lm("olmoe", num_experts=4, num_experts_per_tok=2)
        model.save_pretrained(target / "model")
        tokenizer.save_pretrained(target / "model")
        (target / "train.txt").write_text("\n".join(LINES) + "\n", encoding="utf-8")
