"""Inputs of tiny.sh: a random smoke policy (model and tokenizer) saved to ``<dir>/model``."""

import sys
from pathlib import Path

if __name__ == "__main__":
    target = Path(sys.argv[1]) / "model"
    if not target.is_dir():  # a rerun (to resume) keeps the inputs and skips the imports
        from g1.smoke import save_smoke_policy

        save_smoke_policy(target)
