"""What several verbs share: which model pair decodes, at which threshold; the simulator's tasks; lazy
runs (the node's topic names are in specvla_ros.ros.topics).

Free of torch, rclpy and the simulator, so `specvla --help` stays instant.
"""
from __future__ import annotations

import argparse
import importlib
from pathlib import Path
from typing import Callable

SIM_TASKS = ("pick", "push", "place")  # specvla_ros.sim.tasks.TASKS; not imported: it loads MuJoCo
DECODER_MODES = ("speculative", "autoregressive")


def add_model_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """--model, --draft and --relax-bins, read by specvla_ros.models.model_pair and DecoderConfig."""
    parser.add_argument("--model", type=Path,
                        help="target checkpoint folder (default: the embedded tabletop model, "
                             "specvla_ros/models/tabletop)")
    parser.add_argument("--draft", type=Path,
                        help="draft head checkpoint folder (default: the embedded one; with --model, speculative "
                             "decoding needs the head trained for that model)")
    parser.add_argument("--relax-bins", type=int, nargs="+", default=[0], metavar="R",
                        help="Spec-VLA threshold in bins: one value or 7 (dx dy dz droll dpitch dyaw gripper); "
                             "default: 0, exact (lossless)")


def lazy_run(module: str, function: str) -> Callable[[argparse.Namespace], int]:
    """A verb's runner that imports `module` only when the verb runs: `--help` loads no torch and no rclpy."""

    def run(args: argparse.Namespace) -> int:
        return getattr(importlib.import_module(module), function)(args)

    return run
