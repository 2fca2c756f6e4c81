"""`specvla <verb>`: the package's command-line tool.

One module per group of verbs (node.py: node, demo, dds-profile; sim.py; training.py; bags.py;
libero.py), each with a `register(verbs)` that adds its parsers; arguments.py holds what they
share. Each verb imports its machinery only when it runs, so `specvla --help` is instant and a
verb that needs no ROS (or no torch) does not load it. `python -m specvla_ros.cli` is the same
tool (torchrun's `-m` uses it).
"""
from __future__ import annotations

import argparse
import sys

from specvla_ros.cli import bags, libero, node, sim, training


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="specvla",
        description="Spec-VLA speculative decoding for Vision-Language-Action policies, as a ROS 2 node.",
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for group in (node, sim, libero, training, bags):
        group.register(verbs)
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
    if argv[:1] == ["node"]:  # everything after `node` goes to specvla_node, ROS arguments included
        args, rest = build_parser().parse_known_args(argv)
        args.rest = rest
        return args.run(args)
    own, ros_arguments = split_ros_arguments(argv)
    args = build_parser().parse_args(own)
    args.ros_arguments = ros_arguments
    return args.run(args)
