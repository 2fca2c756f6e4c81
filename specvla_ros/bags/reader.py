"""Reading rosbag2 bags (sqlite3 or MCAP, folder or single file) with rosbags, without ROS.

Bags recorded by anyone: old metadata versions, a bare .db3 or .mcap with no metadata.yaml, old
type names ('sensor_msgs/Image'), MCAP with zstd chunks, no task topic (give the task instead),
several cameras (the colour one is chosen, see cameras.py). Every failure a user can cause (no
bag, a ROS 1 bag, corrupt storage, missing topic, unsupported type, a truncated file, a depth
camera) becomes a BagError that names the bag and says what to do.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, NamedTuple

import numpy as np
from rosbags.rosbag2 import Reader

from specvla_ros.bags.cameras import CAMERA_TYPES, choose_camera
from specvla_ros.bags.errors import BagError
from specvla_ros.bags.types import STRING, default_typestore, normalize_msgtype, register_bag_definitions
from specvla_ros.core.errors import SpecVLAError
from specvla_ros.images.conversion import ImageConversionError, to_rgb

TASK_TYPES = (STRING,)
DEFAULT_TASK_TOPIC = "/vla/instruction"
ROS1_MAGIC = b"#ROSBAG V2.0"
STORAGE_SUFFIXES = (".db3", ".mcap")


def ros1_conversion(path: Path) -> str:
    """The command that turns a ROS 1 bag into a rosbag2 bag these tools read (rosbags-convert comes with rosbags)."""
    return f"rosbags-convert --src {path} --dst {path.parent / (path.stem + '_ros2')}"


def _storage_path(path: Path) -> Path:
    """What rosbags should open: the path itself, or the one storage file of a folder lacking metadata.yaml."""
    if path.is_file():
        with path.open("rb") as file:
            if file.read(len(ROS1_MAGIC)) == ROS1_MAGIC:
                raise BagError(f"{path} is a ROS 1 bag; convert it once, then use the result: {ros1_conversion(path)}")
        return path
    if (path / "metadata.yaml").exists():
        return path
    ros1 = sorted(path.glob("*.bag"))
    storage = sorted(p for p in path.iterdir() if p.suffix in STORAGE_SUFFIXES)
    if ros1 and not storage:
        raise BagError(f"{path} holds ROS 1 bags; convert them once: {ros1_conversion(ros1[0])}")
    if len(storage) == 1:
        return storage[0]  # a bag folder whose metadata.yaml was lost: its storage file says enough
    if storage:
        raise BagError(f"{path} has no metadata.yaml and {len(storage)} storage files: pass one of them "
                       f"({', '.join(p.name for p in storage)}) or restore metadata.yaml (`ros2 bag reindex`)")
    return path


@contextmanager
def open_bag(path: str | Path) -> Iterator[Reader]:
    """An open rosbags Reader; a missing or unreadable bag raises BagError."""
    path = Path(path)
    if not path.exists():
        raise BagError(f"no bag at {path}: give a rosbag2 folder (metadata.yaml + .db3 or .mcap) or a .db3/.mcap file")
    storage = _storage_path(path)
    try:
        reader = Reader(storage)
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
    """Topic -> (message type, message count) as the bag's metadata says (old type names normalized)."""
    with open_bag(path) as reader:
        return {name: TopicSummary(normalize_msgtype(info.msgtype) if info.msgtype else "?", info.msgcount)
                for name, info in reader.topics.items()}


def _listing(reader: Reader) -> str:
    return "; ".join(f"{name} ({info.msgtype}, {info.msgcount})" for name, info in sorted(reader.topics.items()))


HINTS = {"camera": "; pass the right one (--camera-topic), or leave it out to use the bag's only colour camera",
         "task": "; pass the right one (--task-topic), or give the task itself: --task \"pick up the red cube\" "
                 "(task= in Python)"}


def check_topic(reader: Reader, path: Path, topic: str, allowed: tuple[str, ...] | None, role: str) -> str:
    """The topic's message type (old names normalized), or a BagError saying which topics and types the bag has."""
    info = reader.topics.get(topic)
    if info is None:
        raise BagError(f"{path} has no {role} topic '{topic}'. Topics in this bag: {_listing(reader) or 'none'}"
                       f"{HINTS.get(role, '')}")
    if info.msgtype is None:
        raise BagError(f"{path}: topic '{topic}' holds several message types; record one type per topic")
    msgtype = normalize_msgtype(info.msgtype)
    if allowed is not None and msgtype not in allowed:
        raise BagError(f"{path}: {role} topic '{topic}' holds {info.msgtype}, an unsupported message type; "
                       f"supported: {', '.join(allowed)}")
    return msgtype


@dataclass(frozen=True)
class BagCamera:
    """The camera topic a tool reads, and how it was chosen (a line for people)."""

    topic: str
    msgtype: str
    frames: int
    how: str


def find_camera(path: str | Path, camera_topic: str | None = None) -> BagCamera:
    """The named camera topic, checked (type; colour frames), or the bag's only colour image topic."""
    path = Path(path)
    with open_bag(path) as reader:
        if camera_topic is not None:
            check_topic(reader, path, camera_topic, CAMERA_TYPES, "camera")
        camera, how = choose_camera(reader, path, camera_topic)
    return BagCamera(camera.topic, camera.msgtype, camera.count, how)


@dataclass(frozen=True)
class BagMessage:
    topic: str
    msgtype: str      # normalized: 'pkg/msg/Name'
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
        msgtypes = {c.id: normalize_msgtype(c.msgtype) for c in connections}
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
                msgtype = msgtypes[connection.id]
                message = store.deserialize_cdr(raw, msgtype) if store is not None else None
            except SpecVLAError:
                raise
            except Exception as error:  # storage and CDR errors of a damaged file take many forms
                raise BagError(f"{path} is corrupt: reading message {sum(seen.values()) + 1} failed "
                               f"({type(error).__name__}: {error}); re-record it or check it with `ros2 bag info`"
                               ) from None
            seen[connection.topic] += 1
            yield BagMessage(connection.topic, msgtype, time_ns, bytes(raw)), message
        short = {t: (seen[t], n) for t, n in expected.items() if seen[t] < n}
        if short:
            detail = ", ".join(f"{t}: {got} of {n}" for t, (got, n) in short.items())
            raise BagError(f"{path} is corrupt or truncated: its metadata promises more messages than its storage "
                           f"holds ({detail}); re-record it, or run `ros2 bag reindex` if only metadata.yaml is wrong")


class Observation(NamedTuple):
    stamp_ns: int        # camera header stamp (bag time when the header carries none)
    image: np.ndarray    # (H, W, 3) uint8 RGB
    instruction: str     # the latest task received before this frame, or the task given


@dataclass(frozen=True)
class BadFrame:
    """A camera frame that could not become an RGB image, skipped with skip_bad_frames."""

    index: int        # its position among the camera topic's messages (0-based)
    time_ns: int      # bag time
    reason: str


class BagObservations:
    """A bag's camera frames, each with its task; re-iterable, streamed from disk.

    The task is the latest one on `task_topic` before each frame, or `task` for every frame when
    given (then the bag needs no task topic; a task topic in it is ignored). Frames before the first
    (non-empty) task are skipped and counted in `skipped_before_task`; with `skip_bad_frames`, frames
    that cannot be converted are skipped and listed in `bad_frames` (both counted as the iteration
    goes, complete after a full one). With no `camera_topic`, the bag's only colour image topic is
    used. Topics, types and the camera's first frame are checked on construction.
    """

    def __init__(self, path: str | Path, camera_topic: str | None = None, task_topic: str = DEFAULT_TASK_TOPIC,
                 task: str | None = None, skip_bad_frames: bool = False) -> None:
        self.path = Path(path)
        if task is not None and not task.strip():
            raise BagError("the task given is empty: pass the instruction, e.g. --task \"pick up the red cube\"")
        self.task = task.strip() if task is not None else None
        camera = find_camera(self.path, camera_topic)
        self.camera_topic, self.camera_type, self.camera_frames = camera.topic, camera.msgtype, camera.frames
        self.camera_note = camera.how
        self.task_topic = task_topic
        if self.task is None:
            with open_bag(self.path) as reader:
                check_topic(reader, self.path, task_topic, TASK_TYPES, "task")
        self.skip_bad_frames = skip_bad_frames
        self.skipped_before_task = 0
        self.bad_frames: list[BadFrame] = []

    @property
    def task_source(self) -> str:
        return "the task given" if self.task is not None else f"tasks from {self.task_topic}"

    def __iter__(self) -> Iterator[Observation]:
        task = self.task
        topics = (self.camera_topic,) if self.task is not None else (self.camera_topic, self.task_topic)
        self.skipped_before_task, self.bad_frames, index = 0, [], -1  # counted as they come: a reader may stop early
        for message, decoded in _iterate(self.path, topics, decode=True):
            if message.topic != self.camera_topic:
                task = decoded.data.strip() or None
                continue
            index += 1
            if task is None:
                self.skipped_before_task += 1
                continue
            stamp = decoded.header.stamp
            stamp_ns = stamp.sec * 1_000_000_000 + stamp.nanosec or message.time_ns
            try:
                image = to_rgb(decoded)
            except ImageConversionError as error:
                if not self.skip_bad_frames:
                    raise BagError(f"{self.path}: camera frame {index} (bag time {message.time_ns} ns) on "
                                   f"'{self.camera_topic}': {error}. To skip such frames and go on: "
                                   "--skip-bad-frames (skip_bad_frames=True in Python)") from None
                self.bad_frames.append(BadFrame(index, message.time_ns, str(error)))
                continue
            yield Observation(stamp_ns, image, task)


def read_observations(bag_path: str | Path, camera_topic: str | None = None, task_topic: str = DEFAULT_TASK_TOPIC,
                      task: str | None = None, skip_bad_frames: bool = False) -> BagObservations:
    """(stamp_ns, RGB image, instruction) for every camera frame of a bag that has a task.

    Works for sensor_msgs/Image (rgb8, bgr8, rgba8, bgra8, mono8, Bayer, YUV 4:2:2) and
    CompressedImage (jpeg, png) cameras; depth is refused. Tasks come from the std_msgs/String
    `task_topic`, or `task` for every frame (a camera-only bag). `camera_topic=None` picks the
    bag's only colour camera. Anything unusable raises BagError. Training reads bags through this.
    """
    return BagObservations(bag_path, camera_topic, task_topic, task, skip_bad_frames)
