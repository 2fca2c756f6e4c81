"""One converter for both message worlds: an rclpy message and the same message from a bag
(rosbags) read through the same code, with the same result and the same refusals."""
from __future__ import annotations

import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage

from specvla_ros.bags import COMPRESSED_IMAGE, IMAGE, default_typestore, image_message
from specvla_ros.images.conversion import ImageConversionError, NotColourError, encode_rgb, is_compressed, to_rgb
from specvla_ros.ros.image_conversion import rgb_to_image

RGB = np.random.default_rng(0).integers(0, 256, (6, 8, 3), dtype=np.uint8)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8"])
def test_raw_frames_read_the_same_from_rclpy_and_from_a_bag(encoding: str) -> None:
    live = rgb_to_image(RGB, encoding=encoding)
    bagged = image_message(default_typestore(), RGB, 0, msgtype=IMAGE, encoding=encoding)
    assert not is_compressed(live) and not is_compressed(bagged)
    np.testing.assert_array_equal(to_rgb(live), RGB)
    np.testing.assert_array_equal(to_rgb(bagged), RGB)


def test_compressed_frames_read_the_same_from_rclpy_and_from_a_bag() -> None:
    data, fmt, step = encode_rgb(RGB, compressed=True, encoding="png")  # lossless: compare exactly
    assert (fmt, step) == ("png", 0)
    live = CompressedImage(format=fmt, data=data)
    bagged = image_message(default_typestore(), RGB, 0, msgtype=COMPRESSED_IMAGE, encoding="png")
    assert is_compressed(live) and is_compressed(bagged)
    np.testing.assert_array_equal(to_rgb(live), RGB)
    np.testing.assert_array_equal(to_rgb(bagged), RGB)


def test_depth_is_refused_whichever_side_reads_it() -> None:
    live = rgb_to_image(RGB)
    live.encoding = "16UC1"
    bagged = image_message(default_typestore(), RGB, 0)
    bagged.encoding = "16UC1"
    for msg in (live, bagged):
        with pytest.raises(NotColourError, match="not a colour image"):
            to_rgb(msg)


@pytest.mark.parametrize(("rgb", "encoding", "match"), [
    (RGB[..., 0], "rgb8", "expected an \\(H, W, 3\\) uint8 RGB array"),
    (RGB.astype(np.float32), "rgb8", "uint8"),
    (RGB, "mono8", "rgb8 or bgr8, not 'mono8'"),
])
def test_encoding_refuses_what_it_cannot_write(rgb: np.ndarray, encoding: str, match: str) -> None:
    with pytest.raises(ImageConversionError, match=match):
        encode_rgb(rgb, encoding=encoding)
