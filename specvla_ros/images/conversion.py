"""Camera messages <-> (H, W, 3) uint8 RGB: the one set of rules the node and the bag tools share.

No rclpy: the bag tools work where ROS is not installed. Messages are read by their fields, so a
sensor_msgs Image or CompressedImage from rclpy and the same message read from a bag by rosbags
go through the same code (a CompressedImage is the one with a `format`).

A VLA reads colour pictures; depth and other non-colour images are refused however they arrive
(raw 16UC1 / 32FC1 / mono16, a compressedDepth stream, a 16-bit PNG), because decoded as colour
they become a near-black picture the model would act on. Bayer and YUV 4:2:2 frames are colour
and are converted with OpenCV.
"""
from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from specvla_ros.core.errors import InputError

# encoding -> (bytes per pixel, OpenCV conversion to RGB or None for rgb8)
COLOUR_ENCODINGS: dict[str, tuple[int, int | None]] = {
    "rgb8": (3, None),
    "bgr8": (3, cv2.COLOR_BGR2RGB),
    "rgba8": (4, cv2.COLOR_RGBA2RGB),
    "bgra8": (4, cv2.COLOR_BGRA2RGB),
    "mono8": (1, cv2.COLOR_GRAY2RGB),
    # Bayer mosaics, named by their top-left 2x2 block in reading order (sensor_msgs image_encodings).
    "bayer_rggb8": (1, cv2.COLOR_BayerRGGB2RGB),
    "bayer_bggr8": (1, cv2.COLOR_BayerBGGR2RGB),
    "bayer_gbrg8": (1, cv2.COLOR_BayerGBRG2RGB),
    "bayer_grbg8": (1, cv2.COLOR_BayerGRBG2RGB),
    # YUV 4:2:2: ROS's "yuv422" is UYVY, "yuv422_yuy2" is YUYV (newer distros also say uyvy / yuyv).
    "yuv422": (2, cv2.COLOR_YUV2RGB_UYVY),
    "uyvy": (2, cv2.COLOR_YUV2RGB_UYVY),
    "yuv422_yuy2": (2, cv2.COLOR_YUV2RGB_YUY2),
    "yuyv": (2, cv2.COLOR_YUV2RGB_YUY2),
}
SUPPORTED_ENCODINGS = tuple(COLOUR_ENCODINGS)
# Single-channel measurements, not pictures: depth (mm or m), 16-bit intensity, disparity, masks.
NOT_COLOUR_ENCODINGS = {
    "16uc1": "16-bit single channel, usually depth in mm", "32fc1": "float, usually depth in m",
    "mono16": "16-bit grey (depth or IR)", "16sc1": "16-bit signed single channel",
    "32sc1": "32-bit single channel", "64fc1": "float64 single channel", "8uc1": "8-bit single channel "
    "(a mask or a depth map as often as a grey picture; publish it as mono8 if it is a picture)",
}
# Colour, but not in a form converted here.
REFUSED_COLOUR_ENCODINGS = {
    "rgb16": "16-bit colour", "bgr16": "16-bit colour", "rgba16": "16-bit colour", "bgra16": "16-bit colour",
    "bayer_rggb16": "16-bit Bayer", "bayer_bggr16": "16-bit Bayer", "bayer_gbrg16": "16-bit Bayer",
    "bayer_grbg16": "16-bit Bayer", "8uc3": "3 channels of unknown order (bgr8 or rgb8?)",
    "8uc4": "4 channels of unknown order",
}
COMPRESSED_FORMATS = ("jpeg", "png")
FIX_COLOUR = ("point the camera topic at the colour stream (rgb8, bgr8, ..., or jpeg/png of it); "
              "depth cannot drive a VLA")


class ImageConversionError(InputError):
    """A camera message that cannot become an RGB image (bad size, encoding or data)."""


class NotColourError(ImageConversionError):
    """Depth or another non-colour image: read as colour it would be a meaningless, near-black picture."""


def _byte_array(data: bytes | np.ndarray) -> np.ndarray:
    """Message bytes (rclpy: bytes or array.array; rosbags: a uint8 array) as a flat uint8 view."""
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except (TypeError, ValueError):  # a non-contiguous array
        return np.ascontiguousarray(data, dtype=np.uint8).reshape(-1)


def raw_to_rgb(encoding: str, width: int, height: int, step: int, data: bytes | np.ndarray) -> np.ndarray:
    """A sensor_msgs/Image's fields as a contiguous (H, W, 3) uint8 RGB array (own, writable memory)."""
    data = _byte_array(data)
    if height == 0 or width == 0 or data.size == 0:
        raise ImageConversionError(f"empty image ({width}x{height}, {data.size} bytes); check the camera driver")
    name = encoding.lower()
    if name in NOT_COLOUR_ENCODINGS:
        raise NotColourError(f"'{encoding}' is not a colour image ({NOT_COLOUR_ENCODINGS[name]}): {FIX_COLOUR}")
    if name in REFUSED_COLOUR_ENCODINGS:
        raise ImageConversionError(f"'{encoding}' ({REFUSED_COLOUR_ENCODINGS[name]}) is not converted here; "
                                   f"publish rgb8 or bgr8 (supported: {', '.join(SUPPORTED_ENCODINGS)})")
    if name not in COLOUR_ENCODINGS:
        raise ImageConversionError(f"unsupported image encoding '{encoding}'; supported: "
                                   f"{', '.join(SUPPORTED_ENCODINGS)} (or sensor_msgs/CompressedImage jpeg/png)")
    channels, conversion = COLOUR_ENCODINGS[name]
    row_bytes = width * channels
    if step < row_bytes or data.size != step * height or (channels == 2 and width % 2):
        raise ImageConversionError(f"{encoding} image {width}x{height} needs step >= {row_bytes} and step*height "
                                   f"bytes{' and an even width' if channels == 2 else ''}, got step {step} and "
                                   f"{data.size} bytes")
    pixels = data.reshape(height, step)[:, :row_bytes].reshape(height, width, channels)
    if conversion is None:
        return pixels.copy()
    return cv2.cvtColor(np.ascontiguousarray(pixels), conversion)


def compressed_bytes_to_rgb(fmt: str, data: bytes | np.ndarray) -> np.ndarray:
    """A sensor_msgs/CompressedImage's fields (jpeg or png) as an (H, W, 3) uint8 RGB array."""
    data = _byte_array(data)
    if data.size == 0:
        raise ImageConversionError("empty compressed image; check the camera driver")
    # image_transport writes "jpeg", "png", or "<encoding>; <codec> compressed <encoding>", and
    # compressedDepth "<encoding>; compressedDepth [png|rvl]" (a depth header, then the codec's data).
    name = fmt.lower()
    source = name.split(";", 1)[0].strip() if ";" in name else ""
    if "compresseddepth" in name:
        raise NotColourError(f"format '{fmt}' is a compressedDepth depth stream: {FIX_COLOUR}")
    if source in NOT_COLOUR_ENCODINGS:
        raise NotColourError(f"format '{fmt}' holds '{source}', not a colour image "
                             f"({NOT_COLOUR_ENCODINGS[source]}): {FIX_COLOUR}")
    decoded = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if decoded is None:
        raise ImageConversionError(f"could not decode compressed image (format '{fmt}', {data.size} bytes); "
                                   f"{' and '.join(COMPRESSED_FORMATS)} are supported")
    if decoded.dtype != np.uint8:
        raise NotColourError(f"format '{fmt}' decodes to a {decoded.dtype.itemsize * 8}-bit "
                             f"{'single-channel ' if decoded.ndim == 2 else ''}image (a 16-bit PNG is depth or "
                             f"IR, not a colour picture): {FIX_COLOUR}")
    if decoded.ndim == 2 or decoded.shape[2] == 1:
        return cv2.cvtColor(decoded.reshape(decoded.shape[:2]), cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(decoded, cv2.COLOR_BGRA2RGB if decoded.shape[2] == 4 else cv2.COLOR_BGR2RGB)


def image_to_rgb(msg: Any) -> np.ndarray:
    """A sensor_msgs/Image (rclpy or rosbags) as a contiguous (H, W, 3) uint8 RGB array."""
    return raw_to_rgb(msg.encoding, msg.width, msg.height, msg.step, msg.data)


def compressed_to_rgb(msg: Any) -> np.ndarray:
    """A sensor_msgs/CompressedImage (rclpy or rosbags; jpeg or png) as an (H, W, 3) uint8 RGB array."""
    return compressed_bytes_to_rgb(msg.format, msg.data)


def to_rgb(msg: Any) -> np.ndarray:
    """Either camera message type as RGB uint8."""
    return compressed_to_rgb(msg) if is_compressed(msg) else image_to_rgb(msg)


def is_compressed(msg: Any) -> bool:
    return hasattr(msg, "format")


def encode_rgb(rgb: np.ndarray, compressed: bool = False, encoding: str = "rgb8") -> tuple[bytes, str, int]:
    """RGB -> (pixel bytes, encoding or format, step) for an Image (rgb8/bgr8) or, compressed, a
    CompressedImage (jpeg/png; another encoding gives png, step 0)."""
    if not (isinstance(rgb, np.ndarray) and rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.dtype == np.uint8):
        raise ImageConversionError(f"expected an (H, W, 3) uint8 RGB array, got "
                                   f"{getattr(rgb, 'shape', type(rgb))} {getattr(rgb, 'dtype', '')}".rstrip())
    if compressed:
        fmt = encoding if encoding in COMPRESSED_FORMATS else "png"
        ok, data = cv2.imencode(".jpg" if fmt == "jpeg" else ".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        if not ok:
            raise ImageConversionError(f"OpenCV could not encode a {rgb.shape} image as {fmt}")
        return data.tobytes(), fmt, 0
    if encoding == "bgr8":
        rgb = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    elif encoding != "rgb8":
        raise ImageConversionError(f"an Image is written as rgb8 or bgr8, not '{encoding}'")
    return np.ascontiguousarray(rgb).tobytes(), encoding, rgb.shape[1] * 3
