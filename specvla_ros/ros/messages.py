"""Core results and safety commands -> ROS messages. No decisions here, only field mapping."""
from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import TwistStamped

from specvla_ros.core.decoder import ActionResult
from specvla_ros.msg import DecodeStats, EndEffectorDelta
from specvla_ros.ros.safety import Command, SafetyLimits, to_velocity


def time_from_ns(stamp_ns: int) -> Time:
    return Time(sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000)


def time_to_ns(stamp: Time) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


def decode_stats_msg(result: ActionResult, stamp: Time, image_stamp: Time, frame_id: str) -> DecodeStats:
    stats = result.stats
    msg = DecodeStats()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.image_stamp = image_stamp
    msg.mode = stats.mode
    msg.prefill_ms = float(stats.prefill_ms)
    msg.draft_ms = float(stats.draft_ms)
    msg.verify_ms = float(stats.verify_ms)
    msg.total_ms = float(stats.total_ms)
    msg.target_forward_passes = int(stats.target_forward_passes)
    msg.accepted_per_step = [int(n) for n in stats.accepted_per_step]
    msg.mean_acceptance_length = float(stats.mean_acceptance_length)
    msg.relax_bins = np.asarray(stats.relax_bins, dtype=np.uint8)
    msg.token_ids = np.asarray(result.token_ids, dtype=np.int32)
    msg.path_sources = [int(flags) for flags in stats.path_sources]
    msg.temporal_candidates = min(255, int(stats.temporal_candidates))
    msg.non_action_tokens = min(255, int(stats.non_action_tokens))
    return msg


def command_msg(command: Command, stamp: Time, frame_id: str) -> EndEffectorDelta:
    msg = EndEffectorDelta()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.source = int(command.source)
    action = command.action
    msg.translation.x, msg.translation.y, msg.translation.z = (float(v) for v in action[0:3])
    msg.rotation.x, msg.rotation.y, msg.rotation.z = (float(v) for v in action[3:6])
    msg.gripper = float(action[6])
    msg.clamped = command.clamped
    if command.basis is None:
        msg.token_bins = np.full(7, -1, dtype=np.int16)
    else:
        msg.image_stamp = time_from_ns(command.basis.image_stamp_ns)
        msg.normalized_action = np.asarray(command.basis.normalized, dtype=np.float32)
        msg.token_bins = np.asarray(command.basis.bins, dtype=np.int16)
    return msg


def command_action(msg: EndEffectorDelta) -> np.ndarray:
    """The 7-D action (dx, dy, dz, droll, dpitch, dyaw, gripper) an EndEffectorDelta carries: the
    inverse of `command_msg`'s field mapping, for whoever executes commands (the simulation bridges)."""
    return np.array([msg.translation.x, msg.translation.y, msg.translation.z,
                     msg.rotation.x, msg.rotation.y, msg.rotation.z, msg.gripper])


def twist_msg(command: Command, stamp: Time, frame_id: str, period_s: float, limits: SafetyLimits) -> TwistStamped:
    linear, angular = to_velocity(command.action, period_s, limits)
    msg = TwistStamped()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.twist.linear.x, msg.twist.linear.y, msg.twist.linear.z = (float(v) for v in linear)
    msg.twist.angular.x, msg.twist.angular.y, msg.twist.angular.z = (float(v) for v in angular)
    return msg
