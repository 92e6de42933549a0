#!/usr/bin/env bash
# The tiny variant of grpo-qwen2.5-3b.sh: the same launcher and `g1 train` on a random Llama over
# g1's 20-token smoke vocabulary (built from a config, nothing downloaded), three integer-answer
# tasks on 5-node graphs, 2 steps. It checks a multi-process setup end to end in about a minute
# on two CPU cores (gloo); a rerun with `--max-steps 4 --resume true` continues from step 2.
# Usage: bash tiny.sh OUT_DIR [extra `g1 train` options]
set -euo pipefail
out=${1:?usage: tiny.sh OUT_DIR [extra g1 train options]}
shift
here=$(cd "$(dirname "$0")" && pwd)

python "$here/prepare_tiny.py" "$out/inputs"
torchrun --standalone --nproc_per_node "${NPROC_PER_NODE:-2}" -m g1.cli train \
    --model "$out/inputs/model" \
    --output-dir "$out/run" \
    --tasks node_number edge_number degree \
    --n-per-task 4 \
    --n-nodes 5 \
    --num-generations 4 \
    --per-device-train-batch-size 4 \
    --max-completion-length 8 \
    --learning-rate 1e-2 \
    --format-weight 0.1 \
    --max-steps 2 \
    --save-steps 1 \
    "$@"
