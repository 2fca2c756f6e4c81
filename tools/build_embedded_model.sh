#!/usr/bin/env bash
# Rebuild the embedded tabletop model pair from scratch (CPU): demonstrations -> tiny VLA ->
# draft head -> success-rate evaluation. Writes everything under WORK (default build/embedded);
# copy WORK/target and WORK/draft to specvla_ros/models/tabletop/ to ship them.
#
# Usage: tools/build_embedded_model.sh [WORK]     (about an hour on a 2-core CPU; see
#        docs/training.md for the measured times and where this recipe stands)
set -euo pipefail
cd "$(dirname "$0")/.."
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
work=${1:-build/embedded}
py=.venv/bin/python
specvla=.venv/bin/specvla

$py -m specvla_ros.sim.demos --tasks pick push place --episodes 150 --seed 10000 --action-noise 0.1 \
    --out "$work/demos"
$specvla train-vla --demos "$work/demos" --out "$work/target" --steps 12000 --batch-size 64 --lr 2e-3 \
    --image-size 64 --patch-size 16 --hidden-size 96 --layers 4 --vision-layers 1 --vision-stem patch --label-sigma 3 --shift 2
$specvla train-draft --target "$work/target" --data "$work/demos" --out "$work/draft" \
    --steps 3000 --frames 1000 --held-out 60 --eval-every 500 --relax-bins 3
# Evaluation seeds (0..) differ from the demonstration seeds (10000..).
$specvla sim-eval --model "$work/target" --mode autoregressive --episodes 10 --out "$work/eval_ar"
for r in 0 1 2 3; do
  $specvla sim-eval --model "$work/target" --draft "$work/draft" --relax-bins "$r" --episodes 10 \
      --out "$work/eval_r$r"
done
