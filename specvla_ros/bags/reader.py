"""Reading rosbag2 bags (sqlite3 or MCAP, folder or single file) with rosbags, without ROS.

Every failure a user can cause (no bag, corrupt storage, missing topic, unsupported type, a
truncated file) becomes a BagError that names the bag and says what to do.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, NamedTuple

import numpy as np
from rosbags.rosbag2 import Reader

from specvla_ros.bags.errors import BagError
from specvla_ros.bags.images import to_rgb
from specvla_ros.bags.types import COMPRESSED_IMAGE, IMAGE, STRING, default_typestore, register_bag_definitions
from specvla_ros.core.errors import SpecVLAError

CAMERA_TYPES = (IMAGE, COMPRESSED_IMAGE)
TASK_TYPES = (STRING,)


@contextmanager
def open_bag(path: str | Path) -> Iterator[Reader]:
    """An open rosbags Reader; a missing or unreadable bag raises BagError."""
    path = Path(path)
    if not path.exists():
        raise BagError(f"no bag at {path}: give a rosbag2 folder (metadata.yaml + .db3 or .mcap) or a .db3/.mcap file")
    try:
        reader = Reader(path)
        reader.open()
    except Exception as error:  # rosbags raises ReaderError, FileNotFoundError, YAML and sqlite errors
        raise BagError(f"{path} is not a readable rosbag2 bag: {error}. Check it with `ros2 bag info`; a bag "
                       "whose recorder crashed may need `ros2 bag reindex`") from None
    try:
        yield reader
    finally:
        reader.close()


@dataclass(frozen=True)
class TopicSummary:
    msgtype: str
    count: int


def bag_topics(path: str | Path) -> dict[str, TopicSummary]:
    """Topic -> (message type, message count) as the bag's metadata says."""
    with open_bag(path) as reader:
        return {name: TopicSummary(info.msgtype or "?", info.msgcount) for name, info in reader.topics.items()}


def _listing(reader: Reader) -> str:
    return "; ".join(f"{name} ({info.msgtype}, {info.msgcount})" for name, info in sorted(reader.topics.items()))


def check_topic(reader: Reader, path: Path, topic: str, allowed: tuple[str, ...] | None, role: str) -> str:
    """The topic's message type, or a BagError saying which topics and types the bag has."""
    info = reader.topics.get(topic)
    if info is None:
        hint = f"; pass the right one (--{role}-topic on the command line)" if role in ("camera", "task") else ""
        raise BagError(f"{path} has no {role} topic '{topic}'. Topics in this bag: {_listing(reader) or 'none'}"
                       f"{hint}")
    if info.msgtype is None:
        raise BagError(f"{path}: topic '{topic}' holds several message types; record one type per topic")
    if allowed is not None and info.msgtype not in allowed:
        raise BagError(f"{path}: {role} topic '{topic}' holds {info.msgtype}, an unsupported message type; "
                       f"supported: {', '.join(allowed)}")
    return info.msgtype


@dataclass(frozen=True)
class BagMessage:
    topic: str
    msgtype: str
    time_ns: int      # bag (receive) time
    raw: bytes        # CDR as stored


def read_messages(path: str | Path, topics: dict[str, tuple[str, ...] | None], decode: bool = True
                  ) -> Iterator[tuple[BagMessage, Any]]:
    """(message, decoded rosbags message or None) for `topics` (name -> allowed types or None = any), in bag
    time order. Topics and types are checked now; reading happens as you iterate."""
    path = Path(path)
    with open_bag(path) as reader:
        for topic, allowed in topics.items():
            check_topic(reader, path, topic, allowed, "requested")
    return _iterate(path, tuple(topics), decode)


def _iterate(path: Path, topics: tuple[str, ...], decode: bool) -> Iterator[tuple[BagMessage, Any]]:
    with open_bag(path) as reader:
        connections = [c for c in reader.connections if c.topic in topics]
        store = default_typestore() if decode else None
        if store is not None:
            register_bag_definitions(store, connections)
        expected = {topic: reader.topics[topic].msgcount for topic in topics}
        seen = dict.fromkeys(topics, 0)
        messages = reader.messages(connections=connections)
        while True:
            try:
                item = next(messages, None)
                if item is None:
                    break
                connection, time_ns, raw = item
                message = store.deserialize_cdr(raw, connection.msgtype) if store is not None else None
            except SpecVLAError:
                raise
            except Exception as error:  # storage and CDR errors of a damaged file take many forms
                raise BagError(f"{path} is corrupt: reading message {sum(seen.values()) + 1} failed "
                               f"({type(error).__name__}: {error}); re-record it or check it with `ros2 bag info`"
                               ) from None
            seen[connection.topic] += 1
            yield BagMessage(connection.topic, connection.msgtype, time_ns, bytes(raw)), message
        short = {t: (seen[t], n) for t, n in expected.items() if seen[t] < n}
        if short:
            detail = ", ".join(f"{t}: {got} of {n}" for t, (got, n) in short.items())
            raise BagError(f"{path} is corrupt or truncated: its metadata promises more messages than its storage "
                           f"holds ({detail}); re-record it, or run `ros2 bag reindex` if only metadata.yaml is wrong")


class Observation(NamedTuple):
    stamp_ns: int        # camera header stamp (bag time when the header carries none)
    image: np.ndarray    # (H, W, 3) uint8 RGB
    instruction: str     # the latest task received before this frame


class BagObservations:
    """A bag's camera frames, each with the latest task before it; re-iterable, streamed from disk.

    Frames before the first (non-empty) task are skipped and counted in `skipped_before_task`
    (complete after one full iteration). Topics and types are checked on construction.
    """

    def __init__(self, path: str | Path, camera_topic: str = "/camera/image_raw",
                 task_topic: str = "/vla/instruction") -> None:
        self.path = Path(path)
        self.camera_topic, self.task_topic = camera_topic, task_topic
        with open_bag(self.path) as reader:
            self.camera_type = check_topic(reader, self.path, camera_topic, CAMERA_TYPES, "camera")
            check_topic(reader, self.path, task_topic, TASK_TYPES, "task")
            self.camera_frames = reader.topics[camera_topic].msgcount
        self.skipped_before_task = 0

    def __iter__(self) -> Iterator[Observation]:
        task: str | None = None
        skipped = 0
        for message, decoded in _iterate(self.path, (self.camera_topic, self.task_topic), decode=True):
            if message.topic == self.task_topic:
                task = decoded.data.strip() or None
                continue
            if task is None:
                skipped += 1
                continue
            stamp = decoded.header.stamp
            stamp_ns = stamp.sec * 1_000_000_000 + stamp.nanosec or message.time_ns
            try:
                image = to_rgb(decoded, message.msgtype)
            except BagError as error:
                raise BagError(f"{self.path}: camera frame at {message.time_ns} ns on '{self.camera_topic}': {error}"
                               ) from None
            yield Observation(stamp_ns, image, task)
        self.skipped_before_task = skipped


def read_observations(bag_path: str | Path, camera_topic: str = "/camera/image_raw",
                      task_topic: str = "/vla/instruction") -> BagObservations:
    """(stamp_ns, RGB image, instruction) for every camera frame of a bag that follows a task message.

    Works for sensor_msgs/Image (rgb8, bgr8, rgba8, bgra8, mono8) and CompressedImage (jpeg, png)
    cameras and std_msgs/String tasks; anything else raises BagError. Training reads bags through this.
    """
    return BagObservations(bag_path, camera_topic, task_topic)
