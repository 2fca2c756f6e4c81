"""specvla_ros: Spec-VLA speculative decoding for VLA policies, with a ROS 2 node."""
import os as _os
import sys as _sys

__version__ = "0.1.0"

# Without a ROS distro (make setup), the message classes generated for this interpreter's ROS
# wheels (specvla_ros.msg and its type-support modules) live in the venv, not in the checkout:
# venvs of two distros share one checkout (tools/build_messages.sh). A colcon install puts them
# beside these modules instead, and this folder does not exist there.
_MESSAGES = _os.path.join(_sys.prefix, "lib", "specvla_ros_messages")
if _os.path.isdir(_MESSAGES):
    __path__.append(_MESSAGES)
