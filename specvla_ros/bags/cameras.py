"""Which topic of a bag is the camera: the one named, or the only one holding colour frames.

Bags recorded by others hold many topics (one had about 90) and often several image streams of
one camera: colour, depth, their compressed forms. Each image topic is judged by its first frame,
decoded by the same rules as every frame (specvla_ros.images.conversion), so a depth stream is never
chosen, and a bag whose only images are depth is refused with the reason.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rosbags.rosbag2 import Reader

from specvla_ros.bags.errors import BagError
from specvla_ros.bags.types import COMPRESSED_IMAGE, IMAGE, default_typestore, normalize_msgtype
from specvla_ros.images.conversion import ImageConversionError, NotColourError, to_rgb

CAMERA_TYPES = (IMAGE, COMPRESSED_IMAGE)


@dataclass(frozen=True)
class CameraTopic:
    """An image topic of a bag, as its first frame shows it."""

    topic: str
    msgtype: str
    count: int
    first_frame: str        # "rgb8 640x480", "jpeg", "16UC1; compressedDepth png", or why it could not be read
    problem: str | None     # why its frames cannot drive the model (None: colour)
    not_colour: bool        # the problem is that it holds depth or other non-colour images

    def describe(self) -> str:
        kind = "CompressedImage" if self.msgtype == COMPRESSED_IMAGE else "Image"
        verdict = "" if self.problem is None else (": not colour" if self.not_colour else ": unreadable")
        return f"{self.topic} ({kind}, {self.first_frame}, {self.count} frames{verdict})"


def _first_frame(reader: Reader, topic: str, msgtype: str) -> tuple[str, str | None, bool]:
    connections = [c for c in reader.connections if c.topic == topic]
    try:
        _, _, raw = next(reader.messages(connections=connections))
        message: Any = default_typestore().deserialize_cdr(raw, msgtype)
    except StopIteration:
        return "no frames", "the topic holds no messages", False
    except Exception as error:  # a damaged message: storage and CDR errors take many forms
        return "unreadable", f"its first message cannot be read ({type(error).__name__}: {error})", False
    if msgtype == COMPRESSED_IMAGE:
        description = message.format or "no format"
    else:
        description = f"{message.encoding} {message.width}x{message.height}"
    try:
        to_rgb(message)
    except NotColourError as error:
        return description, str(error), True
    except ImageConversionError as error:
        return description, str(error), False
    return description, None, False


def camera_topics(reader: Reader) -> list[CameraTopic]:
    """Every Image / CompressedImage topic of an open bag (old type names too), first frame judged."""
    cameras = []
    for topic, info in sorted(reader.topics.items()):
        msgtype = normalize_msgtype(info.msgtype) if info.msgtype else None
        if msgtype in CAMERA_TYPES:
            cameras.append(CameraTopic(topic, msgtype, info.msgcount, *_first_frame(reader, topic, msgtype)))
    return cameras


def choose_camera(reader: Reader, path: Path, requested: str | None) -> tuple[CameraTopic, str]:
    """The camera topic to read and a line saying how it was chosen; BagError, listing the candidates, when
    none or several qualify. A named topic is taken as it is, unless its frames are not colour."""
    cameras = camera_topics(reader)
    if requested is not None:
        named = next((c for c in cameras if c.topic == requested), None)
        if named is None:
            raise BagError(f"{path}: camera topic '{requested}' is not an image topic of this bag. Its image topics: "
                           f"{_listing(cameras)}; pass one with --camera-topic")
        if named.not_colour:
            raise BagError(f"{path}: camera topic '{requested}' cannot drive the model: {named.problem}")
        return named, f"camera: {named.describe()}"
    usable = [c for c in cameras if not c.not_colour]  # an unreadable one is reported when it is read
    if len(usable) > 1 and sum(c.problem is None for c in usable) == 1:
        usable = [c for c in usable if c.problem is None]
    if len(usable) == 1:
        others = len(cameras) - 1
        note = " (the only image topic)" if not others else \
            f" (the only colour image topic; {others} other image topic{'s' if others != 1 else ''})"
        return usable[0], f"camera: {usable[0].describe()}{note}"
    if not cameras:
        raise BagError(f"{path} has no camera: no sensor_msgs/msg/Image or CompressedImage topic in it. Topics: "
                       f"{_all_topics(reader)}")
    if not usable and len(cameras) == 1:
        raise BagError(f"{path}: its only image topic {cameras[0].topic} cannot drive the model: {cameras[0].problem}")
    if not usable:
        raise BagError(f"{path}: none of its {len(cameras)} image topics holds colour frames: {_listing(cameras)}")
    raise BagError(f"{path} has {len(usable)} colour image topics: name one with --camera-topic (camera_topic= in "
                   f"Python). Image topics: {_listing(cameras)}")


def _listing(cameras: list[CameraTopic]) -> str:
    return "; ".join(c.describe() for c in cameras) or "none"


def _all_topics(reader: Reader) -> str:
    return "; ".join(f"{name} ({info.msgtype}, {info.msgcount})" for name, info in sorted(reader.topics.items())) \
        or "none"
