"""The bag verbs: `specvla bag-record`, `specvla bag-replay` and `specvla bag-compare`.

Free of rclpy and torch, and outside specvla_ros.bags (whose import loads rosbags and OpenCV):
`specvla --help` stays instant and `specvla bag-compare` runs without ROS.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from specvla_ros.cli.arguments import DECODER_MODES, SIM_TASKS, add_model_arguments, lazy_run
from specvla_ros.ros.topics import DEFAULT_RECORD_TOPICS, TASK_TOPIC

IMAGE_QOS_CHOICES = ("sensor_data", "reliable")  # specvla_ros.ros.qos; not imported: it loads rclpy


def _add_record_arguments(parser: argparse.ArgumentParser) -> None:
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
    parser.add_argument("--task-topic", default=TASK_TOPIC,
                        help=f"where --task is written (default {TASK_TOPIC})")
    sim = parser.add_argument_group("recording a simulated run (--sim)")
    sim.add_argument("--sim", action="store_true",
                     help="run specvla_node + the MuJoCo tabletop in this process (lockstep) and record them")
    add_model_arguments(sim)
    sim.add_argument("--mode", choices=DECODER_MODES, default="speculative")
    sim.add_argument("--tasks", nargs="+", default=list(SIM_TASKS), choices=list(SIM_TASKS))
    sim.add_argument("--episodes", type=int, default=1, help="episodes per task (default 1)")
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--max-steps", type=int, default=0, help="steps per episode (default 0: each task's budget)")


def _add_replay_arguments(parser: argparse.ArgumentParser) -> None:
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
    parser.add_argument("--task-topic", default=TASK_TOPIC,
                        help=f"std_msgs/String topic holding the task (default {TASK_TOPIC})")
    parser.add_argument("--task", default=None, metavar="TEXT",
                        help="the task for every frame, e.g. \"pick up the red cube\": for a bag without a task "
                             "topic (a plain camera recording); overrides the bag's own task topic")


def _add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bag", type=Path, help="bag with camera frames (folder, .db3 or .mcap)")
    _bag_input_arguments(parser)
    parser.add_argument("--skip-bad-frames", action="store_true",
                        help="skip frames that cannot be read (truncated, depth in a colour stream, ...), list each, "
                             "and go on (default: stop at the first)")
    add_model_arguments(parser)
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


def register(verbs: argparse._SubParsersAction) -> None:
    bag_record = verbs.add_parser(
        "bag-record", help="record camera, task, command and decode stats of a run into a rosbag2 bag",
        description="Record topics into a rosbag2 bag (sqlite3 or MCAP) as `ros2 bag record` would: raw messages, "
                    "QoS adapted to the publishers found. With --sim, run specvla_node and the simulated tabletop "
                    "in this process and record that run.")
    _add_record_arguments(bag_record)
    bag_record.set_defaults(run=lazy_run("specvla_ros.ros.bag_record", "run_record"))

    bag_replay = verbs.add_parser(
        "bag-replay", help="play a bag's camera + task into a running node and capture its outputs",
        description="Publish a bag's camera and task topics over ROS at recorded timing (--rate) or in lockstep "
                    "with the node (--lockstep: each frame waits for the node's answer to it), optionally "
                    "--loop and --remap, and write the inputs plus the node's command and decode stats to --out. "
                    "Prints a JSON summary; exit 3 when a lockstep frame went unanswered.")
    _add_replay_arguments(bag_replay)
    bag_replay.set_defaults(run=lazy_run("specvla_ros.ros.bag_replay", "run_replay"))

    bag_compare = verbs.add_parser(
        "bag-compare", help="offline A/B: AR vs Spec-VLA at r on every frame of a bag (no ROS needed)",
        description="Decode every camera frame of a bag twice, plain autoregressive and Spec-VLA at --relax-bins, "
                    "and write report.json, report.md, deviation.png and timeline.png: per-dimension action "
                    "deviation in bins and in the action's units, fraction of steps that differ, the relaxed rule "
                    "checked at the first differing token, acceptance length and latency.")
    _add_compare_arguments(bag_compare)
    bag_compare.set_defaults(run=lazy_run("specvla_ros.bags.compare", "run"))
