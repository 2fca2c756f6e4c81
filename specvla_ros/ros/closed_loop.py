"""Run specvla_node and the simulation bridge in one process over real DDS topics.

Used by the demo, the success-rate harness (`--through-ros`) and the tests: the same wiring a
user gets from `launch/sim.launch.py`, without needing `launch`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter

from specvla_ros.msg import DecodeStats
from specvla_ros.ros.node import Decoder, SpecVLANode
from specvla_ros.ros.qos import STATS_QOS
from specvla_ros.ros.sim_bridge import SimBridgeNode
from specvla_ros.sim.metrics import EpisodeRecord


@dataclass
class ClosedLoopResult:
    records: list[EpisodeRecord]
    wall_s: float = 0.0


def _report_new(records: list[EpisodeRecord], reported: int,
                on_episode: Callable[[EpisodeRecord], None] | None) -> int:
    """Hand records[reported:] to `on_episode`; returns how many have been reported."""
    if on_episode is not None:
        for record in records[reported:]:
            on_episode(record)
    return len(records)


def _overrides(values: dict) -> list[Parameter]:
    return [Parameter(name, value=value) for name, value in values.items()]


def run_closed_loop(
    decoder: Decoder,
    tasks: list[str],
    episodes_per_task: int,
    seed: int = 0,
    node_parameters: dict | None = None,
    bridge_parameters: dict | None = None,
    timeout_s: float = 600.0,
    on_stats: Callable[[DecodeStats], None] | None = None,
    on_episode: Callable[[EpisodeRecord], None] | None = None,
) -> ClosedLoopResult:
    """Episodes through ROS: bridge publishes camera + task, node decodes and commands the sim.

    `on_stats` sees every DecodeStats message, `on_episode` every finished episode, as they happen.
    """
    context = Context()
    rclpy.init(context=context)
    node = bridge = None
    try:
        # As config/sim.yaml: lockstep pauses the sim while the model thinks (see there).
        node_values = {"dry_run": False, "start_enabled": True, "control_rate_hz": 20.0,
                       "action_timeout_s": 5.0, **(node_parameters or {})}
        node = SpecVLANode(decoder=decoder, context=context, parameter_overrides=_overrides(node_values))
        bridge_values = {"tasks": list(tasks), "episodes_per_task": episodes_per_task, "seed": seed,
                         **(bridge_parameters or {})}
        bridge = SimBridgeNode(context=context, parameter_overrides=_overrides(bridge_values))
        result = ClosedLoopResult(records=bridge.records)
        if on_stats:
            bridge.create_subscription(DecodeStats, "/specvla_node/decode_stats", on_stats, STATS_QOS)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        executor.add_node(bridge)
        started = time.monotonic()
        reported = 0
        while not bridge.finished and time.monotonic() - started < timeout_s:
            executor.spin_once(timeout_sec=0.05)
            reported = _report_new(bridge.records, reported, on_episode)
        _report_new(bridge.records, reported, on_episode)
        result.wall_s = time.monotonic() - started
        executor.shutdown()
        return result
    finally:
        for ros_node in (node, bridge):
            if ros_node is not None:
                ros_node.destroy_node()
        rclpy.try_shutdown(context=context)
