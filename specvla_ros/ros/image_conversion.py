"""sensor_msgs Image / CompressedImage -> RGB uint8 array (rules: specvla_ros.image_decoding), and back.

cv_bridge is used, when it imports (a full ROS install), only for encodings those rules do not
know at all; the PyPI port is broken, so we never depend on it. Depth and other non-colour
images are refused before cv_bridge is asked, so they never reach the model as colour.
"""
from __future__ import annotations

import cv2
import numpy as np
from sensor_msgs.msg import CompressedImage, Image

from specvla_ros.image_decoding import (
    COLOUR_ENCODINGS,
    NOT_COLOUR_ENCODINGS,
    REFUSED_COLOUR_ENCODINGS,
    SUPPORTED_ENCODINGS,
    ImageConversionError,
    NotColourError,
    raw_to_rgb,
)
from specvla_ros.image_decoding import compressed_to_rgb as _compressed_fields_to_rgb

try:  # pragma: no cover - only on machines with a ROS install
    from cv_bridge import CvBridge  # type: ignore[import-not-found]
except Exception:  # ImportError, or a cv_bridge built against another NumPy ABI
    CvBridge = None

__all__ = ["ImageConversionError", "NotColourError", "SUPPORTED_ENCODINGS", "compressed_to_rgb", "image_to_rgb",
           "rgb_to_image", "to_rgb"]


def image_to_rgb(msg: Image) -> np.ndarray:
    """Convert a raw Image to a contiguous (H, W, 3) uint8 RGB array."""
    encoding = msg.encoding.lower()
    known = encoding in COLOUR_ENCODINGS or encoding in NOT_COLOUR_ENCODINGS or encoding in REFUSED_COLOUR_ENCODINGS
    if not known and CvBridge is not None and len(msg.data):  # pragma: no cover
        return _via_cv_bridge(msg)
    return raw_to_rgb(msg.encoding, msg.width, msg.height, msg.step, msg.data)


def compressed_to_rgb(msg: CompressedImage) -> np.ndarray:
    """Decode a JPEG/PNG CompressedImage to an (H, W, 3) uint8 RGB array; depth streams are refused."""
    return _compressed_fields_to_rgb(msg.format, bytes(msg.data))


def to_rgb(msg: Image | CompressedImage) -> np.ndarray:
    """Either camera message type to RGB uint8."""
    if isinstance(msg, CompressedImage):
        return compressed_to_rgb(msg)
    return image_to_rgb(msg)


def rgb_to_image(rgb: np.ndarray, encoding: str = "rgb8") -> Image:
    """An RGB uint8 array as a raw Image (for the simulation bridge, tests and demos)."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ImageConversionError(f"expected an (H, W, 3) uint8 RGB array, got {rgb.shape} {rgb.dtype}")
    if encoding == "bgr8":
        rgb = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    elif encoding != "rgb8":
        raise ImageConversionError(f"rgb_to_image writes rgb8 or bgr8, not '{encoding}'")
    msg = Image()
    msg.height, msg.width = int(rgb.shape[0]), int(rgb.shape[1])
    msg.encoding = encoding
    msg.step = msg.width * 3
    msg.data = np.ascontiguousarray(rgb).tobytes()
    return msg


def _via_cv_bridge(msg: Image) -> np.ndarray:  # pragma: no cover - needs a ROS install
    try:
        return CvBridge().imgmsg_to_cv2(msg, desired_encoding="rgb8")
    except Exception as error:  # cv_bridge raises its own CvBridgeError
        raise ImageConversionError(f"cv_bridge could not convert '{msg.encoding}': {error}") from error
