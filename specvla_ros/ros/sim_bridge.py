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

The lockstep loop is the one LIBERO's bridge runs too (episode_bridge.py).
"""
from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np
import rclpy
from geometry_msgs.msg import TwistStamped
from rclpy.executors import ExternalShutdownException

from specvla_ros.msg import EndEffectorDelta
from specvla_ros.ros.dds_profile import use_large_image_profile
from specvla_ros.ros.episode_bridge import EpisodeBridge
from specvla_ros.ros.messages import command_action, time_to_ns
from specvla_ros.sim.env import EnvConfig, TabletopEnv


class SimBridgeNode(EpisodeBridge):
    def __init__(self, **node_kwargs: Any) -> None:
        super().__init__("sim_bridge", step_timeout_s=10.0, frame_id="sim_camera", **node_kwargs)
        self.declare_parameter("tasks", ["pick", "push", "place"])
        self.declare_parameter("episodes_per_task", 1)
        self.declare_parameter("seed", 0)
        self.declare_parameter("lockstep", True)
        self.declare_parameter("control_rate_hz", 10.0)
        self.declare_parameter("command_timeout_s", 0.5)  # real time: a command older than this is ignored
        self.declare_parameter("topics.twist", "")        # set to drive the sim with TwistStamped instead
        self.declare_parameter("max_steps", 0)            # per episode; 0 = each task's own budget

        self._lockstep = self._param("lockstep")
        self._period_s = 1.0 / self._param("control_rate_hz")
        if self._param("topics.twist") and self._lockstep:
            raise ValueError("TwistStamped carries no image stamp: set lockstep false to drive with twists")
        plan = [(task, self._param("seed") + i) for task in self._param("tasks")
                for i in range(self._param("episodes_per_task"))]
        max_steps = self._param("max_steps")
        env = TabletopEnv(EnvConfig(control_hz=self._param("control_rate_hz"),
                                    max_steps=max_steps if max_steps > 0 else None))
        self._command: np.ndarray | None = None  # real time: newest usable 7-D action
        self._command_received_s = 0.0
        self._begin(env, plan, self._period_s)

    def _hold_action(self) -> np.ndarray:
        action = np.zeros(7)
        action[6] = float(self._env.state()["gripper"][0])
        return action

    def _subscribe_commands(self) -> None:
        if self._param("topics.twist"):
            self.create_subscription(TwistStamped, self._param("topics.twist"), self._on_twist, 1)
        else:
            super()._subscribe_commands()

    # ----- real time --------------------------------------------------------------------------
    def _on_command(self, msg: EndEffectorDelta) -> None:
        if self._lockstep:
            super()._on_command(msg)
            return
        self._command = command_action(msg)
        self._command_received_s = time.monotonic()
        if msg.source == EndEffectorDelta.SOURCE_MODEL:
            self._ledger.model_answered(time_to_ns(msg.image_stamp))

    def _on_twist(self, msg: TwistStamped) -> None:
        linear, angular = msg.twist.linear, msg.twist.angular
        self._command = self._hold_action()  # twists carry no gripper command: keep it
        velocity = [linear.x, linear.y, linear.z, angular.x, angular.y, angular.z]
        self._command[:6] = np.array(velocity) * self._period_s  # velocity over one period -> delta
        self._command_received_s = time.monotonic()

    def _on_tick(self) -> None:
        """Real time: step every period with the newest fresh command. Lockstep: the shared loop."""
        if self._lockstep or not self._running():
            super()._on_tick()
            return
        fresh = self._command is not None and \
            time.monotonic() - self._command_received_s <= self._param("command_timeout_s")
        self._step(self._command if fresh else self._hold_action(), policy_ms=None)

    def _start_next_episode(self) -> None:
        self._command = None
        super()._start_next_episode()

    def destroy_node(self) -> None:
        if self._env is not None:
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
