"""rosbag2 bags without ROS: read observations (training, A/B), write bags (recording, replay output).

Pure Python over `rosbags`: never imports rclpy, so training machines without ROS read bags too.
"""
from specvla_ros.bags.errors import BagError
from specvla_ros.bags.reader import (
    BagMessage,
    BagObservations,
    Observation,
    bag_topics,
    find_camera,
    open_bag,
    read_messages,
    read_observations,
)
from specvla_ros.bags.types import COMPRESSED_IMAGE, DECODE_STATS, END_EFFECTOR_DELTA, IMAGE, STRING, default_typestore
from specvla_ros.bags.writer import (
    CAMERA_QOS,
    STORAGES,
    TASK_QOS,
    BagWriter,
    TopicQos,
    image_message,
    remove_bag,
    string_message,
    write_observation_bag,
)

__all__ = [
    "BagError", "BagMessage", "BagObservations", "Observation", "bag_topics", "find_camera", "open_bag",
    "read_messages", "read_observations", "COMPRESSED_IMAGE", "DECODE_STATS", "END_EFFECTOR_DELTA", "IMAGE", "STRING",
    "default_typestore", "CAMERA_QOS", "STORAGES", "TASK_QOS", "BagWriter", "TopicQos", "image_message", "remove_bag",
    "string_message", "write_observation_bag",
]
