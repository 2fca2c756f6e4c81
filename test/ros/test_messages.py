"""Our message types survive a real rclpy publish -> subscribe round trip (Fast DDS, in-process)."""
from __future__ import annotations

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from specvla_ros.msg import DecodeStats, EndEffectorDelta

from .conftest import spin_until


def _end_effector_delta() -> EndEffectorDelta:
    msg = EndEffectorDelta()
    msg.header.stamp = Time(sec=12, nanosec=345)
    msg.header.frame_id = "base_link"
    msg.source = EndEffectorDelta.SOURCE_HOLD
    msg.image_stamp = Time(sec=11, nanosec=999)
    msg.translation.x, msg.translation.y, msg.translation.z = 0.01, -0.02, 0.003
    msg.rotation.x, msg.rotation.y, msg.rotation.z = 0.1, -0.2, 0.3
    msg.gripper = 0.75
    msg.normalized_action = np.array([-1.0, -0.5, 0.0, 0.25, 0.5, 0.75, 1.0], dtype=np.float32)
    msg.token_bins = np.array([0, 1, 127, 128, 200, 253, 254], dtype=np.int16)
    msg.clamped = True
    return msg


def _decode_stats() -> DecodeStats:
    msg = DecodeStats()
    msg.header.stamp = Time(sec=5, nanosec=6)
    msg.header.frame_id = "camera_optical"
    msg.image_stamp = Time(sec=4, nanosec=7)
    msg.mode = "speculative"
    msg.prefill_ms, msg.draft_ms, msg.verify_ms, msg.total_ms = 10.5, 2.25, 7.75, 21.0
    msg.target_forward_passes = 4
    msg.accepted_per_step = [3, 1, 0]
    msg.mean_acceptance_length = 2.0
    msg.relax_bins = np.array([3, 3, 3, 2, 2, 2, 0], dtype=np.uint8)
    msg.token_ids = np.array([31999, 31800, 31872, 31744, 31900, 31871, 31745], dtype=np.int32)
    msg.path_sources = [3, 2, 0]
    msg.temporal_candidates = 2
    return msg


@pytest.mark.parametrize("make_message", [_end_effector_delta, _decode_stats])
def test_round_trip_keeps_every_field(ros_context, make_message) -> None:
    sent = make_message()
    msg_type = type(sent)
    received: list = []
    node = Node("round_trip", context=ros_context)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    try:
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        node.create_subscription(msg_type, "round_trip", received.append, qos)
        publisher = node.create_publisher(msg_type, "round_trip", qos)
        assert spin_until(executor, lambda: publisher.get_subscription_count() > 0, 5.0)
        publisher.publish(sent)
        assert spin_until(executor, lambda: len(received) == 1, 5.0), "message never arrived"
    finally:
        executor.shutdown()
        node.destroy_node()

    got = received[0]
    assert list(msg_type.get_fields_and_field_types()) == list(sent.get_fields_and_field_types())
    for field in msg_type.get_fields_and_field_types():
        want, have = getattr(sent, field), getattr(got, field)
        if isinstance(want, np.ndarray):
            np.testing.assert_array_equal(have, want, err_msg=field)
            assert have.dtype == want.dtype, field
        elif isinstance(want, float):
            assert have == pytest.approx(want, rel=1e-6), field  # float32 on the wire
        else:
            assert have == want, field


def test_constants_are_distinct() -> None:
    sources = {EndEffectorDelta.SOURCE_MODEL, EndEffectorDelta.SOURCE_ZERO, EndEffectorDelta.SOURCE_HOLD}
    assert len(sources) == 3


def test_command_action_inverts_command_msg() -> None:
    from specvla_ros.ros.messages import command_action, command_msg
    from specvla_ros.ros.safety import Command, Source

    action = np.array([0.01, -0.02, 0.005, 0.1, -0.2, 0.3, 1.0])
    msg = command_msg(Command(action, Source.MODEL, clamped=False, basis=None), Time(sec=1), "tool0")
    np.testing.assert_allclose(command_action(msg), action)
