#!/usr/bin/env bash
# The tiny variant of metamathqa-llama2-7b.sh: the same launcher and `reasoncache train` on a
# random 2-layer Llama (built from a config, byte-level tokenizer) with a 4-slot cache and
# 16 key=value examples, 2 steps. It checks a multi-process setup end to end in under a minute
# on two CPU cores (gloo); a rerun with `--max-steps 4 --resume last` continues from step 2.
# Usage: bash tiny.sh OUT_DIR [extra `reasoncache train` options]
set -euo pipefail
out=${1:?usage: tiny.sh OUT_DIR [extra reasoncache train options]}
shift
here=$(cd "$(dirname "$0")" && pwd)

python "$here/prepare_tiny.py" "$out/inputs"
torchrun --standalone --nproc_per_node "${NPROC_PER_NODE:-2}" -m reasoncache.cli train \
    --model "$out/inputs/model" \
    --examples "$out/inputs/examples.jsonl" \
    --output-dir "$out/run" \
    --num-slots 4 \
    --init questions \
    --learning-rate 1e-2 \
    --max-steps 2 \
    --batch-size 2 \
    --save-steps 1 \
    --logging-steps 1 \
    "$@"
