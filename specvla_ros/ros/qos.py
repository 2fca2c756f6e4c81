"""The QoS profiles of specvla_node's topics, shared by everything that talks to it (bridges,
bag tools, benchmarks, tests), so a publisher and the node's subscription always match.

Camera: sensor_data (best effort, keep last 5) is the ROS convention for cameras and connects to
every camera; a reliable camera then delivers best effort too. reliable (keep last 5) connects only
to reliable cameras, and is what carries full-size frames where the Fast DDS profile cannot be set
on the camera's side: with Fast DDS defaults, 640x480 rgb8 at 30 Hz arrived 60/60 reliable and 1/60
best effort (bench/image_transport.py). The node's `topics.image_qos` and bag-replay's
`--image-qos` choose between them.
"""
from __future__ import annotations

from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

CAMERA_QOS = qos_profile_sensor_data
# Task: latched, so a node that starts after the task was published still gets it.
TASK_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
COMMAND_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
STATS_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
# Bridges' episode reports (~/episode_result): every one kept for a late reader of the run.
RESULT_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
# Enable topic: volatile ignores a value latched before start-up (accept_latched_enable false).
ENABLE_LIVE_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)

IMAGE_QOS_CHOICES = ("sensor_data", "reliable")
RELIABLE_IMAGE_QOS = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)


def image_qos(name: str) -> QoSProfile:
    """The QoS profile behind a `topics.image_qos` / `--image-qos` value."""
    if name == "sensor_data":
        return CAMERA_QOS
    if name == "reliable":
        return RELIABLE_IMAGE_QOS
    raise ValueError(f"image QoS must be one of {', '.join(IMAGE_QOS_CHOICES)}, got '{name}'")


def describe_image_qos(name: str) -> str:
    """'sensor_data (best effort, keep last 5)' and the like, for logs and diagnostics."""
    profile = image_qos(name)
    reliability = "reliable" if profile.reliability == ReliabilityPolicy.RELIABLE else "best effort"
    return f"{name} ({reliability}, keep last {profile.depth})"
