#!/usr/bin/env bash
# One prepared command for a lent GPU machine: GPU tests, then the benchmarks on CUDA.
# Results land in ${OUT:-gpu-results}/ (pytest log, JUnit XML, bench JSON and Markdown, nvidia-smi).
# Usage: bash tools/gpu_check.sh            (from the repository root)
set -uo pipefail
out="${OUT:-gpu-results}"
mkdir -p "$out"
command -v uv >/dev/null 2>&1 || pip install --quiet uv
nvidia-smi > "$out/nvidia-smi.txt" 2>&1 || echo "nvidia-smi failed" > "$out/nvidia-smi.txt"

status=0
uv sync --locked --quiet || status=$?
uv run --locked python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name())" \
  | tee "$out/device.txt" || status=$?
uv run --locked pytest -m gpu -q --junitxml="$out/gpu-tests.xml" 2>&1 | tee "$out/gpu-tests.log"
test_status=${PIPESTATUS[0]}
[ "$test_status" -eq 0 ] || status=$test_status
uv run --locked tools/bench.py --device cuda --out "$out" 2>&1 | tee "$out/bench.log"
bench_status=${PIPESTATUS[0]}
[ "$bench_status" -eq 0 ] || status=$bench_status
# csrv2's GPU search rows at the paper's database size (1M codes): SparseIndex's scan path
# (kernelkit's Triton SparseCodes.dot) against dense fp32 384-d / 4096-d and MRL-32 on the GPU,
# k = 2, 4, 8, even and skewed usage, batch 1 and 64.
uv run --locked tools/bench.py --only csrv2 --full --device cuda --out "$out/csrv2-full" 2>&1 \
  | tee "$out/csrv2-full-bench.log"
csrv2_status=${PIPESTATUS[0]}
[ "$csrv2_status" -eq 0 ] || status=$csrv2_status
echo "gpu_check finished with status $status; results in $out/"
exit "$status"
