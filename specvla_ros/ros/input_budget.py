"""Input budgets: a message too large to decode safely is refused before any work is spent on it.

One message could otherwise exhaust the machine: a task's decode cost grows with the square of
its length (a 100 kB task asked for ~10 GB), and a 3 MB PNG can declare a frame of gigapixels.
Tasks are measured in UTF-8 bytes, a bound on their tokens for byte-fallback tokenizers (Llama's
and the tiny VLA's both spend at most one token per byte). Compressed frames are measured from
their header, before decompression; only JPEG and PNG get that far (OpenCV would also decode a
dozen other formats whose size we do not check).
"""
from __future__ import annotations

import struct

from sensor_msgs.msg import CompressedImage, Image

from specvla_ros.core.errors import InputError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SOI = b"\xff\xd8"
# Start-of-frame markers (baseline, progressive, lossless, arithmetic...): they carry the frame size.
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_JPEG_NO_LENGTH = {0x01, *range(0xD0, 0xD8)}  # TEM and RSTn stand alone


class TaskTooLong(InputError):
    """A task instruction over inputs.max_task_bytes."""


class ImageTooLarge(InputError):
    """A camera frame over inputs.max_image_pixels."""


class UnreadableImageHeader(InputError):
    """A compressed frame that is not JPEG or PNG, or whose header does not give its size."""


def check_task(task: str, max_bytes: int) -> None:
    size = len(task.encode("utf-8", errors="replace"))
    if size > max_bytes:
        raise TaskTooLong(f"task of {size} bytes refused: over inputs.max_task_bytes ({max_bytes}); "
                          "send a shorter instruction (it is not truncated)")


def check_image(msg: Image | CompressedImage, max_pixels: int) -> None:
    """Refuse a frame over the pixel budget; a compressed one from its header, without decoding it."""
    if isinstance(msg, CompressedImage):
        kind, width, height = compressed_size(bytes(msg.data[:_HEADER_SCAN_BYTES]), len(msg.data))
        where = f"{kind} header says"
    else:
        width, height = msg.width, msg.height
        where = "image is"
    if width * height > max_pixels:
        raise ImageTooLarge(f"frame refused: {where} {width}x{height} = {width * height} pixels, over "
                            f"inputs.max_image_pixels ({max_pixels}); lower the camera resolution")


_HEADER_SCAN_BYTES = 1 << 20  # a JPEG's frame header follows its tables; 1 MB of markers is plenty


def compressed_size(data: bytes, total_bytes: int | None = None) -> tuple[str, int, int]:
    """(format, width, height) read from a JPEG or PNG header; UnreadableImageHeader otherwise."""
    total = len(data) if total_bytes is None else total_bytes
    if data.startswith(PNG_SIGNATURE):
        if len(data) < 24 or data[12:16] != b"IHDR":
            raise UnreadableImageHeader(f"png frame of {total} bytes has no IHDR header: corrupt or truncated")
        width, height = struct.unpack(">II", data[16:24])
        return "png", width, height
    if data.startswith(JPEG_SOI):
        return ("jpeg", *_jpeg_size(data, total))
    raise UnreadableImageHeader(f"compressed frame of {total} bytes is neither jpeg nor png "
                                f"(starts with {data[:8].hex() or 'nothing'}); publish jpeg or png")


def _jpeg_size(data: bytes, total: int) -> tuple[int, int]:
    """Walk the JPEG segments up to the start-of-frame marker and read its height and width."""
    index = 2
    while index + 4 <= len(data):
        if data[index] != 0xFF:
            break
        marker = data[index + 1]
        if marker == 0xFF:  # fill byte
            index += 1
            continue
        if marker in _JPEG_NO_LENGTH:
            index += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, or scan data before any frame header
            break
        (length,) = struct.unpack(">H", data[index + 2:index + 4])
        if length < 2:
            break
        if marker in _JPEG_SOF:
            if index + 9 > len(data):
                break
            height, width = struct.unpack(">HH", data[index + 5:index + 9])
            if height == 0 or width == 0:
                break  # a height defined later (DNL) is legal but rare; refuse rather than guess
            return width, height
        index += 2 + length
    raise UnreadableImageHeader(f"jpeg frame of {total} bytes has no readable frame header: corrupt or truncated")
