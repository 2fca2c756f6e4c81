"""LIBERO on ROS topics, in lockstep with specvla_node: the camera and task out, commands in.

The shared episode loop (episode_bridge.py) over LIBERO: for each planned episode the bridge
publishes the task's instruction and the upright agentview frame, waits for the node's
EndEffectorDelta decoded from *that* frame, steps LIBERO with it and publishes the next frame.
Lockstep only: LIBERO's physics waits for the model, so results do not depend on how fast this
machine decodes. Holding still keeps the gripper command LIBERO last received.

`run_libero_episodes` runs the node and the bridge in one process over real DDS topics (loopback,
closed_loop.run_with_bridge). The ROS side of the LIBERO backend: specvla_ros.libero stays free of
rclpy.
"""
from __future__ import annotations

from functools import partial
from typing import Any, Callable

import numpy as np

from specvla_ros.libero.env import LiberoEnv
from specvla_ros.ros.closed_loop import BridgeRun, run_with_bridge
from specvla_ros.ros.episode_bridge import EpisodeBridge
from specvla_ros.ros.worker import Decoder
from specvla_ros.sim.metrics import EpisodeRecord

# specvla_node's parameters for LIBERO. The clamp is LIBERO's action range: OSC_POSE deltas in
# [-1, 1] (robosuite scales them to 5 cm / 0.5 rad), gripper 0..1; the node's defaults (5 cm,
# 0.25 rad in metres and radians) would cut a LIBERO policy's actions.
LIBERO_NODE_PARAMETERS: dict = {
    "dry_run": False, "start_enabled": True, "control_rate_hz": 20.0,
    "action_timeout_s": 60.0,  # lockstep: the world waits for the model; the most the node allows
    "action_low": [-1.0] * 6 + [0.0], "action_high": [1.0] * 6 + [1.0],
    "frame_id": "libero_robot0_base",
}


def episode_label(suite: str, task: int) -> str:
    """How a task is named in reports: suite/index (the instruction is in each record)."""
    return f"{suite}/{task}"


class LiberoBridgeNode(EpisodeBridge):
    """Publishes LIBERO frames and the task, steps on the node's commands, records each episode."""

    def __init__(self, env: LiberoEnv, plan: list[tuple[int, int]], **node_kwargs: Any) -> None:
        """plan: (task index, episode) pairs, run in order; episode i loads LIBERO's initial state i."""
        super().__init__("libero_bridge", step_timeout_s=30.0, frame_id="libero_agentview", **node_kwargs)
        self._begin(env, plan, tick_period_s=0.1)

    def _hold_action(self) -> np.ndarray:
        return np.append(np.zeros(6), self._env.state()["gripper_command"])

    def _task_label(self, task: int) -> str:
        return episode_label(self._env.config.suite, task)

    def _describe(self, record: EpisodeRecord) -> str:
        return f"{record.task} '{record.instruction}' (init state {record.seed})"


def run_libero_episodes(
    decoder: Decoder,
    env: LiberoEnv,
    plan: list[tuple[int, int]],
    node_parameters: dict | None = None,
    bridge_parameters: dict | None = None,
    timeout_s: float = 24 * 3600.0,
    on_episode: Callable[[EpisodeRecord], None] | None = None,
) -> BridgeRun:
    """specvla_node (with `decoder`) and the LIBERO bridge in one process, over DDS, until `plan` is done."""
    return run_with_bridge(decoder, {**LIBERO_NODE_PARAMETERS, **(node_parameters or {})},
                           partial(LiberoBridgeNode, env, plan), bridge_parameters or {}, timeout_s,
                           on_episode=on_episode)
