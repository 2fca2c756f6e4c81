"""`specvla <verb>`: the package's command-line tool.

Each verb imports its machinery lazily, so `specvla --help` is instant and a verb that needs no
ROS (or no torch) does not load it.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Callable


def _node(args: argparse.Namespace, rest: list[str]) -> int:
    from specvla_ros.ros.node_entry import main as node_main

    return node_main(["specvla_node", *rest])


def _demo(args: argparse.Namespace, rest: list[str]) -> int:
    from specvla_ros.ros.demo import run_demo

    return run_demo(seconds=args.seconds, relax_bins=args.relax_bins, mode=args.mode, max_steps=args.max_steps,
                    episodes_per_task=args.episodes_per_task)


def _dds_profile(args: argparse.Namespace, rest: list[str]) -> int:
    from specvla_ros.ros.dds_profile import export_lines

    print(export_lines())
    return 0


def _lazy(module: str, function: str) -> Callable[[argparse.Namespace, list[str]], int]:
    """A verb that imports `module.function(args)` only when it runs."""

    def run(args: argparse.Namespace, rest: list[str]) -> int:
        return getattr(importlib.import_module(module), function)(args)

    return run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="specvla",
        description="Spec-VLA speculative decoding for Vision-Language-Action policies, as a ROS 2 node.",
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    node = verbs.add_parser(
        "node", help="run specvla_node (same as the specvla_node executable)",
        description="Run specvla_node. Everything after `node` goes to ROS, e.g. "
                    "`specvla node --ros-args --params-file config/arm.yaml -p model.path:=/models/vla`.",
        add_help=False)
    node.set_defaults(run=_node)

    demo = verbs.add_parser(
        "demo", help="the main job on the embedded default (what `make demo` runs)",
        description="Start the node on the embedded default model with a camera and a task over real "
                    "DDS topics (loopback), print live decode statistics and a summary.")
    demo.add_argument("--seconds", type=float, default=300.0, help="time limit (default 300)")
    demo.add_argument("--episodes-per-task", type=int, default=1, help="episodes of each task (default 1)")
    demo.add_argument("--max-steps", type=int, default=0,
                      help="control steps per episode (default 0: each task's own budget)")
    demo.add_argument("--mode", choices=("speculative", "autoregressive"), default="speculative")
    demo.add_argument("--relax-bins", type=int, default=3, metavar="R",
                      help="relaxed acceptance threshold in bins for all dimensions (default 3; 0 = lossless)")
    demo.set_defaults(run=_demo)

    dds_profile = verbs.add_parser(
        "dds-profile", help="print the shell lines that give another process the large-image Fast DDS profile",
        description="Print `export` lines for config/fastdds_large_images.xml (shared memory with a 32 MB "
                    "segment, UDP on loopback only). Full-size camera frames need it in the process that publishes "
                    "them: run `eval \"$(specvla dds-profile)\"` in the camera driver's or `ros2 bag play`'s "
                    "terminal. specvla's own commands apply it themselves when ROS_AUTOMATIC_DISCOVERY_RANGE="
                    "LOCALHOST (docs/rosbags.md, \"Full-size images\").")
    dds_profile.set_defaults(run=_dds_profile)

    sim_eval = verbs.add_parser(
        "sim-eval", help="success rate of a policy in the simulated tabletop (in process or through ROS)",
        description="Run N seeded episodes per task with the VLA (AR or Spec-VLA at a chosen r) or the "
                    "scripted expert; write results.json and results.md (success rate with 95%% CI, "
                    "episode length, decode latency, acceptance length).")
    from specvla_ros.sim_eval import add_arguments

    add_arguments(sim_eval)
    sim_eval.set_defaults(run=_lazy("specvla_ros.sim_eval", "run"))

    from specvla_ros.ros.libero_eval import add_arguments as add_libero_arguments

    libero_eval = verbs.add_parser(
        "libero-eval", help="success rate on LIBERO, the paper's benchmark, through specvla_node (make setup-libero)",
        description="Run N episodes of LIBERO tasks (fixed initial states, the paper's step limits) with the policy "
                    "in specvla_node over DDS, in lockstep; write results.json and results.md. Needs the optional "
                    "LIBERO venv: `make setup-libero`, then `.venv-libero/bin/specvla libero-eval ...` "
                    "(docs/libero.md).")
    add_libero_arguments(libero_eval)
    libero_eval.set_defaults(run=_lazy("specvla_ros.ros.libero_eval", "run"))

    from specvla_ros.training.draft_runs import add_extract_features_arguments, add_train_draft_arguments
    from specvla_ros.training.runs import add_train_vla_arguments

    train_vla = verbs.add_parser(
        "train-vla", help="behaviour-clone a tiny VLA on simulation demonstrations",
        description="Train the tiny VLA (cross-entropy on the 7 action tokens) on demonstrations from "
                    "`python -m specvla_ros.sim.demos`; action statistics are computed from the data and "
                    "stored with the checkpoint; writes report.json and curve.png beside it.")
    add_train_vla_arguments(train_vla)
    train_vla.set_defaults(run=_lazy("specvla_ros.training.runs", "run_train_vla"))

    extract = verbs.add_parser(
        "extract-features", help="run the target once over the data and cache the draft head's training pairs",
        description="Run the frozen target greedily over the observations and write, per frame, the EAGLE "
                    "training pairs (target features, next-input embeddings, target tokens) as sharded "
                    "safetensors + a JSON index; prints a size estimate first, resumes where a stopped run "
                    "left off. Runs under torchrun too: frames are sharded across ranks (docs/training.md).")
    add_extract_features_arguments(extract)
    extract.set_defaults(run=_lazy("specvla_ros.training.draft_runs", "run_extract_features"))

    train_draft = verbs.add_parser(
        "train-draft", help="train a Spec-VLA draft head against a target VLA",
        description="Train an EAGLE-style draft head (smooth-L1 feature + 0.1 soft cross-entropy) from a "
                    "feature cache (--features), or extract one first from --target and --data; evaluate "
                    "held-out acceptance length at r = 0 and --relax-bins, checkpoint after every evaluation. "
                    "Runs under torchrun too (DDP; docs/training.md).")
    add_train_draft_arguments(train_draft)
    train_draft.set_defaults(run=_lazy("specvla_ros.training.draft_runs", "run_train_draft"))

    from specvla_ros.training.datastore import add_build_datastore_arguments

    build_datastore = verbs.add_parser(
        "build-datastore", help="a retrieval datastore of demonstrated actions, for guesses verified in the prefill",
        description="Collect the 7-bin actions of demonstration episodes (binned with --target's action "
                    "statistics) or of the node's decoded actions in a bag into a datastore file "
                    "(safetensors). temporal_draft.datastore points the node at it: the actions that "
                    "followed the robot's last ones in the demonstrations become guesses.")
    add_build_datastore_arguments(build_datastore)
    build_datastore.set_defaults(run=_lazy("specvla_ros.training.datastore", "run_build_datastore"))

    from specvla_ros.bag_arguments import add_compare_arguments, add_record_arguments, add_replay_arguments

    bag_record = verbs.add_parser(
        "bag-record", help="record camera, task, command and decode stats of a run into a rosbag2 bag",
        description="Record topics into a rosbag2 bag (sqlite3 or MCAP) as `ros2 bag record` would: raw messages, "
                    "QoS adapted to the publishers found. With --sim, run specvla_node and the simulated tabletop "
                    "in this process and record that run.")
    add_record_arguments(bag_record)
    bag_record.set_defaults(run=_lazy("specvla_ros.ros.bag_record", "run_record"))

    bag_replay = verbs.add_parser(
        "bag-replay", help="play a bag's camera + task into a running node and capture its outputs",
        description="Publish a bag's camera and task topics over ROS at recorded timing (--rate) or in lockstep "
                    "with the node (--lockstep: each frame waits for the node's answer to it), optionally "
                    "--loop and --remap, and write the inputs plus the node's command and decode stats to --out. "
                    "Prints a JSON summary; exit 3 when a lockstep frame went unanswered.")
    add_replay_arguments(bag_replay)
    bag_replay.set_defaults(run=_lazy("specvla_ros.ros.bag_replay", "run_replay"))

    bag_compare = verbs.add_parser(
        "bag-compare", help="offline A/B: AR vs Spec-VLA at r on every frame of a bag (no ROS needed)",
        description="Decode every camera frame of a bag twice, plain autoregressive and Spec-VLA at --relax-bins, "
                    "and write report.json, report.md, deviation.png and timeline.png: per-dimension action "
                    "deviation in bins and in the action's units, fraction of steps that differ, the relaxed rule "
                    "checked at the first differing token, acceptance length and latency.")
    add_compare_arguments(bag_compare)
    bag_compare.set_defaults(run=_lazy("specvla_ros.bag_compare", "run"))
    return parser


def split_ros_arguments(argv: list[str]) -> tuple[list[str], list[str]]:
    """(our arguments, ROS arguments): everything from `--ros-args` on belongs to ROS (rcl), the rest to us.

    Only the ROS part reaches rclpy.init: rcl reads any `FROM:=TO` it is given as a remap and warns
    that the syntax is deprecated (`bag-replay --remap a:=b` did).
    """
    if "--ros-args" not in argv:
        return list(argv), []
    index = argv.index("--ros-args")
    return list(argv[:index]), list(argv[index:])


def main(argv: list[str] | None = None) -> int:
    from specvla_ros.ros.dds_profile import use_large_image_profile

    argv = sys.argv[1:] if argv is None else argv
    use_large_image_profile()  # before any verb creates a DDS participant (see dds_profile.py)
    if argv[:1] == ["node"]:
        args, rest = build_parser().parse_known_args(argv)
        return args.run(args, rest)
    own, ros_arguments = split_ros_arguments(argv)
    args, rest = build_parser().parse_known_args(own)
    if rest:
        build_parser().error(f"unrecognized arguments: {' '.join(rest)}")
    args.ros_arguments = ros_arguments
    return args.run(args, rest)


if __name__ == "__main__":
    sys.exit(main())
