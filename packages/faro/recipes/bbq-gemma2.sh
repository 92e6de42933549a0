#!/usr/bin/env bash
# Faro on BBQ: a Gemma-2 reward model trained with ProxyGDA under a demographic-parity (or
# equalized-odds) constraint across BBQ's bias categories, on 8 GPUs.
#
#   the paper / its anchors                     here
#   base model Gemma-2 (size not recorded)      --model google/gemma-2-2b (MODEL to change it)
#   BBQ, every category file                    prepare_bbq.py: gold answer chosen, stereotyped
#                                               (or "unknown") answer rejected, group = category;
#                                               80/10/10 train/validation/test split, seed 0
#   DP, EO or CF variants (Table 2)             CONSTRAINT=demographic_parity|equalized_odds
#                                               (BBQ has no counterfactual twins: no CF here)
#   lr 2e-6, global batch 512, 1 epoch, cosine  --learning-rate 2e-6, 64 pairs x 8 GPUs,
#   schedule, 3% warm-up (Fair-RM script)       --epochs 1 --lr-scheduler cosine --warmup 0.03
#   slack 0.05, multipliers in [0, 10]          the TrainCommand defaults (--epsilon, --multiplier-bound)
#
# The paper's own hyperparameters were not retrievable (see the README); these are the anchors
# the research notes give. Then certify on the held-out split:
#   faro certify --model OUT/final --data OUT/data/test --constraint ... --num-groups K
# Usage: BBQ=path/to/BBQ/data bash bbq-gemma2.sh [OUT_DIR] [extra `faro train` options]
set -euo pipefail
out=${1:-faro-bbq-gemma2}
shift $(($# > 0 ? 1 : 0))
here=$(cd "$(dirname "$0")" && pwd)

groups=$(python "$here/prepare_bbq.py" "${BBQ:?set BBQ to the directory of BBQ's *.jsonl files}" "$out/data")
torchrun --standalone --nproc_per_node "${NPROC_PER_NODE:-8}" -m faro.cli train \
    --model "${MODEL:-google/gemma-2-2b}" \
    --train-data "$out/data/train" \
    --eval-data "$out/data/validation" \
    --output-dir "$out" \
    --constraint "${CONSTRAINT:-demographic_parity}" \
    --num-groups "$groups" \
    --learning-rate 2e-6 \
    --batch-size 64 \
    --epochs 1 \
    --lr-scheduler cosine \
    --warmup 0.03 \
    --save-steps 100 \
    "$@"
