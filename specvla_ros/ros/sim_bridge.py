"""sim_bridge: the MuJoCo tabletop on ROS topics, standing in for Gazebo or a real arm.

Publishes the camera (sensor_msgs/Image, rgb8) and the task (std_msgs/String), consumes
EndEffectorDelta (or TwistStamped) commands, steps the simulation, and reports each episode on
`~/episode_result` (std_msgs/String holding JSON) and in the log.

Two clocks:
- lockstep (default): after publishing a frame the bridge waits for the first model command
  decoded from *that* frame (matched by image_stamp), then steps. Results do not depend on how
  fast this CPU is, which makes the ROS loop comparable with the in-process harness.
- real time (`lockstep: false`): one step per control period with the newest fresh command, zero
  motion otherwise, as a robot would experience a slow model.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict

import numpy as np
import rclpy
from geometry_msgs.msg import TwistStamped
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image
from std_msgs.msg import String

from specvla_ros.msg import DecodeStats, EndEffectorDelta
from specvla_ros.ros.dds_profile import use_large_image_profile
from specvla_ros.ros.episode_stats import EpisodeStatsLedger
from specvla_ros.ros.image_conversion import rgb_to_image
from specvla_ros.ros.messages import command_action, time_to_ns
from specvla_ros.ros.qos import TASK_QOS
from specvla_ros.sim.env import EnvConfig, Observation, TabletopEnv
from specvla_ros.sim.metrics import EpisodeRecord

RESULT_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)


class SimBridgeNode(Node):
    def __init__(self, **node_kwargs) -> None:
        super().__init__("sim_bridge", **node_kwargs)
        self.declare_parameter("tasks", ["pick", "push", "place"])
        self.declare_parameter("episodes_per_task", 1)
        self.declare_parameter("seed", 0)
        self.declare_parameter("lockstep", True)
        self.declare_parameter("control_rate_hz", 10.0)
        self.declare_parameter("step_timeout_s", 10.0)   # lockstep: step with zero motion after this wait
        self.declare_parameter("command_timeout_s", 0.5)  # real time: a command older than this is ignored
        self.declare_parameter("topics.image", "/camera/image_raw")
        self.declare_parameter("topics.task", "/vla/instruction")
        self.declare_parameter("topics.command", "/specvla_node/command")
        self.declare_parameter("topics.twist", "")        # set to drive the sim with TwistStamped instead
        self.declare_parameter("topics.decode_stats", "/specvla_node/decode_stats")  # for the episode report
        self.declare_parameter("frame_id", "sim_camera")
        self.declare_parameter("max_steps", 0)            # per episode; 0 = each task's own budget

        self._lockstep = self._param("lockstep")
        self._period_s = 1.0 / self._param("control_rate_hz")
        self._plan = [(task, self._param("seed") + i) for task in self._param("tasks")
                      for i in range(self._param("episodes_per_task"))]
        self.records: list[EpisodeRecord] = []
        self.finished = False  # every episode run and reported
        self._ledger = EpisodeStatsLedger()

        max_steps = self._param("max_steps")
        self._env = TabletopEnv(EnvConfig(control_hz=self._param("control_rate_hz"),
                                          max_steps=max_steps if max_steps > 0 else None))
        self._image_pub = self.create_publisher(Image, self._param("topics.image"), qos_profile_sensor_data)
        self._task_pub = self.create_publisher(String, self._param("topics.task"), TASK_QOS)
        self._result_pub = self.create_publisher(String, "~/episode_result", RESULT_QOS)
        if self._param("topics.twist"):
            if self._lockstep:
                raise ValueError("TwistStamped carries no image stamp: set lockstep false to drive with twists")
            self.create_subscription(TwistStamped, self._param("topics.twist"), self._on_twist, 1)
        else:
            self.create_subscription(EndEffectorDelta, self._param("topics.command"), self._on_command, 1)
        self.create_subscription(DecodeStats, self._param("topics.decode_stats"), self._on_decode_stats, 10)

        self._command: np.ndarray | None = None  # newest usable 7-D action
        self._command_frame_ns = -1              # image_stamp it was decoded from
        self._command_received_s = 0.0
        self._frame_ns = 0
        self._frame_sent_s = 0.0
        self._episode = -1
        self._record: EpisodeRecord | None = None
        self._start_next_episode()
        self.create_timer(self._period_s, self._on_tick)

    def _param(self, name: str):
        return self.get_parameter(name).value

    # ----- commands in ------------------------------------------------------------------------
    def _on_command(self, msg: EndEffectorDelta) -> None:
        from_model = msg.source == EndEffectorDelta.SOURCE_MODEL
        if not from_model and self._lockstep:
            return  # lockstep waits for the model's answer to the current frame
        self._command = command_action(msg)
        self._command_frame_ns = time_to_ns(msg.image_stamp)
        self._command_received_s = time.monotonic()
        if from_model:
            self._ledger.model_answered(self._command_frame_ns)
        if self._lockstep and self._running() and self._command_frame_ns == self._frame_ns:
            self._step(self._command, policy_ms=1000.0 * (self._command_received_s - self._frame_sent_s))

    def _on_twist(self, msg: TwistStamped) -> None:
        linear, angular = msg.twist.linear, msg.twist.angular
        self._command = self._zero_action()  # twists carry no gripper command: keep it
        velocity = [linear.x, linear.y, linear.z, angular.x, angular.y, angular.z]
        self._command[:6] = np.array(velocity) * self._period_s  # velocity over one period -> delta
        self._command_received_s = time.monotonic()

    def _on_decode_stats(self, msg: DecodeStats) -> None:
        self._ledger.add_stats(time_to_ns(msg.image_stamp), msg.total_ms, msg.mean_acceptance_length)
        self._report_ready()

    # ----- the loop ---------------------------------------------------------------------------
    def _on_tick(self) -> None:
        """Real time: step every period. Lockstep: only step (with zero motion) on a timeout."""
        if not self._running():
            self._report_ready()  # the last episodes may still wait for their statistics
            return
        now = time.monotonic()
        if self._lockstep:
            if now - self._frame_sent_s > self._param("step_timeout_s"):
                self.get_logger().warning("no command for the current frame in time: stepping with zero motion")
                self._step(self._zero_action(), policy_ms=1000.0 * (now - self._frame_sent_s))
            return
        fresh = self._command is not None and now - self._command_received_s <= self._param("command_timeout_s")
        self._step(self._command if fresh else self._zero_action(), policy_ms=None)

    def _zero_action(self) -> np.ndarray:
        action = np.zeros(7)
        action[6] = float(self._env.state()["gripper"][0])
        return action

    def _step(self, action: np.ndarray, policy_ms: float | None) -> None:
        """policy_ms: wait for the model's answer (lockstep); None in real time, where nobody waits."""
        result = self._env.step(action)
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
            self.get_logger().info(f"episode {len(self.records)}/{len(self._plan)} '{record.instruction}' "
                                   f"(seed {record.seed}): {verdict} after {record.steps} steps")
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
        self._record = EpisodeRecord(task=task, seed=seed, instruction=observation.instruction,
                                     success=False, steps=0)
        self._ledger.start(self._record)
        self._command = None
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

    def destroy_node(self) -> None:
        self._env.close()
        super().destroy_node()



def main(args: list[str] | None = None) -> int:
    """Entry point of `specvla_sim_bridge` / `ros2 run specvla_ros specvla_sim_bridge`."""
    use_large_image_profile()  # this process writes the camera frames: the profile matters here
    rclpy.init(args=args)
    bridge: SimBridgeNode | None = None
    try:
        bridge = SimBridgeNode()
        while rclpy.ok() and not bridge.finished:
            rclpy.spin_once(bridge, timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if bridge is not None:
            bridge.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
