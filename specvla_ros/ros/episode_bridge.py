"""The episode loop both simulation bridges share: frame and task out, the model's command in, step.

For each planned episode a bridge resets its simulator, publishes the instruction
(std_msgs/String, latched) and the camera frame (sensor_msgs/Image, rgb8), waits for the node's
EndEffectorDelta decoded from *that* frame (matched by `image_stamp`), steps with it and publishes
the next frame: lockstep, so results do not depend on how fast this machine decodes. No command
for a frame within `step_timeout_s`: one step that holds still. Each episode is recorded
(EpisodeRecord), filled with its frames' decode statistics by the ledger (episode_stats.py), and
reported on `~/episode_result` (std_msgs/String holding JSON) and in the log.

A subclass names its simulator and plan (`_begin`), how to hold still (`_hold_action`) and how an
episode is labelled; sim_bridge.py adds a real-time clock and twist commands.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict
from typing import Any, Protocol

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import Image
from std_msgs.msg import String

from specvla_ros.msg import DecodeStats, EndEffectorDelta
from specvla_ros.ros.episode_stats import EpisodeStatsLedger
from specvla_ros.ros.image_conversion import rgb_to_image
from specvla_ros.ros.messages import command_action, time_to_ns
from specvla_ros.ros.qos import CAMERA_QOS, RESULT_QOS, STATS_QOS, TASK_QOS
from specvla_ros.ros.topics import CAMERA_TOPIC, COMMAND_TOPIC, DECODE_STATS_TOPIC, TASK_TOPIC
from specvla_ros.sim.env import Observation
from specvla_ros.sim.metrics import EpisodeRecord


class EpisodeEnv(Protocol):
    """What the loop needs of a simulator (sim.env.TabletopEnv, libero.env.LiberoEnv)."""

    step_count: int

    def reset(self, seed: int, task: Any) -> Observation: ...

    def step(self, action: np.ndarray) -> Any: ...  # .observation, .done, .success, .info

    def state(self) -> dict[str, Any]: ...  # what holding still needs (the gripper's opening or command)


class EpisodeBridge(Node):
    """Runs `plan` (task, seed) pairs in order; `records` fill as episodes are reported, `finished`
    once all are. Counters for the run's report: frames published, model commands applied, steps
    taken on a timeout, and the simulator's wall time per step."""

    def __init__(self, name: str, step_timeout_s: float, frame_id: str, **node_kwargs: Any) -> None:
        super().__init__(name, **node_kwargs)
        self.declare_parameter("step_timeout_s", step_timeout_s)  # no command for a frame: hold still
        self.declare_parameter("topics.image", CAMERA_TOPIC)
        self.declare_parameter("topics.task", TASK_TOPIC)
        self.declare_parameter("topics.command", COMMAND_TOPIC)
        self.declare_parameter("topics.decode_stats", DECODE_STATS_TOPIC)  # for the episode report
        self.declare_parameter("frame_id", frame_id)
        self.records: list[EpisodeRecord] = []
        self.finished = False  # every episode run and reported
        self.frames_published = 0
        self.commands_applied = 0
        self.timeouts = 0
        self.sim_step_ms: list[float] = []  # wall time of the simulator's step (physics, render, image)
        self._ledger = EpisodeStatsLedger()
        self._env: EpisodeEnv | None = None
        self._plan: list[tuple[Any, int]] = []
        self._frame_ns = -1        # stamp of the frame the loop waits on
        self._frame_sent_s = 0.0   # monotonic time it was published
        self._episode = -1
        self._record: EpisodeRecord | None = None

    def _begin(self, env: EpisodeEnv, plan: list[tuple[Any, int]], tick_period_s: float) -> None:
        """Topics, the first episode and the timer; a subclass calls it at the end of its __init__."""
        self._env, self._plan = env, list(plan)
        self._image_pub = self.create_publisher(Image, self._param("topics.image"), CAMERA_QOS)
        self._task_pub = self.create_publisher(String, self._param("topics.task"), TASK_QOS)
        self._result_pub = self.create_publisher(String, "~/episode_result", RESULT_QOS)
        self._subscribe_commands()
        self.create_subscription(DecodeStats, self._param("topics.decode_stats"), self._on_decode_stats, STATS_QOS)
        self._start_next_episode()
        self.create_timer(tick_period_s, self._on_tick)

    def _param(self, name: str) -> Any:
        return self.get_parameter(name).value

    # ----- what a bridge says -----------------------------------------------------------------
    def _hold_action(self) -> np.ndarray:
        """The 7-D action that holds the arm still and keeps the gripper as it is."""
        raise NotImplementedError

    def _task_label(self, task: Any) -> str:
        return str(task)

    def _describe(self, record: EpisodeRecord) -> str:
        """The episode in a log line."""
        return f"'{record.instruction}' (seed {record.seed})"

    def _subscribe_commands(self) -> None:
        self.create_subscription(EndEffectorDelta, self._param("topics.command"), self._on_command, 1)

    # ----- inputs -----------------------------------------------------------------------------
    def _on_command(self, msg: EndEffectorDelta) -> None:
        """Lockstep: only the model's answer to the current frame moves the robot."""
        if msg.source != EndEffectorDelta.SOURCE_MODEL:
            return
        frame_ns = time_to_ns(msg.image_stamp)
        self._ledger.model_answered(frame_ns)
        if self._running() and frame_ns == self._frame_ns:
            self.commands_applied += 1
            self._step(command_action(msg), policy_ms=1000.0 * (time.monotonic() - self._frame_sent_s))

    def _on_decode_stats(self, msg: DecodeStats) -> None:
        self._ledger.add_stats(time_to_ns(msg.image_stamp), msg.total_ms, msg.mean_acceptance_length)
        self._report_ready()

    def _on_tick(self) -> None:
        """Lockstep: step (holding still) only when the current frame's command is overdue."""
        if not self._running():
            self._report_ready()  # the last episodes may still wait for their statistics
            return
        waited_s = time.monotonic() - self._frame_sent_s
        if waited_s > self._param("step_timeout_s"):
            self.timeouts += 1
            self.get_logger().warning(f"no command for the current frame after {waited_s:.1f} s: zero motion")
            self._step(self._hold_action(), policy_ms=1000.0 * waited_s)

    # ----- the loop ---------------------------------------------------------------------------
    def _step(self, action: np.ndarray, policy_ms: float | None) -> None:
        """policy_ms: the wait for the model's answer (lockstep); None where nobody waits (real time)."""
        started = time.perf_counter()
        result = self._env.step(action)
        self.sim_step_ms.append(1000.0 * (time.perf_counter() - started))
        record = self._record
        if policy_ms is not None:
            record.policy_ms.append(policy_ms)
        record.refused_actions += int(result.info["action_refused"])
        record.clamped_actions += int(result.info["action_clamped"])
        if result.info["action_refused"]:
            self.get_logger().warning(f"sim refused a command (non-finite): {action}")
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
            verdict = "success" if record.success else "failure"
            self.get_logger().info(f"episode {len(self.records)}/{len(self._plan)} {self._describe(record)}: "
                                   f"{verdict} after {record.steps} steps")
            self._result_pub.publish(String(data=json.dumps(asdict(record))))
        if not self._running() and not self._ledger.waiting and not self.finished:
            self.finished = True
            wins = sum(r.success for r in self.records)
            self.get_logger().info(f"done: {wins}/{len(self.records)} episodes succeeded")

    def _start_next_episode(self) -> None:
        self._episode += 1
        if not self._running():
            return
        task, seed = self._plan[self._episode]
        observation = self._env.reset(seed, task)
        self._record = EpisodeRecord(task=self._task_label(task), seed=seed, instruction=observation.instruction,
                                     success=False, steps=0)
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
