"""MetaMathQA (a JSON list of {"query", "response", ...}) as reasoncache training examples.

Usage: python prepare_metamathqa.py MetaMathQA-395K.json OUT.jsonl
"""

import json
import sys
from pathlib import Path

if __name__ == "__main__":
    source, target = Path(sys.argv[1]), Path(sys.argv[2])
    rows = json.loads(source.read_text(encoding="utf-8"))
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w", encoding="utf-8") as handle:
        for row in rows:
            example = {"prompt": row["query"] + "\n", "completion": row["response"]}
            handle.write(json.dumps(example) + "\n")
