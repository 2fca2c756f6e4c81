"""Camera messages from bags (rosbags dataclasses) <-> RGB uint8 arrays, without rclpy.

Reading follows specvla_ros.image_decoding, the rules the live node uses too (depth refused,
Bayer and YUV 4:2:2 converted); its errors become BagError here.
"""
from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from specvla_ros.bags.errors import BagError
from specvla_ros.bags.types import COMPRESSED_IMAGE, IMAGE
from specvla_ros.image_decoding import ImageConversionError, raw_to_rgb
from specvla_ros.image_decoding import compressed_to_rgb as compressed_fields_to_rgb

COMPRESSED_FORMATS = ("jpeg", "png")


def image_to_rgb(msg: Any) -> np.ndarray:
    """A sensor_msgs/Image (rosbags) as a contiguous (H, W, 3) uint8 RGB array."""
    try:
        return raw_to_rgb(msg.encoding, msg.width, msg.height, msg.step, msg.data)
    except ImageConversionError as error:
        raise BagError(str(error)) from None


def compressed_to_rgb(msg: Any) -> np.ndarray:
    """A sensor_msgs/CompressedImage (jpeg or png) as an (H, W, 3) uint8 RGB array."""
    try:
        return compressed_fields_to_rgb(msg.format, msg.data)
    except ImageConversionError as error:
        raise BagError(str(error)) from None


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
