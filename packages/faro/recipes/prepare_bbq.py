"""BBQ's category files as faro preference pairs, split 80/10/10; prints the number of groups.

Usage: python prepare_bbq.py BBQ_DATA_DIR OUT_DIR  (writes OUT_DIR/{train,validation,test})
"""

import sys
from pathlib import Path

from faro.data import load_bbq

if __name__ == "__main__":
    source, target = Path(sys.argv[1]), Path(sys.argv[2])
    dataset, categories = load_bbq(sorted(source.glob("*.jsonl")))
    first = dataset.train_test_split(test_size=0.2, seed=0)
    second = first["test"].train_test_split(test_size=0.5, seed=0)
    splits = {"train": first["train"], "validation": second["train"], "test": second["test"]}
    for name, split in splits.items():
        split.save_to_disk(str(target / name))
    print(len(categories))
