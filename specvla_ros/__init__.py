"""specvla_ros: Spec-VLA speculative decoding for VLA policies, with a ROS 2 node."""

__version__ = "0.1.0"
