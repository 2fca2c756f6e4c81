#!/usr/bin/env bash
# The GPU benchmark as one prepared, unattended run: expected about 5 minutes on one H200 (not yet run
# there), every step capped so that the whole run ends within 9 whatever happens. Needs only torch +
# transformers + numpy + safetensors (what the lent GPU machine has); that machine has no editable
# install, so the repository goes on PYTHONPATH.
#   1. bench/gpu_benchmark.py: an OpenVLA-7B-shaped language model, random weights, bf16. Prefill,
#      decode step, tree verifies of 8-64 tokens, draft step, and prefills with 0/7/14/50 guessed tokens
#      appended, each through HF eager, the package's static-cache path eager, with CUDA graphs
#      (reduce-overhead) and compiled (default), with compile times; the Spec-VLA speedups they imply
#      at a range of acceptance lengths (issue 18) and those of guesses verified inside the prefill
#      (issue 19), against HF-eager AR and the fastest AR.
#   2. bench/decode_benchmark.py on the bundled tabletop pair, bf16 on CUDA, on the frames in
#      bench/data/tabletop_frames.npz: HF-eager AR, AR, SD r=0, Spec-VLA r=3, once eager (--compile off)
#      and once with CUDA graphs (--compile reduce-overhead).
#   3. A correctness check on the bundled pair (bf16 on CUDA, eager): SD r=0 and the HF-eager AR emit
#      the package AR's tokens on every frame; it also reads step 2's "steps_differing_from_ar" of
#      SD r=0 and the HF-eager AR (compiled and eager), which must be 0.
# Usage:
#   bench/gpu.sh [OUT_DIR]             on the GPU machine (default out/gpu)
#   bench/gpu.sh --dry-run [OUT_DIR]   tiny shapes, few frames, on CPU: about a minute (what CI runs)
# Writes OUT_DIR/log.txt (everything printed), openvla_shaped.json, bundled_off/ and
# bundled_reduce-overhead/ (results.json, results.md) and lossless.json. The device tool brings back at
# most 8 files: pack them, e.g. `bench/gpu.sh /tmp/gpu; tar czf "$OUT/gpu.tgz" -C /tmp gpu`.
# A step that fails or runs out of time is logged and the run goes on; the exit status is then 1.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
python=${PYTHON:-python3}
[ -x .venv/bin/python ] && python=${PYTHON:-.venv/bin/python}
frames=bench/data/tabletop_frames.npz

if [ "${1:-}" = "--dry-run" ]; then
  dry_run=1 out=${2:-out/gpu-dry-run}
else
  dry_run=0 out=${1:-out/gpu}
fi
mkdir -p "$out"
log=$out/log.txt
: >"$log"
failed=()

run_for() {  # run_for SECONDS COMMAND...: at most SECONDS, where coreutils' timeout exists
  if command -v timeout >/dev/null; then timeout "$@"; else shift; "$@"; fi
}

step() {  # step NAME SECONDS COMMAND...: one step, its output into the log; a failure is noted, not fatal
  local name=$1 seconds=$2 started=$SECONDS status=0
  shift 2
  echo "== $name (at most $seconds s)" | tee -a "$log"
  run_for "$seconds" "$@" 2>&1 | tee -a "$log" || status=$?
  echo "== $name: exit $status after $((SECONDS - started)) s" | tee -a "$log"
  [ "$status" -eq 0 ] || failed+=("$name")
}

# Step 3: argv = device dtype frames out.json [decode_benchmark results.json ...].
lossless_check=$(cat <<'PY'
"""r = 0 speculative decoding and the HF-eager AR emit the package AR's tokens, frame by frame."""
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, "bench")
from hf_eager import HFEagerAutoregressive
from specvla_ros.core.config import DecoderConfig
from specvla_ros.core.loading import load_decoder

device, dtype, count, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
pair = Path("specvla_ros/models/tabletop")
with np.load("bench/data/tabletop_frames.npz") as frames:
    images, texts = list(frames["images"][:count]), [str(text) for text in frames["instructions"][:count]]
ar = load_decoder(pair / "target", None, DecoderConfig(mode="autoregressive"), device, dtype)
others = {"SD r=0": load_decoder(pair / "target", pair / "draft", DecoderConfig(relax_bins=0), device, dtype),
          "AR (HF eager)": HFEagerAutoregressive(ar.backbone, ar.config)}
reference = [ar.decode(image, text).token_ids for image, text in zip(images, texts)]
report = {"device": device, "dtype": dtype, "frames": len(images), "differing_frames": {}, "decode_benchmark": {}}
for name, decoder in others.items():
    tokens = [decoder.decode(image, text).token_ids for image, text in zip(images, texts)]
    report["differing_frames"][name] = [i for i, (a, b) in enumerate(zip(reference, tokens)) if a != b]
    print(f"{name} vs AR, eager: {len(report['differing_frames'][name])} of {len(images)} frames differ")
for results in map(Path, sys.argv[5:]):
    if results.is_file():
        rows = {row["mode"]: row for row in json.loads(results.read_text())["modes"]}
        for name in ("SD r=0", "AR (HF eager)"):
            share = rows[name]["steps_differing_from_ar"] if name in rows else None
            report["decode_benchmark"][f"{results.parent.name}: {name}"] = share
            print(f"{results.parent.name}, {name}: share of frames differing from AR {share}")
out.write_text(json.dumps(report, indent=1) + "\n")
wrong = any(report["differing_frames"].values()) or any(report["decode_benchmark"].values())
print("FAIL: see above" if wrong else "OK: every decoder emitted AR's tokens")
sys.exit(1 if wrong else 0)
PY
)

if [ "$dry_run" = 1 ]; then
  step openvla_shaped 240 "$python" bench/gpu_benchmark.py --dry-run --out "$out/openvla_shaped.json"
  step bundled_off 240 "$python" bench/decode_benchmark.py --data "$frames" --frames 3 --repeats 1 --relax 1 \
      --compile off --out "$out/bundled_off"
  step lossless 120 "$python" -c "$lossless_check" cpu float32 3 "$out/lossless.json" "$out/bundled_off/results.json"
else
  step gpu 20 nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  step openvla_shaped 270 "$python" bench/gpu_benchmark.py --out "$out/openvla_shaped.json"
  bundled=(bench/decode_benchmark.py --device cuda --dtype bfloat16 --data "$frames" --frames 24 --repeats 3 --relax 3)
  step bundled_off 60 "$python" "${bundled[@]}" --compile off --out "$out/bundled_off"
  step bundled_reduce-overhead 150 "$python" "${bundled[@]}" --compile reduce-overhead \
      --out "$out/bundled_reduce-overhead"
  step lossless 45 "$python" -c "$lossless_check" cuda bfloat16 16 "$out/lossless.json" \
      "$out/bundled_off/results.json" "$out/bundled_reduce-overhead/results.json"
fi

if [ ${#failed[@]} -gt 0 ]; then
  echo "failed: ${failed[*]} (see $log)" | tee -a "$log"
  exit 1
fi
echo "all steps done: $out" | tee -a "$log"
