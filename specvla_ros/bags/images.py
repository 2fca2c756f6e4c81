"""Camera messages from bags (rosbags dataclasses) <-> RGB uint8 arrays, without rclpy.

specvla_ros.ros.image_conversion does the same for rclpy messages; this copy exists because the
bag reader must work where no ROS is installed (training machines, the GPU box). Same encodings,
same rules.
"""
from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from specvla_ros.bags.errors import BagError
from specvla_ros.bags.types import COMPRESSED_IMAGE, IMAGE

# encoding -> (channels, OpenCV conversion to RGB or None)
RAW_ENCODINGS: dict[str, tuple[int, int | None]] = {
    "rgb8": (3, None),
    "bgr8": (3, cv2.COLOR_BGR2RGB),
    "rgba8": (4, cv2.COLOR_RGBA2RGB),
    "bgra8": (4, cv2.COLOR_BGRA2RGB),
    "mono8": (1, cv2.COLOR_GRAY2RGB),
}
COMPRESSED_FORMATS = ("jpeg", "png")


def image_to_rgb(msg: Any) -> np.ndarray:
    """A sensor_msgs/Image (rosbags) as a contiguous (H, W, 3) uint8 RGB array."""
    data = np.asarray(msg.data, dtype=np.uint8).reshape(-1)
    if msg.height == 0 or msg.width == 0 or data.size == 0:
        raise BagError(f"empty image ({msg.width}x{msg.height}, {data.size} bytes)")
    encoding = msg.encoding.lower()
    if encoding not in RAW_ENCODINGS:
        raise BagError(f"unsupported image encoding '{msg.encoding}'; supported: {', '.join(RAW_ENCODINGS)} "
                       "(or record the camera as sensor_msgs/CompressedImage jpeg/png)")
    channels, conversion = RAW_ENCODINGS[encoding]
    row_bytes = msg.width * channels
    if msg.step < row_bytes or data.size != msg.step * msg.height:
        raise BagError(f"{msg.encoding} image {msg.width}x{msg.height} needs step >= {row_bytes} and step*height "
                       f"bytes, got step {msg.step} and {data.size} bytes")
    pixels = data.reshape(msg.height, msg.step)[:, :row_bytes].reshape(msg.height, msg.width, channels)
    return pixels.copy() if conversion is None else cv2.cvtColor(pixels, conversion)  # own, writable memory


def compressed_to_rgb(msg: Any) -> np.ndarray:
    """A sensor_msgs/CompressedImage (jpeg or png) as an (H, W, 3) uint8 RGB array."""
    data = np.asarray(msg.data, dtype=np.uint8).reshape(-1)
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if bgr is None:
        raise BagError(f"cannot decode compressed image (format '{msg.format}', {data.size} bytes); "
                       f"supported: {', '.join(COMPRESSED_FORMATS)}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def to_rgb(msg: Any, msgtype: str) -> np.ndarray:
    return compressed_to_rgb(msg) if msgtype == COMPRESSED_IMAGE else image_to_rgb(msg)


def encode_rgb(rgb: np.ndarray, msgtype: str = IMAGE, encoding: str = "rgb8") -> tuple[bytes, str, int]:
    """RGB -> (pixel bytes, encoding or format, step) for an Image (rgb8/bgr8) or CompressedImage (jpeg/png)."""
    if not (isinstance(rgb, np.ndarray) and rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.dtype == np.uint8):
        raise BagError(f"expected an (H, W, 3) uint8 RGB array, got {getattr(rgb, 'shape', type(rgb))}")
    if msgtype == COMPRESSED_IMAGE:
        fmt = encoding if encoding in COMPRESSED_FORMATS else "png"
        ok, data = cv2.imencode(".jpg" if fmt == "jpeg" else ".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        if not ok:
            raise BagError(f"OpenCV could not encode a {rgb.shape} image as {fmt}")
        return data.tobytes(), fmt, 0
    if encoding == "bgr8":
        rgb = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    elif encoding != "rgb8":
        raise BagError(f"writing Image supports rgb8 and bgr8, not '{encoding}'")
    return np.ascontiguousarray(rgb).tobytes(), encoding, rgb.shape[1] * 3
