"""ROS 2 layer: nodes and glue. Decoding logic lives in specvla_ros.core."""
