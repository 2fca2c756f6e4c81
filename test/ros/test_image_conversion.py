"""Camera messages -> RGB, for every supported encoding, and clear refusals for the rest."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image

from specvla_ros.images.conversion import ImageConversionError, NotColourError
from specvla_ros.ros.image_conversion import rgb_to_image, to_rgb

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
    (Image(height=2, width=2, encoding="xyz42", step=8, data=b"\x00" * 16), "unsupported image encoding"),
    (Image(height=0, width=0, encoding="rgb8", step=0, data=b""), "empty image"),
    (CompressedImage(format="jpeg", data=b"not a jpeg"), "could not decode"),
    (CompressedImage(format="jpeg", data=b""), "empty compressed"),
])
def test_bad_images_are_refused_with_reason(message, reason) -> None:
    with pytest.raises(ImageConversionError, match=reason):
        to_rgb(message)


# ----- issue 24: colour however it is encoded, never depth -------------------------------------------------------
Y, X = np.mgrid[0:24, 0:32]
SMOOTH = np.stack([6 * X, 9 * Y, 250 - 5 * X], axis=-1).astype(np.uint8)  # a camera-like, demosaic-friendly frame


def _mosaic(rgb: np.ndarray, pattern: str) -> np.ndarray:
    """Bayer mosaic by its top-left 2x2 block in reading order, as sensor_msgs names them ('rggb' ...)."""
    out = np.zeros(rgb.shape[:2], np.uint8)
    for (dy, dx), colour in zip([(0, 0), (0, 1), (1, 0), (1, 1)], pattern, strict=True):
        out[dy::2, dx::2] = rgb[dy::2, dx::2, "rgb".index(colour)]
    return out


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
def test_bayer_is_demosaiced_to_the_right_colours(pattern) -> None:
    out = to_rgb(_raw(f"bayer_{pattern}8", _mosaic(SMOOTH, pattern)[:, :, None], pad=2))
    assert np.abs(out.astype(int) - SMOOTH)[2:-2, 2:-2].max() <= 2  # borders are interpolated from less


@pytest.mark.parametrize("encoding, to_yuv", [("yuv422", cv2.COLOR_RGB2YUV_UYVY), ("uyvy", cv2.COLOR_RGB2YUV_UYVY),
                                              ("yuv422_yuy2", cv2.COLOR_RGB2YUV_YUY2),
                                              ("yuyv", cv2.COLOR_RGB2YUV_YUY2)])
def test_yuv422_is_converted(encoding, to_yuv) -> None:
    packed = cv2.cvtColor(SMOOTH, to_yuv)  # (H, W, 2): chroma shared by pixel pairs
    out = to_rgb(_raw(encoding, packed))
    assert out.shape == SMOOTH.shape and np.abs(out.astype(int) - SMOOTH).mean() < 4
    rgb_gray = to_rgb(_raw(encoding, cv2.cvtColor(np.full((4, 6, 3), 128, np.uint8), to_yuv)))
    assert np.abs(rgb_gray.astype(int) - 128).max() <= 2
    with pytest.raises(ImageConversionError, match="even width"):
        to_rgb(Image(height=2, width=3, encoding=encoding, step=6, data=b"\x00" * 12))


def _png16(depth_mm: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", depth_mm)
    assert ok
    return data.tobytes()


DEPTH = (np.arange(24 * 32, dtype=np.uint16).reshape(24, 32) * 7 + 400)  # 0.4 to 5.8 m in mm


@pytest.mark.parametrize("message, reason", [
    (Image(height=24, width=32, encoding="16UC1", step=64, data=DEPTH.tobytes()), "'16UC1' is not a colour image"),
    (Image(height=2, width=2, encoding="32FC1", step=8, data=b"\x00" * 16), "'32FC1' is not a colour image"),
    (Image(height=24, width=32, encoding="mono16", step=64, data=DEPTH.tobytes()), "'mono16' is not a colour image"),
    # the forms a depth camera's image_transport plugins publish
    (CompressedImage(format="png", data=_png16(DEPTH)), "16-bit single-channel image"),
    (CompressedImage(format="16UC1; png compressed mono16", data=_png16(DEPTH)), "holds '16uc1', not a colour"),
    (CompressedImage(format="16UC1; compressedDepth png", data=b"\x00" * 12 + _png16(DEPTH)),
     "compressedDepth depth stream"),
    (CompressedImage(format="32FC1; compressedDepth", data=b"\x00" * 12 + _png16(DEPTH)), "compressedDepth"),
])
def test_depth_is_refused_however_it_arrives(message, reason) -> None:
    with pytest.raises(NotColourError, match=reason) as refused:
        to_rgb(message)
    assert "depth cannot drive a VLA" in str(refused.value)


def test_grey_png_and_16_bit_colour() -> None:
    ok, grey = cv2.imencode(".png", SMOOTH[:, :, 1])
    out = to_rgb(CompressedImage(format="mono8; png compressed mono8", data=grey.tobytes()))
    assert np.array_equal(out[:, :, 0], SMOOTH[:, :, 1]) and np.array_equal(out[:, :, 2], SMOOTH[:, :, 1])
    with pytest.raises(ImageConversionError, match="'rgb16' \\(16-bit colour\\) is not converted here"):
        to_rgb(Image(height=1, width=1, encoding="rgb16", step=6, data=b"\x00" * 6))
