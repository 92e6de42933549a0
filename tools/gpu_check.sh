#!/usr/bin/env bash
# One prepared command for a lent GPU machine: the test files that hold GPU tests (run whole, so
# their Triton tests run natively), then the benchmarks on CUDA.
# Results land in ${OUT:-gpu-results}/ (pytest log, JUnit XML, bench JSON and Markdown, nvidia-smi).
# Usage: bash tools/gpu_check.sh            (from the repository root)
#
# Two ways to get the packages there:
# - with uv and a package registry: `uv sync --locked`, as everywhere else;
# - offline (this workplace's H200 machines: no registry, no uv, a system python3 holding torch,
#   Triton and the common libraries): build the wheels here first and carry the folder,
#       for p in kernelkit seqtopk csrv2; do uv build --package "$p" --wheel -o .whl; done
#   and they are installed with --no-deps over the machine's own torch. Only the carried
#   packages are tested and benchmarked then.
set -uo pipefail
out="${OUT:-gpu-results}"
mkdir -p "$out"
nvidia-smi > "$out/nvidia-smi.txt" 2>&1 || echo "nvidia-smi failed" > "$out/nvidia-smi.txt"

status=0
if command -v uv >/dev/null 2>&1 && uv sync --locked --quiet; then
  py=(uv run --locked python)
  dists=()
elif compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/gpu-check-site \
    .whl/*.whl || exit 3
  export PYTHONPATH=/tmp/gpu-check-site
  py=(python3)
  # Distribution names from the wheel file names (name-version-...whl, '_' for '-').
  mapfile -t dists < <(for w in .whl/*.whl; do basename "$w" | cut -d- -f1 | tr _ -; done)
else
  echo "no uv environment and no wheels in .whl/ (see the top of this script)" | tee "$out/setup.txt"
  exit 2
fi
"${py[@]}" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(), torch.__version__)" \
  | tee "$out/device.txt" || status=$?

# The test files with GPU tests, of the packages present.
roots=(shared/kernelkit/tests packages/*/tests)
if [ "${#dists[@]}" -gt 0 ]; then
  roots=()
  for d in "${dists[@]}"; do
    for project in shared/kernelkit/pyproject.toml packages/*/pyproject.toml; do
      grep -qx "name = \"$d\"" "$project" && roots+=("$(dirname "$project")/tests")
    done
  done
fi
mapfile -t files < <(grep -l "mark.gpu" -r "${roots[@]}" --include="test_*.py" | sort)
CI=true "${py[@]}" -m pytest -q -n 4 -p no:cacheprovider --junitxml="$out/gpu-tests.xml" "${files[@]}" \
  2>&1 | tee "$out/gpu-tests.log"
test_status=${PIPESTATUS[0]}
[ "$test_status" -eq 0 ] || status=$test_status

only=()
[ "${#dists[@]}" -gt 0 ] && only=(--only "${dists[@]}")
"${py[@]}" tools/bench.py --device cuda --out "$out" "${only[@]}" 2>&1 | tee "$out/bench.log"
bench_status=${PIPESTATUS[0]}
[ "$bench_status" -eq 0 ] || status=$bench_status
# csrv2's GPU search rows at the paper's database size (1M codes): SparseIndex's scan path
# (kernelkit's Triton SparseCodes.dot) against dense fp32 384-d / 4096-d and MRL-32 on the GPU,
# k = 2, 4, 8, even and skewed usage, batch 1 and 64.
if [ "${#dists[@]}" -eq 0 ] || printf '%s\n' "${dists[@]}" | grep -qx csrv2; then
  "${py[@]}" tools/bench.py --only csrv2 --full --device cuda --out "$out/csrv2-full" 2>&1 \
    | tee "$out/csrv2-full-bench.log"
  csrv2_status=${PIPESTATUS[0]}
  [ "$csrv2_status" -eq 0 ] || status=$csrv2_status
fi
echo "gpu_check finished with status $status; results in $out/"
exit "$status"
