"""sensor_msgs Image / CompressedImage -> RGB uint8 array, with or without cv_bridge.

cv_bridge is used when it imports (a full ROS install); the PyPI port is broken, so we never
depend on it. Our own conversion covers the encodings cameras publish for policies. Anything
else is refused with a message that says which encodings work.
"""
from __future__ import annotations

import cv2
import numpy as np
from sensor_msgs.msg import CompressedImage, Image

from specvla_ros.core.errors import InputError

try:  # pragma: no cover - only on machines with a ROS install
    from cv_bridge import CvBridge  # type: ignore[import-not-found]
except Exception:  # ImportError, or a cv_bridge built against another NumPy ABI
    CvBridge = None

# encoding -> (channels, OpenCV conversion to RGB or None)
_RAW_ENCODINGS: dict[str, tuple[int, int | None]] = {
    "rgb8": (3, None),
    "bgr8": (3, cv2.COLOR_BGR2RGB),
    "rgba8": (4, cv2.COLOR_RGBA2RGB),
    "bgra8": (4, cv2.COLOR_BGRA2RGB),
    "mono8": (1, cv2.COLOR_GRAY2RGB),
}
SUPPORTED_ENCODINGS = tuple(_RAW_ENCODINGS)


class ImageConversionError(InputError):
    """A camera message that cannot become an RGB image (bad size, encoding or data)."""


def image_to_rgb(msg: Image) -> np.ndarray:
    """Convert a raw Image to a contiguous (H, W, 3) uint8 RGB array."""
    if msg.height == 0 or msg.width == 0 or len(msg.data) == 0:
        raise ImageConversionError(
            f"empty image ({msg.width}x{msg.height}, {len(msg.data)} bytes); check the camera driver")
    encoding = msg.encoding.lower()
    if encoding not in _RAW_ENCODINGS:
        if CvBridge is not None:  # pragma: no cover
            return _via_cv_bridge(msg)
        raise ImageConversionError(
            f"unsupported image encoding '{msg.encoding}'; supported: {', '.join(SUPPORTED_ENCODINGS)} "
            "(or republish as sensor_msgs/CompressedImage jpeg/png)")
    channels, conversion = _RAW_ENCODINGS[encoding]
    row_bytes = msg.width * channels
    if msg.step < row_bytes or len(msg.data) != msg.step * msg.height:
        raise ImageConversionError(
            f"{msg.encoding} image {msg.width}x{msg.height} needs step >= {row_bytes} and "
            f"step*height bytes, got step {msg.step} and {len(msg.data)} bytes")
    rows = np.frombuffer(msg.data, dtype=np.uint8).reshape(msg.height, msg.step)
    pixels = rows[:, :row_bytes].reshape(msg.height, msg.width, channels)
    if conversion is None:
        return np.ascontiguousarray(pixels)
    return cv2.cvtColor(pixels, conversion)


def compressed_to_rgb(msg: CompressedImage) -> np.ndarray:
    """Decode a JPEG/PNG CompressedImage to an (H, W, 3) uint8 RGB array."""
    if len(msg.data) == 0:
        raise ImageConversionError("empty compressed image; check the camera driver")
    data = np.frombuffer(bytes(msg.data), dtype=np.uint8)
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ImageConversionError(
            f"could not decode compressed image (format '{msg.format}', {len(msg.data)} bytes); "
            "jpeg and png are supported")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


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
