"""Command-line arguments of the bag verbs (bag-record, bag-replay, bag-compare).

Kept apart from the tools, free of rclpy and torch, and outside specvla_ros.bags (whose import
loads rosbags and OpenCV): `specvla --help` stays instant and `specvla bag-compare` runs without ROS.
"""
from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_CAMERA_TOPIC = "/camera/image_raw"
DEFAULT_TASK_TOPIC = "/vla/instruction"
DEFAULT_RECORD_TOPICS = (DEFAULT_CAMERA_TOPIC, DEFAULT_TASK_TOPIC, "/specvla_node/command",
                         "/specvla_node/decode_stats")
SIM_TASKS = ("pick", "push", "place")  # specvla_ros.sim.tasks.TASKS; not imported to keep --help fast
IMAGE_QOS_CHOICES = ("sensor_data", "reliable")  # specvla_ros.ros.qos; not imported: it loads rclpy


def _decoder_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    parser.add_argument("--model", type=Path, help="target checkpoint folder (default: the embedded model)")
    parser.add_argument("--draft", type=Path, help="draft head checkpoint folder (default: the embedded one)")
    parser.add_argument("--relax-bins", type=int, nargs="+", default=[0], metavar="R",
                        help="Spec-VLA threshold in bins: one value or 7 (dx dy dz droll dpitch dyaw gripper); "
                             "default: 0, exact (lossless)")


def add_record_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="bag folder to create (must not exist)")
    parser.add_argument("--topics", nargs="+", default=list(DEFAULT_RECORD_TOPICS), metavar="TOPIC",
                        help="topics to record (default: camera, task, and specvla_node's command and decode_stats)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace --out if it exists (only ever a bag: metadata.yaml and storage files)")
    parser.add_argument("--storage", choices=("sqlite3", "mcap"), default="sqlite3")
    parser.add_argument("--duration", type=float, default=0.0, metavar="S",
                        help="stop after S seconds (default: at Ctrl-C, or when the --sim run ends)")
    parser.add_argument("--task", default=None, metavar="TEXT",
                        help="write this task into the bag (latched, at the start, on --task-topic) instead of "
                             "recording a live task topic: a camera recording becomes a bag bag-replay and "
                             "bag-compare use as it is")
    parser.add_argument("--task-topic", default=DEFAULT_TASK_TOPIC,
                        help=f"where --task is written (default {DEFAULT_TASK_TOPIC})")
    sim = parser.add_argument_group("recording a simulated run (--sim)")
    sim.add_argument("--sim", action="store_true",
                     help="run specvla_node + the MuJoCo tabletop in this process (lockstep) and record them")
    _decoder_arguments(sim)
    sim.add_argument("--mode", choices=("speculative", "autoregressive"), default="speculative")
    sim.add_argument("--tasks", nargs="+", default=list(SIM_TASKS), choices=list(SIM_TASKS))
    sim.add_argument("--episodes", type=int, default=1, help="episodes per task (default 1)")
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--max-steps", type=int, default=0, help="steps per episode (default 0: each task's budget)")


def add_replay_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bag", type=Path, help="input bag (rosbag2 folder, .db3 or .mcap)")
    _bag_input_arguments(parser)
    timing = parser.add_mutually_exclusive_group()
    timing.add_argument("--rate", type=float, default=1.0,
                        help="recorded timing times RATE (default 1.0; 2 = twice as fast)")
    timing.add_argument("--lockstep", action="store_true",
                        help="as fast as the node consumes: each frame waits for the node's answer to it")
    parser.add_argument("--wait-for", choices=("stats", "command"), default="stats",
                        help="lockstep answer: DecodeStats (works with dry_run, default) or the first model command")
    parser.add_argument("--image-qos", choices=IMAGE_QOS_CHOICES, default="sensor_data",
                        help="QoS of the camera publisher: sensor_data (best effort, default) or reliable (for a node "
                             "with topics.image_qos reliable; carries full-size frames without the shared-memory "
                             "profile)")
    parser.add_argument("--node", default="/specvla_node", help="node whose outputs are awaited and captured")
    parser.add_argument("--loop", type=int, default=1, metavar="N", help="play N times (0 = until Ctrl-C)")
    parser.add_argument("--remap", action="append", default=[], metavar="FROM:=TO",
                        help="publish bag topic FROM as TO (repeatable)")
    parser.add_argument("--out", type=Path, help="output bag: the inputs as published + the node's command and stats")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace --out if it exists (only ever a bag: metadata.yaml and storage files)")
    parser.add_argument("--storage", choices=("sqlite3", "mcap"), default="sqlite3", help="output bag storage")
    parser.add_argument("--frame-timeout", type=float, default=30.0, metavar="S",
                        help="lockstep: give up on a frame's answer after S seconds (default 30)")
    parser.add_argument("--discovery-timeout", type=float, default=10.0, metavar="S",
                        help="wait S seconds for the node's subscriptions before playing (default 10)")


def _bag_input_arguments(parser: argparse.ArgumentParser) -> None:
    """Which frames of a bag, with which task: the same options for bag-compare and bag-replay."""
    parser.add_argument("--camera-topic", default=None,
                        help="sensor_msgs/Image or CompressedImage topic (default: the bag's only colour image "
                             "topic; with several, the error lists them)")
    parser.add_argument("--task-topic", default=DEFAULT_TASK_TOPIC,
                        help=f"std_msgs/String topic holding the task (default {DEFAULT_TASK_TOPIC})")
    parser.add_argument("--task", default=None, metavar="TEXT",
                        help="the task for every frame, e.g. \"pick up the red cube\": for a bag without a task "
                             "topic (a plain camera recording); overrides the bag's own task topic")


def add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bag", type=Path, help="bag with camera frames (folder, .db3 or .mcap)")
    _bag_input_arguments(parser)
    parser.add_argument("--skip-bad-frames", action="store_true",
                        help="skip frames that cannot be read (truncated, depth in a colour stream, ...), list each, "
                             "and go on (default: stop at the first)")
    _decoder_arguments(parser)
    parser.add_argument("--tree-top-k", type=int, default=8, help="draft tree: nodes expanded per depth")
    parser.add_argument("--tree-depth", type=int, default=4, help="draft tree depth")
    parser.add_argument("--tree-total-tokens", type=int, default=50, help="draft tree: nodes verified")
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:N)")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    parser.add_argument("--unnorm-key", default=None, help="dataset key of the action statistics")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads (default 0: torch's choice); latencies on a shared CPU need 1")
    parser.add_argument("--max-frames", type=int, default=None, help="compare only the first N frames")
    parser.add_argument("--warmup", type=int, default=1, help="frames decoded once more, untimed, first (default 1)")
    parser.add_argument("--out", type=Path, required=True,
                        help="output folder: report.json, report.md, deviation.png, timeline.png, worst_frames.png")
