#!/usr/bin/env bash
# The GPU checks, as one script for a machine with a CUDA GPU:
#   1. the test suite's GPU-marked tests (tests/test_gpu.py: GPU = CPU model, no host sync a step)
#   2. a 1000-step names run with trainer=gpu (names.txt from the data cache or the internet)
#   3. the benchmark on the GPU (scripts/benchmark.py --device cuda), its tables written into
#      docs/benchmark.md's block of the GPU
# Usage: scripts/gpu_check.sh [output directory, default logs/gpu_check]
# PYTHON picks the interpreter (default: .venv/bin/python where scripts/run.sh made one, else python3).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="$(mkdir -p "${1:-$root/logs/gpu_check}" && cd "${1:-$root/logs/gpu_check}" && pwd)"
py="${PYTHON:-}"
if [ -z "$py" ]; then
    if [ -x "$root/.venv/bin/python" ]; then py="$root/.venv/bin/python"; else py=python3; fi
fi
cd "$root"
export PYTHONUNBUFFERED=1

"$py" - <<'PY'
import sys
import torch
if not torch.cuda.is_available():
    sys.exit("error: torch sees no CUDA GPU: run scripts/gpu_check.sh on a machine with one")
print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}, CUDA {torch.version.cuda}")
PY

echo "== 1. GPU-marked tests"
failed=()
"$py" -m pytest -m gpu -v -rs -p no:cacheprovider tests 2>&1 | tee "$out/gpu_tests.txt" \
    || failed+=("GPU tests")

echo "== 2. 1000 steps on names with trainer=gpu"
start=$SECONDS
"$py" -m bigramlab.train dataset=names trainer=gpu trainer.max_steps=1000 \
    callbacks.progress_bar.refresh_rate=0 "hydra.run.dir=$out/names_gpu_$(date +%Y%m%d_%H%M%S)" 2>&1 \
    | tee "$out/names_gpu.txt" || failed+=("names run")
echo "whole process: $((SECONDS - start)) s" | tee -a "$out/names_gpu.txt"

echo "== 3. benchmark on the GPU"
"$py" scripts/benchmark.py --device cuda --json "$out/benchmark_cuda.json" \
    --markdown "$root/docs/benchmark.md" 2>&1 | tee "$out/benchmark_cuda.txt" || failed+=("benchmark")

if [ ${#failed[@]} -gt 0 ]; then
    echo "gpu_check: FAILED: ${failed[*]} (outputs in $out)" >&2
    exit 1
fi
echo "gpu_check: all passed (outputs in $out)"
