#!/usr/bin/env bash
# The GPU benchmark, as one prepared run (about 5 minutes on one H200; needs only torch + transformers
# + numpy + safetensors, what the lent GPU machine has):
#   1. bench/gpu_benchmark.py: prefill / decode step / tree verify (8-64 tokens) / draft step latency
#      of an OpenVLA-7B-shaped backbone (random weights) in bf16, and the Spec-VLA speedup they imply
#      at a range of acceptance lengths;
#   2. bench/decode_benchmark.py on the bundled tabletop pair in bf16 on CUDA, AR vs r = 0..3, on the
#      frame set bench/data/tabletop_frames.npz.
# Usage: bench/gpu.sh [OUT_DIR]        (bench/gpu.sh --dry-run: tiny shapes on CPU, for CI)
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
python=${PYTHON:-python3}
[ -x .venv/bin/python ] && python=${PYTHON:-.venv/bin/python}
if [ "${1:-}" = "--dry-run" ]; then
  out=${2:-out/gpu-dry-run}
  mkdir -p "$out"
  "$python" bench/gpu_benchmark.py --dry-run --out "$out/openvla_shaped.json"
  "$python" bench/decode_benchmark.py --data bench/data/tabletop_frames.npz --frames 3 --repeats 1 --relax 1 \
      --out "$out/bundled"
  exit 0
fi
out=${1:-out/gpu}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
"$python" bench/gpu_benchmark.py --out "$out/openvla_shaped.json" | tee "$out/openvla_shaped.txt"
"$python" bench/decode_benchmark.py --device cuda --dtype bfloat16 --data bench/data/tabletop_frames.npz \
    --frames 48 --repeats 5 --relax 1 2 3 --out "$out/bundled" | tee "$out/bundled.txt"
