"""sensor_msgs Image / CompressedImage (rclpy) -> RGB uint8 array, and back.

The rules are specvla_ros.images.conversion, shared with the bag tools. What is ROS's own here:
cv_bridge is used, when it imports (a full ROS install), only for encodings those rules do not
know at all; the PyPI port is broken, so we never depend on it. Depth and other non-colour images
are refused before cv_bridge is asked, so they never reach the model as colour.
"""
from __future__ import annotations

import numpy as np
from sensor_msgs.msg import CompressedImage, Image

from specvla_ros.images import conversion
from specvla_ros.images.conversion import ImageConversionError

try:  # pragma: no cover - only on machines with a ROS install
    from cv_bridge import CvBridge  # type: ignore[import-not-found]
except Exception:  # ImportError, or a cv_bridge built against another NumPy ABI
    CvBridge = None

KNOWN_ENCODINGS = {**conversion.COLOUR_ENCODINGS, **conversion.NOT_COLOUR_ENCODINGS,
                   **conversion.REFUSED_COLOUR_ENCODINGS}


def to_rgb(msg: Image | CompressedImage) -> np.ndarray:
    """Either camera message type as a contiguous (H, W, 3) uint8 RGB array."""
    if isinstance(msg, Image) and msg.encoding.lower() not in KNOWN_ENCODINGS and CvBridge is not None \
            and len(msg.data):  # pragma: no cover
        return _via_cv_bridge(msg)
    return conversion.to_rgb(msg)


def rgb_to_image(rgb: np.ndarray, encoding: str = "rgb8") -> Image:
    """An RGB uint8 array as a raw Image, rgb8 or bgr8 (for the simulation bridges, tests and demos)."""
    data, encoding, step = conversion.encode_rgb(rgb, compressed=False, encoding=encoding)
    msg = Image()
    msg.height, msg.width = int(rgb.shape[0]), int(rgb.shape[1])
    msg.encoding = encoding
    msg.step = step
    msg.data = data
    return msg


def _via_cv_bridge(msg: Image) -> np.ndarray:  # pragma: no cover - needs a ROS install
    try:
        return CvBridge().imgmsg_to_cv2(msg, desired_encoding="rgb8")
    except Exception as error:  # cv_bridge raises its own CvBridgeError
        raise ImageConversionError(f"cv_bridge could not convert '{msg.encoding}': {error}") from error
