"""Camera messages -> RGB, for every supported encoding, and clear refusals for the rest."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image

from specvla_ros.ros.image_conversion import ImageConversionError, rgb_to_image, to_rgb

RGB = np.random.default_rng(0).integers(0, 256, size=(6, 5, 3), dtype=np.uint8)


def _raw(encoding: str, pixels: np.ndarray, pad: int = 0) -> Image:
    height, width = pixels.shape[:2]
    rows = pixels.reshape(height, -1)
    rows = np.pad(rows, ((0, 0), (0, pad)))
    return Image(height=height, width=width, encoding=encoding, step=rows.shape[1], data=rows.tobytes())


@pytest.mark.parametrize("encoding, convert", [
    ("rgb8", None), ("bgr8", cv2.COLOR_RGB2BGR), ("rgba8", cv2.COLOR_RGB2RGBA), ("bgra8", cv2.COLOR_RGB2BGRA),
])
def test_colour_encodings(encoding, convert) -> None:
    pixels = RGB if convert is None else cv2.cvtColor(RGB, convert)
    np.testing.assert_array_equal(to_rgb(_raw(encoding, pixels, pad=4)), RGB)


def test_mono8_becomes_grey_rgb() -> None:
    grey = RGB[:, :, 0]
    out = to_rgb(_raw("mono8", grey[:, :, None]))
    assert out.shape == (6, 5, 3)
    for channel in range(3):
        np.testing.assert_array_equal(out[:, :, channel], grey)


@pytest.mark.parametrize("fmt", [".png", ".jpg"])
def test_compressed(fmt) -> None:
    ok, encoded = cv2.imencode(fmt, cv2.cvtColor(RGB, cv2.COLOR_RGB2BGR))
    assert ok
    out = to_rgb(CompressedImage(format=fmt[1:], data=encoded.tobytes()))
    assert out.shape == RGB.shape
    if fmt == ".png":
        np.testing.assert_array_equal(out, RGB)


def test_round_trip_helper() -> None:
    np.testing.assert_array_equal(to_rgb(rgb_to_image(RGB)), RGB)
    np.testing.assert_array_equal(to_rgb(rgb_to_image(RGB, "bgr8")), RGB)


@pytest.mark.parametrize("message, reason", [
    (Image(height=2, width=2, encoding="rgb8", step=6, data=b"\x00" * 5), "needs step"),
    (Image(height=2, width=2, encoding="32FC1", step=8, data=b"\x00" * 16), "unsupported image encoding"),
    (Image(height=0, width=0, encoding="rgb8", step=0, data=b""), "empty image"),
    (CompressedImage(format="jpeg", data=b"not a jpeg"), "could not decode"),
    (CompressedImage(format="jpeg", data=b""), "empty compressed"),
])
def test_bad_images_are_refused_with_reason(message, reason) -> None:
    with pytest.raises(ImageConversionError, match=reason):
        to_rgb(message)
