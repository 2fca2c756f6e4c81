"""The ROS verbs: `specvla node`, `specvla demo` and `specvla dds-profile`."""
from __future__ import annotations

import argparse

from specvla_ros.cli.arguments import DECODER_MODES


def _node(args: argparse.Namespace) -> int:
    if args.rest[:1] in (["-h"], ["--help"]):  # the node's own arguments all follow --ros-args
        args.print_help()
        return 0
    from specvla_ros.ros.node_entry import main as node_main

    return node_main(["specvla_node", *args.rest])


def _demo(args: argparse.Namespace) -> int:
    from specvla_ros.ros.demo import run_demo

    return run_demo(seconds=args.seconds, relax_bins=args.relax_bins, mode=args.mode, max_steps=args.max_steps,
                    episodes_per_task=args.episodes_per_task)


def _dds_profile(args: argparse.Namespace) -> int:
    from specvla_ros.ros.dds_profile import export_lines

    print(export_lines())
    return 0


def register(verbs: argparse._SubParsersAction) -> None:
    node = verbs.add_parser(
        "node", help="run specvla_node (same as the specvla_node executable)",
        description="Run specvla_node. Everything after `node` goes to ROS, e.g. "
                    "`specvla node --ros-args --params-file config/arm.yaml -p model.path:=/models/vla`.",
        add_help=False)
    node.set_defaults(run=_node, print_help=node.print_help)

    demo = verbs.add_parser(
        "demo", help="the main job on the embedded default (what `make demo` runs)",
        description="Start the node on the embedded default model with a camera and a task over real "
                    "DDS topics (loopback), print live decode statistics and a summary.")
    demo.add_argument("--seconds", type=float, default=300.0, help="time limit (default 300)")
    demo.add_argument("--episodes-per-task", type=int, default=1, help="episodes of each task (default 1)")
    demo.add_argument("--max-steps", type=int, default=0,
                      help="control steps per episode (default 0: each task's own budget)")
    demo.add_argument("--mode", choices=DECODER_MODES, default="speculative")
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
