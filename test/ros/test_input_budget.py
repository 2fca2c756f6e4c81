"""Input budgets: task bytes, frame pixels, and the size of a compressed frame read from its header."""
from __future__ import annotations

import struct

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sensor_msgs.msg import CompressedImage, Image

from specvla_ros.ros.input_budget import (
    PNG_SIGNATURE,
    ImageTooLarge,
    TaskTooLong,
    UnreadableImageHeader,
    check_image,
    check_task,
    compressed_size,
)
from test.ros.fuzz_traffic import jpeg_header_claiming, png_bomb


@pytest.mark.parametrize("extension, flags", [(".jpg", []), (".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]),
                                              (".png", [])])
def test_size_from_the_header_matches_the_decoded_frame(extension, flags) -> None:
    frame = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    encoded = cv2.imencode(extension, frame, flags)[1].tobytes()
    kind, width, height = compressed_size(encoded)
    decoded = cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_COLOR)
    assert (width, height) == (decoded.shape[1], decoded.shape[0]) == (53, 37)
    assert kind == ("png" if extension == ".png" else "jpeg")


def test_a_png_bomb_is_refused_from_its_header() -> None:
    bomb = png_bomb()
    assert len(bomb) < 2_000_000  # a few hundred kB that would decompress to 1.2 GB of RGB
    with pytest.raises(ImageTooLarge, match="png header says 20000x20000"):
        check_image(CompressedImage(format="png", data=bomb), max_pixels=3840 * 2160)


def test_frames_over_the_pixel_budget_are_refused_raw_and_compressed() -> None:
    with pytest.raises(ImageTooLarge, match="65000x65000"):
        check_image(CompressedImage(data=jpeg_header_claiming(65000, 65000)), max_pixels=10_000)
    with pytest.raises(ImageTooLarge, match="inputs.max_image_pixels"):
        check_image(Image(width=101, height=100), max_pixels=10_000)
    check_image(Image(width=100, height=100), max_pixels=10_000)


def test_other_formats_and_broken_headers_are_refused() -> None:
    for data in (b"", b"BM" + b"\0" * 60, b"GIF89a", PNG_SIGNATURE + b"\0\0\0\rIHDX" + b"\0" * 20,
                 b"\xff\xd8\xff\xda\x00\x02", jpeg_header_claiming(0, 10)):
        with pytest.raises(UnreadableImageHeader):
            compressed_size(data)


@settings(max_examples=500, deadline=None, derandomize=True, database=None)
@given(st.binary(max_size=300), st.sampled_from([b"", b"\xff\xd8", PNG_SIGNATURE]))
def test_any_bytes_give_a_size_or_unreadable_header(data: bytes, prefix: bytes) -> None:
    try:
        _, width, height = compressed_size(prefix + data)
    except UnreadableImageHeader:
        return
    assert 0 <= width < 2 ** 32 and 0 <= height < 2 ** 32


def test_task_budget_counts_utf8_bytes_and_never_truncates() -> None:
    check_task("pick up the cube", max_bytes=16)
    with pytest.raises(TaskTooLong, match="17 bytes refused.*not truncated"):
        check_task("pick up the cube!", max_bytes=16)
    with pytest.raises(TaskTooLong):
        check_task("é" * 9, max_bytes=16)  # 18 bytes in 9 characters


def test_jpeg_header_claim_is_well_formed() -> None:
    data = jpeg_header_claiming(640, 480)
    assert compressed_size(data) == ("jpeg", 640, 480)
    assert struct.unpack(">H", data[4:6])[0] == 11
