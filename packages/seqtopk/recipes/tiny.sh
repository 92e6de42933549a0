#!/usr/bin/env bash
# The tiny variant of olmoe-1b-7b.sh: the same launcher and `seqtopk finetune` on a random
# 2-layer OLMoE (4 experts, K = 2) built from a config with a byte-level tokenizer, 2 steps on a
# few lines of text. It checks a multi-process setup end to end in under a minute on two CPU
# cores (gloo); a rerun with `--max-steps 4 --resume-from-checkpoint last` continues from step 2.
# Usage: bash tiny.sh OUT_DIR [extra `seqtopk finetune` options]
set -euo pipefail
out=${1:?usage: tiny.sh OUT_DIR [extra seqtopk finetune options]}
shift
here=$(cd "$(dirname "$0")" && pwd)

python "$here/prepare_tiny.py" "$out/inputs"
torchrun --standalone --nproc_per_node "${NPROC_PER_NODE:-2}" -m seqtopk.cli finetune \
    --model-dir "$out/inputs/model" \
    --train-file "$out/inputs/train.txt" \
    --output-dir "$out/run" \
    --min-per-token 0 \
    --max-steps 2 \
    --batch-size 2 \
    --max-length 32 \
    --learning-rate 1e-3 \
    --save-steps 1 \
    "$@"
