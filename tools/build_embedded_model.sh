#!/usr/bin/env bash
# Rebuild the embedded tabletop model pair from scratch (CPU): demonstrations -> tiny VLA ->
# draft head -> success-rate evaluation. Writes everything under WORK (default build/embedded);
# copy WORK/target and WORK/draft to specvla_ros/models/tabletop/ to ship them.
#
# Usage: tools/build_embedded_model.sh [WORK]     (about an hour on a 2-core CPU)
set -euo pipefail
cd "$(dirname "$0")/.."
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
work=${1:-build/embedded}
py=.venv/bin/python
specvla=.venv/bin/specvla

$py -m specvla_ros.sim.demos --tasks pick push place --episodes 150 --seed 10000 --action-noise 0.1 \
    --out "$work/demos"
$specvla train-vla --demos "$work/demos" --out "$work/target" --steps 2500 --batch-size 32 --lr 1e-3
$specvla train-draft --target "$work/target" --demos "$work/demos" --out "$work/draft" \
    --steps 1500 --frames 400 --held-out 40 --eval-every 250 --relax-bins 3
# Evaluation seeds (0..) differ from the demonstration seeds (10000..).
$specvla sim-eval --model "$work/target" --mode autoregressive --episodes 10 --out "$work/eval_ar"
for r in 0 1 2 3; do
  $specvla sim-eval --model "$work/target" --draft "$work/draft" --relax-bins "$r" --episodes 10 \
      --out "$work/eval_r$r"
done
