#!/usr/bin/env bash
# G1-3B: GRPO of Qwen2.5-3B-Instruct on the 50 graph tasks, G1's verl run (run_3B.sh and the
# paper) carried over to trl's GRPOTrainer.
#
#   G1 / verl                                   here
#   8 GPUs (A800), one node                     torchrun --nproc_per_node 8 (NPROC_PER_NODE)
#   100k training rows, 2,000 per task          --n-per-task 2000 over all 50 tasks, seed 0
#   512 prompts x 5 rollouts per step           10 completions per GPU x 32 micro-batches x 8 GPUs
#                                               = 2,560 generated per batch (--steps-per-generation)
#   PPO mini-batch 128 prompts                  10 x 8 accumulation x 8 GPUs = 640 completions
#                                               = 128 prompts per optimiser step (4 per batch)
#   lr 1e-6 constant, clip 0.2, temperature 1   the TrainConfig defaults
#   KL low_var_kl, beta 0.001                   --beta 0.001 (trl's k3 KL, which low_var_kl clamps)
#   responses <= 4096 tokens, 3 epochs          --max-completion-length 4096, --num-train-epochs 3
#   vLLM rollouts (TP 2)                        vLLM colocated when installed (pip install vllm)
#
# G1 starts from the RFT-warmed model (SFT on ~4.5k correct Qwen2.5-32B traces); G1-Zero, this
# recipe, starts from the Instruct model. An interrupted run resumes with --resume true.
# Usage: bash grpo-qwen2.5-3b.sh [OUT_DIR] [extra `g1 train` options]
set -euo pipefail
out=${1:-g1-grpo-qwen2.5-3b}
shift $(($# > 0 ? 1 : 0))

torchrun --standalone --nproc_per_node "${NPROC_PER_NODE:-8}" -m g1.cli train \
    --model Qwen/Qwen2.5-3B-Instruct \
    --output-dir "$out" \
    --n-per-task 2000 \
    --num-generations 5 \
    --per-device-train-batch-size 10 \
    --gradient-accumulation-steps 8 \
    --steps-per-generation 32 \
    --learning-rate 1e-6 \
    --beta 0.001 \
    --epsilon 0.2 \
    --temperature 1.0 \
    --max-completion-length 4096 \
    --num-train-epochs 3 \
    --save-steps 100 \
    "$@"
