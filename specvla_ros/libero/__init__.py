"""LIBERO (the Spec-VLA paper's benchmark) as an optional simulation backend.

Installed separately (`make setup-libero`, its own `.venv-libero`). Modules that import LIBERO do
so lazily; `conventions` (action and image conversions, step limits) needs only numpy and Pillow,
so it runs in the main venv too. Nothing here imports rclpy: the ROS side (the bridge and
`specvla libero-eval`) is specvla_ros.ros.libero_bridge and specvla_ros.ros.libero_eval.
"""
