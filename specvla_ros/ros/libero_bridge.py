"""LIBERO on ROS topics, in lockstep with specvla_node: the camera and task out, commands in.

For each planned episode the bridge publishes the task's instruction (std_msgs/String, latched)
and the upright agentview frame (sensor_msgs/Image, rgb8), waits for the node's
EndEffectorDelta decoded from *that* frame (matched by `image_stamp`), steps LIBERO with it and
publishes the next frame. Lockstep, as the tabletop bridge's default: LIBERO's physics waits for
the model, so results do not depend on how fast this machine decodes.

`run_libero_episodes` runs the node and the bridge in one process over real DDS topics (loopback).
The ROS side of the LIBERO backend (specvla_ros.libero itself stays free of rclpy).
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image
from std_msgs.msg import String

from specvla_ros.libero.env import LiberoEnv
from specvla_ros.msg import DecodeStats, EndEffectorDelta
from specvla_ros.ros.episode_stats import EpisodeStatsLedger
from specvla_ros.ros.image_conversion import rgb_to_image
from specvla_ros.ros.messages import command_action, time_to_ns
from specvla_ros.ros.node import Decoder, SpecVLANode
from specvla_ros.ros.qos import STATS_QOS, TASK_QOS
from specvla_ros.ros.sim_bridge import RESULT_QOS
from specvla_ros.sim.env import Observation
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


class LiberoBridgeNode(Node):
    """Publishes LIBERO frames and the task, steps on the node's commands, records each episode."""

    def __init__(self, env: LiberoEnv, plan: list[tuple[int, int]], **node_kwargs) -> None:
        """plan: (task index, episode) pairs, run in order."""
        super().__init__("libero_bridge", **node_kwargs)
        self.declare_parameter("step_timeout_s", 30.0)  # no command for a frame: step with zero motion
        self.declare_parameter("topics.image", "/camera/image_raw")
        self.declare_parameter("topics.task", "/vla/instruction")
        self.declare_parameter("topics.command", "/specvla_node/command")
        self.declare_parameter("topics.decode_stats", "/specvla_node/decode_stats")
        self.declare_parameter("frame_id", "libero_agentview")
        self._env, self._plan = env, list(plan)
        self.records: list[EpisodeRecord] = []
        self.frames_published = 0
        self.commands_applied = 0
        self.timeouts = 0
        self.sim_step_ms: list[float] = []  # wall time of LIBERO's step (physics + render + image pipeline)
        self.finished = False  # every episode run and reported
        self._ledger = EpisodeStatsLedger()
        self._image_pub = self.create_publisher(Image, self._param("topics.image"), qos_profile_sensor_data)
        self._task_pub = self.create_publisher(String, self._param("topics.task"), TASK_QOS)
        self._result_pub = self.create_publisher(String, "~/episode_result", RESULT_QOS)
        self.create_subscription(EndEffectorDelta, self._param("topics.command"), self._on_command, 1)
        self.create_subscription(DecodeStats, self._param("topics.decode_stats"), self._on_decode_stats, STATS_QOS)
        self._frame_ns = -1
        self._frame_sent_s = 0.0
        self._episode = -1
        self._record: EpisodeRecord | None = None
        self._start_next_episode()
        self.create_timer(0.1, self._on_tick)

    def _param(self, name: str):
        return self.get_parameter(name).value

    # ----- inputs ---------------------------------------------------------------------------
    def _on_command(self, msg: EndEffectorDelta) -> None:
        current = time_to_ns(msg.image_stamp) == self._frame_ns
        if not self._running() or msg.source != EndEffectorDelta.SOURCE_MODEL or not current:
            return  # lockstep: only the model's answer to the current frame moves the robot
        self._ledger.model_answered(self._frame_ns)
        action = command_action(msg)
        self.commands_applied += 1
        self._step(action, policy_ms=1000.0 * (time.monotonic() - self._frame_sent_s))

    def _on_decode_stats(self, msg: DecodeStats) -> None:
        self._ledger.add_stats(time_to_ns(msg.image_stamp), msg.total_ms, msg.mean_acceptance_length)
        self._report_ready()

    def _on_tick(self) -> None:
        if not self._running():
            self._report_ready()  # the last episodes may still wait for their statistics
            return
        waited_s = time.monotonic() - self._frame_sent_s
        if waited_s > self._param("step_timeout_s"):
            self.timeouts += 1
            self.get_logger().warning(f"no command for the current frame after {waited_s:.1f} s: zero motion")
            hold = np.append(np.zeros(6), self._env.state()["gripper_command"])
            self._step(hold, policy_ms=1000.0 * waited_s)

    # ----- the loop -------------------------------------------------------------------------
    def _step(self, action: np.ndarray, policy_ms: float) -> None:
        started = time.perf_counter()
        result = self._env.step(action)
        self.sim_step_ms.append(1000.0 * (time.perf_counter() - started))
        record = self._record
        record.policy_ms.append(policy_ms)
        record.refused_actions += int(result.info["action_refused"])
        record.clamped_actions += int(result.info["action_clamped"])
        if not result.done:
            self._publish_frame(result.observation)
            return
        record.success, record.steps = result.success, self._env.step_count
        self._ledger.end(time.monotonic())
        self._start_next_episode()
        self._report_ready()

    def _running(self) -> bool:
        """An episode is being stepped (false once the plan is through)."""
        return self._episode < len(self._plan)

    def _report_ready(self) -> None:
        """Report the ended episodes whose decode statistics are in; finish after the last."""
        for record in self._ledger.ready(time.monotonic()):
            self.records.append(record)
            self.get_logger().info(f"episode {len(self.records)}/{len(self._plan)} {record.task} "
                                   f"'{record.instruction}' (init state {record.seed}): "
                                   f"{'success' if record.success else 'failure'} after {record.steps} steps")
            self._result_pub.publish(String(data=json.dumps(asdict(record))))
        if not self._running() and not self._ledger.waiting:
            self.finished = True

    def _start_next_episode(self) -> None:
        self._episode += 1
        if not self._running():
            return
        task, episode = self._plan[self._episode]
        observation = self._env.reset(episode, task)
        self._record = EpisodeRecord(task=episode_label(self._env.config.suite, task), seed=episode,
                                     instruction=observation.instruction, success=False, steps=0)
        self._ledger.start(self._record)
        self._task_pub.publish(String(data=observation.instruction))
        self._publish_frame(observation)

    def _publish_frame(self, observation: Observation) -> None:
        frame = rgb_to_image(observation.image)
        frame.header.stamp = self.get_clock().now().to_msg()
        frame.header.frame_id = self._param("frame_id")
        self._frame_ns = time_to_ns(frame.header.stamp)
        self._frame_sent_s = time.monotonic()
        self._ledger.frame_published(self._frame_ns)
        self._image_pub.publish(frame)
        self.frames_published += 1


@dataclass
class LiberoRun:
    records: list[EpisodeRecord]
    frames_published: int
    commands_applied: int
    timeouts: int
    sim_step_ms: list[float]
    wall_s: float

    @property
    def sim_step_ms_mean(self) -> float | None:
        return round(sum(self.sim_step_ms) / len(self.sim_step_ms), 1) if self.sim_step_ms else None


def run_libero_episodes(
    decoder: Decoder,
    env: LiberoEnv,
    plan: list[tuple[int, int]],
    node_parameters: dict | None = None,
    bridge_parameters: dict | None = None,
    timeout_s: float = 24 * 3600.0,
    on_episode: Callable[[EpisodeRecord], None] | None = None,
) -> LiberoRun:
    """specvla_node (with `decoder`) and the LIBERO bridge in one process, over DDS, until `plan` is done."""
    context = Context()
    rclpy.init(context=context)
    node = bridge = None
    try:
        values = {**LIBERO_NODE_PARAMETERS, **(node_parameters or {})}
        node = SpecVLANode(decoder=decoder, context=context,
                           parameter_overrides=[Parameter(k, value=v) for k, v in values.items()])
        bridge = LiberoBridgeNode(env, plan, context=context, parameter_overrides=[
            Parameter(k, value=v) for k, v in (bridge_parameters or {}).items()])
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        executor.add_node(bridge)
        started, reported = time.monotonic(), 0
        while not bridge.finished and time.monotonic() - started < timeout_s:
            executor.spin_once(timeout_sec=0.05)
            for record in bridge.records[reported:]:
                if on_episode is not None:
                    on_episode(record)
            reported = len(bridge.records)
        executor.shutdown()
        return LiberoRun(bridge.records, bridge.frames_published, bridge.commands_applied, bridge.timeouts,
                         bridge.sim_step_ms, time.monotonic() - started)
    finally:
        for ros_node in (node, bridge):
            if ros_node is not None:
                ros_node.destroy_node()
        rclpy.try_shutdown(context=context)
