"""Run specvla_node and a simulation bridge in one process over real DDS topics (loopback).

One runner for every such run: the tabletop (`run_closed_loop`: the demo, the success-rate
harness's `--through-ros`, the tests), LIBERO (libero_bridge.run_libero_episodes) and bag-record's
simulated session (`start_nodes`, spun by its recorder): the same wiring a user gets from
`launch/sim.launch.py`, without needing `launch`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter

from specvla_ros.msg import DecodeStats
from specvla_ros.ros.episode_bridge import EpisodeBridge
from specvla_ros.ros.node import SpecVLANode
from specvla_ros.ros.qos import STATS_QOS
from specvla_ros.ros.sim_bridge import SimBridgeNode
from specvla_ros.ros.worker import Decoder
from specvla_ros.sim.metrics import EpisodeRecord

# As config/sim.yaml: lockstep pauses the sim while the model thinks (see there).
SIM_NODE_PARAMETERS: dict[str, Any] = {"dry_run": False, "start_enabled": True, "control_rate_hz": 20.0,
                                       "action_timeout_s": 5.0}


@dataclass
class BridgeRun:
    """What a run reported: the episodes, and the bridge's counters (episode_bridge.EpisodeBridge)."""

    records: list[EpisodeRecord]
    wall_s: float = 0.0
    frames_published: int = 0
    commands_applied: int = 0
    timeouts: int = 0
    sim_step_ms: list[float] = field(default_factory=list)

    @property
    def sim_step_ms_mean(self) -> float | None:
        return round(sum(self.sim_step_ms) / len(self.sim_step_ms), 1) if self.sim_step_ms else None


def start_nodes(decoder: Decoder, node_values: dict[str, Any], make_bridge: Callable[..., EpisodeBridge],
                bridge_values: dict[str, Any], context: Context | None = None) -> tuple[SpecVLANode, EpisodeBridge]:
    """specvla_node (with `decoder`) and the bridge `make_bridge(context=, parameter_overrides=)` makes."""
    node = SpecVLANode(decoder=decoder, context=context, parameter_overrides=_overrides(node_values))
    try:
        bridge = make_bridge(context=context, parameter_overrides=_overrides(bridge_values))
    except BaseException:
        node.destroy_node()
        raise
    return node, bridge


def run_with_bridge(
    decoder: Decoder,
    node_values: dict[str, Any],
    make_bridge: Callable[..., EpisodeBridge],
    bridge_values: dict[str, Any],
    timeout_s: float,
    on_stats: Callable[[DecodeStats], None] | None = None,
    on_episode: Callable[[EpisodeRecord], None] | None = None,
) -> BridgeRun:
    """Spin node and bridge in a context of their own until the bridge has run its plan or timeout_s.

    `on_stats` sees every DecodeStats message, `on_episode` every finished episode, as they happen.
    """
    context = Context()
    rclpy.init(context=context)
    nodes: tuple[SpecVLANode, EpisodeBridge] | tuple[()] = ()
    try:
        nodes = node, bridge = start_nodes(decoder, node_values, make_bridge, bridge_values, context)
        if on_stats:
            bridge.create_subscription(DecodeStats, bridge.get_parameter("topics.decode_stats").value, on_stats,
                                       STATS_QOS)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        executor.add_node(bridge)
        started = time.monotonic()
        reported = 0
        while not bridge.finished and time.monotonic() - started < timeout_s:
            executor.spin_once(timeout_sec=0.05)
            reported = _report_new(bridge.records, reported, on_episode)
        _report_new(bridge.records, reported, on_episode)
        wall_s = time.monotonic() - started
        executor.shutdown()
        return BridgeRun(bridge.records, wall_s, bridge.frames_published, bridge.commands_applied, bridge.timeouts,
                         bridge.sim_step_ms)
    finally:
        for ros_node in nodes:
            ros_node.destroy_node()
        rclpy.try_shutdown(context=context)


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
) -> BridgeRun:
    """Tabletop episodes through ROS: the bridge publishes camera + task, the node decodes and commands."""
    bridge_values = {"tasks": list(tasks), "episodes_per_task": episodes_per_task, "seed": seed,
                     **(bridge_parameters or {})}
    return run_with_bridge(decoder, {**SIM_NODE_PARAMETERS, **(node_parameters or {})}, SimBridgeNode,
                           bridge_values, timeout_s, on_stats=on_stats, on_episode=on_episode)


def _report_new(records: list[EpisodeRecord], reported: int,
                on_episode: Callable[[EpisodeRecord], None] | None) -> int:
    """Hand records[reported:] to `on_episode`; returns how many have been reported."""
    if on_episode is not None:
        for record in records[reported:]:
            on_episode(record)
    return len(records)


def _overrides(values: dict[str, Any]) -> list[Parameter]:
    return [Parameter(name, value=value) for name, value in values.items()]
