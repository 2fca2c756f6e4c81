"""The camera QoS choices of the node (`topics.image_qos`) and of bag-replay (`--image-qos`).

sensor_data (best effort, keep last 5) is the ROS convention for cameras and connects to every
camera; a reliable camera then delivers best effort too. reliable (keep last 5) connects only to
reliable cameras, and is what carries full-size frames where the Fast DDS profile cannot be set
on the camera's side: with Fast DDS defaults, 640x480 rgb8 at 30 Hz arrived 60/60 reliable and 1/60
best effort (bench/image_transport.py).
"""
from __future__ import annotations

from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

IMAGE_QOS_CHOICES = ("sensor_data", "reliable")
RELIABLE_IMAGE_QOS = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)


def image_qos(name: str) -> QoSProfile:
    """The QoS profile behind a `topics.image_qos` / `--image-qos` value."""
    if name == "sensor_data":
        return qos_profile_sensor_data
    if name == "reliable":
        return RELIABLE_IMAGE_QOS
    raise ValueError(f"image QoS must be one of {', '.join(IMAGE_QOS_CHOICES)}, got '{name}'")


def describe_image_qos(name: str) -> str:
    """'sensor_data (best effort, keep last 5)' and the like, for logs and diagnostics."""
    profile = image_qos(name)
    reliability = "reliable" if profile.reliability == ReliabilityPolicy.RELIABLE else "best effort"
    return f"{name} ({reliability}, keep last {profile.depth})"
