#!/usr/bin/env bash
# SeqTopK fine-tuning of OLMoE-1B-7B (K = 8 of 64 experts) on 8 GPUs, the paper's setup.
#
#   the paper                                   here
#   OLMoE-1B-7B, K = 8 (also 4 and 2)           MODEL_DIR: a local copy of allenai/OLMoE-1B-7B-0924
#                                               (`hf download allenai/OLMoE-1B-7B-0924 --local-dir
#                                               olmoe`); K with K=8|4|2
#   per-token bounds L = 1, U = K + 2           --min-per-token 1, --max-per-token 0 (= K + 2)
#   at most 200 fine-tuning steps on 8 A100s    --max-steps 200, torchrun --nproc_per_node 8
#   offline SeqTopK in training                 what `seqtopk finetune` patches in
#
# The fine-tuning corpus and batch size are not recorded in the sources we could read; give a
# UTF-8 text file with one example per line as TRAIN_FILE (8 sequences of <= 512 tokens per GPU
# and step, lr 1e-5: the FinetuneConfig defaults). An interrupted run resumes with
# --resume-from-checkpoint last. Evaluate the result online (causal) with
#   seqtopk eval --model-dir OUT --text-file held-out.txt --mode online
# Usage: MODEL_DIR=olmoe TRAIN_FILE=train.txt bash olmoe-1b-7b.sh [OUT_DIR] [extra options]
set -euo pipefail
out=${1:-seqtopk-olmoe-1b-7b}
shift $(($# > 0 ? 1 : 0))

torchrun --standalone --nproc_per_node "${NPROC_PER_NODE:-8}" -m seqtopk.cli finetune \
    --model-dir "${MODEL_DIR:?set MODEL_DIR to a local OLMoE-1B-7B directory}" \
    --train-file "${TRAIN_FILE:?set TRAIN_FILE to a text file, one example per line}" \
    --output-dir "$out" \
    --k "${K:-8}" \
    --min-per-token 1 \
    --max-per-token 0 \
    --max-steps 200 \
    --batch-size 8 \
    --max-length 512 \
    --learning-rate 1e-5 \
    --save-steps 50 \
    "$@"
