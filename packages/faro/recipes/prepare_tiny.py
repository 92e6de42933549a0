"""Inputs of tiny.sh: synthetic text preference pairs as JSONL in ``<dir>``."""

import sys
from pathlib import Path

if __name__ == "__main__":
    target = Path(sys.argv[1])
    if not (target / "validation.jsonl").is_file():  # a rerun keeps the inputs
        from faro.data import synthetic_text_preferences

        target.mkdir(parents=True, exist_ok=True)
        for name, pairs, seed in (("train", 32, 0), ("validation", 16, 1)):
            synthetic_text_preferences(pairs, seed=seed).to_json(str(target / f"{name}.jsonl"))
