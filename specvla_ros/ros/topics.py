"""specvla_node's default topic names (config/*.yaml): where the bridges, the bag tools and the CLI meet it.

Free of rclpy, so `specvla --help` can show them without loading ROS.
"""
from __future__ import annotations

CAMERA_TOPIC = "/camera/image_raw"
TASK_TOPIC = "/vla/instruction"
COMMAND_TOPIC = "/specvla_node/command"
DECODE_STATS_TOPIC = "/specvla_node/decode_stats"
# What `specvla bag-record` records by default: the node's inputs and outputs.
DEFAULT_RECORD_TOPICS = (CAMERA_TOPIC, TASK_TOPIC, COMMAND_TOPIC, DECODE_STATS_TOPIC)
