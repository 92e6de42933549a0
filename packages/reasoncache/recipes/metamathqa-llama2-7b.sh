#!/usr/bin/env bash
# ReasonCACHE on MetaMathQA: a trained key-value cache for a frozen Llama-2-7B, on 8 GPUs.
#
#   the paper (as far as the sources go)        here
#   Llama-2-7B, frozen                          MODEL_DIR: a local copy of meta-llama/Llama-2-7b-hf
#   MetaMathQA reasoning traces                 prepare_metamathqa.py: query -> prompt, response ->
#                                               completion (MetaMathQA-395K.json from the hub)
#   prefix with an MLP reparameterisation,      --num-slots 64 (SLOTS; the replication tried 16,
#   initialised from training questions         64, 256) --reparam-hidden 512 --init questions
#   AdamW, weight decay 0, cosine with 5%       the TrainConfig defaults (--weight-decay 0
#   warm-up, 3 epochs, batch 128                --warmup-ratio 0.05 --num-epochs 3), 16 x 8 GPUs
#   lr 1e-4 ... 3e-3 (m = 16 diverged at 3e-3)  --learning-rate 1e-3
#
# Secondary sources only (the paper body was not reachable): see the README's limitations.
# An interrupted run resumes with --resume last. Then compare with ICL and a parameter-matched
# LoRA in one harness: reasoncache eval --model MODEL_DIR --method cache --cache OUT ...
# Usage: MODEL_DIR=llama-2-7b METAMATHQA=MetaMathQA-395K.json bash metamathqa-llama2-7b.sh [OUT_DIR]
set -euo pipefail
out=${1:-reasoncache-metamathqa-llama2-7b}
shift $(($# > 0 ? 1 : 0))
here=$(cd "$(dirname "$0")" && pwd)

python "$here/prepare_metamathqa.py" "${METAMATHQA:?set METAMATHQA to MetaMathQA-395K.json}" \
    "$out/examples.jsonl"
torchrun --standalone --nproc_per_node "${NPROC_PER_NODE:-8}" -m reasoncache.cli train \
    --model "${MODEL_DIR:?set MODEL_DIR to a local Llama-2-7B directory}" \
    --examples "$out/examples.jsonl" \
    --output-dir "$out" \
    --num-slots "${SLOTS:-64}" \
    --reparam-hidden 512 \
    --init questions \
    --learning-rate 1e-3 \
    --weight-decay 0 \
    --warmup-ratio 0.05 \
    --num-epochs 3 \
    --batch-size 16 \
    --gradient-checkpointing true \
    --bf16 true \
    "$@"
