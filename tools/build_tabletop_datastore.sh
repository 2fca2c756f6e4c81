#!/usr/bin/env bash
# Rebuild the tabletop pair's retrieval datastore (specvla_ros/models/tabletop/target/datastore.safetensors)
# the way a user builds one for a robot: record the policy's own run, then collect its decoded actions.
#   1. bag-record --sim: specvla_node (AR decoding) drives the simulated tabletop, 60 episodes per task,
#      seeds 2000+ (disjoint from the evaluation seeds 0-19 and the benchmark's 500+); only the node's
#      decode stats and the task are recorded (about 6 minutes on a 2-core CPU);
#   2. build-datastore: every decoded action as 7 bins, an episode per task message.
# The 450 expert demonstrations the target was trained on made a datastore whose guesses were the
# target's next action in full on 0 % of frames: the policy's bins are not the expert's (docs/decoding.md).
# Usage: tools/build_tabletop_datastore.sh [WORK]   (default build/)
set -euo pipefail
cd "$(dirname "$0")/.."
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
work=${1:-build}
specvla=.venv/bin/specvla
$specvla bag-record --sim --mode autoregressive --episodes 60 --seed 2000 --overwrite \
    --topics /specvla_node/decode_stats /vla/instruction --out "$work/tabletop_rollouts"
$specvla build-datastore --data "$work/tabletop_rollouts" --target specvla_ros/models/tabletop/target \
    --out specvla_ros/models/tabletop/target/datastore.safetensors
