#!/usr/bin/env bash
# The tiny variant of bbq-gemma2.sh: the same launcher and `faro train` on a 2-layer Llama
# reward model built from a config (--model tiny-llama) and 32 synthetic text pairs with a
# planted group bias, one epoch of 4 steps. It checks a multi-process setup end to end in about
# a minute on two CPU cores (gloo); a rerun with `--epochs 2 --resume true` continues from the
# first epoch's checkpoint.
# Usage: bash tiny.sh OUT_DIR [extra `faro train` options]
set -euo pipefail
out=${1:?usage: tiny.sh OUT_DIR [extra faro train options]}
shift
here=$(cd "$(dirname "$0")" && pwd)

python "$here/prepare_tiny.py" "$out/inputs"
torchrun --standalone --nproc_per_node "${NPROC_PER_NODE:-2}" -m faro.cli train \
    --model tiny-llama \
    --train-data "$out/inputs/train.jsonl" \
    --eval-data "$out/inputs/validation.jsonl" \
    --output-dir "$out/run" \
    --constraint demographic_parity \
    --batch-size 4 \
    --learning-rate 1e-3 \
    --epochs 1 \
    --save-steps 2 \
    --fairness-eval-steps 2 \
    "$@"
