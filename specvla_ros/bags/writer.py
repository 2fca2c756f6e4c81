"""Writing rosbag2 bags (sqlite3 or MCAP) with rosbags: raw CDR from rclpy, or rosbags messages.

Bags are written in rosbag2 format version 8 by default: QoS profiles as a YAML string, the form
`ros2 bag` reads from Iron to Kilted (version 9 stores them as a list). Every topic carries its
message definition and type hash, custom messages included.
"""
from __future__ import annotations

import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Literal

import numpy as np
from rosbags.interfaces import Connection, Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import StoragePlugin, Writer, WriterError
from rosbags.typesys.store import Typestore

from specvla_ros.bags.errors import BagError
from specvla_ros.bags.types import COMPRESSED_IMAGE, IMAGE, STRING, default_typestore
from specvla_ros.images.conversion import ImageConversionError, encode_rgb

STORAGES = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}
BAG_VERSION: Literal[8, 9] = 8
_NO_TIME = QosTime(sec=0, nsec=0)


@dataclass(frozen=True)
class TopicQos:
    """The QoS a topic was offered with; `ros2 bag play` republishes with it (a latched task stays latched)."""

    reliable: bool = True
    transient_local: bool = False
    depth: int = 10

    def to_rosbags(self) -> Qos:
        return Qos(history=QosHistory.KEEP_LAST, depth=self.depth,
                   reliability=QosReliability.RELIABLE if self.reliable else QosReliability.BEST_EFFORT,
                   durability=QosDurability.TRANSIENT_LOCAL if self.transient_local else QosDurability.VOLATILE,
                   deadline=_NO_TIME, lifespan=_NO_TIME, liveliness=QosLiveliness.AUTOMATIC,
                   liveliness_lease_duration=_NO_TIME, avoid_ros_namespace_conventions=False)


CAMERA_QOS = TopicQos(reliable=False, depth=1)       # sensor data, as cameras publish
TASK_QOS = TopicQos(transient_local=True, depth=1)   # latched, as specvla_node subscribes


class BagWriter:
    """A new bag at `path` (which must not exist). Thread-safe: record callbacks may come from any thread."""

    def __init__(self, path: str | Path, storage: str = "sqlite3", version: Literal[8, 9] = BAG_VERSION,
                 typestore: Typestore | None = None) -> None:
        self.path = Path(path)
        if storage not in STORAGES:
            raise BagError(f"unknown bag storage '{storage}': use one of {', '.join(STORAGES)}")
        if self.path.exists():
            raise BagError(f"{self.path} exists already: choose a new output path (bags are never overwritten)")
        self.store = typestore or default_typestore()
        self._lock = threading.Lock()
        self._connections: dict[str, Connection] = {}
        self.counts: dict[str, int] = {}
        self._writer = Writer(self.path, version=version, storage_plugin=STORAGES[storage])
        try:
            self._writer.open()
        except (WriterError, OSError) as error:
            raise BagError(f"cannot create bag {self.path}: {error}") from None

    def add_topic(self, topic: str, msgtype: str, qos: TopicQos | None = None) -> None:
        if msgtype not in self.store.types:
            raise BagError(f"cannot record '{topic}': message type {msgtype} is unknown to the bag writer")
        with self._lock:
            if topic in self._connections:
                return
            self._connections[topic] = self._writer.add_connection(
                topic, msgtype, typestore=self.store, offered_qos_profiles=[qos.to_rosbags()] if qos else [])
            self.counts[topic] = 0

    def has_topic(self, topic: str) -> bool:
        return topic in self._connections

    def write_raw(self, topic: str, time_ns: int, raw: bytes | memoryview) -> None:
        """Write already-serialized CDR (from rclpy or another bag) at bag time `time_ns`."""
        with self._lock:
            if topic not in self._connections:
                raise BagError(f"topic '{topic}' was not added to {self.path}: call add_topic first")
            self._writer.write(self._connections[topic], int(time_ns), raw)
            self.counts[topic] += 1

    def write(self, topic: str, time_ns: int, message: Any) -> None:
        """Serialize a rosbags message (see `image_message`, `string_message`) and write it."""
        connection = self._connections.get(topic)
        if connection is None:
            raise BagError(f"topic '{topic}' was not added to {self.path}: call add_topic first")
        self.write_raw(topic, time_ns, self.store.serialize_cdr(message, connection.msgtype))

    def close(self) -> None:
        with self._lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None

    def __enter__(self) -> "BagWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


BAG_FILE_SUFFIXES = (".db3", ".mcap", ".zstd", ".db3-shm", ".db3-wal", ".db3-journal")


def remove_bag(path: str | Path) -> None:
    """Delete a bag, for --overwrite: a folder holding only metadata.yaml and storage files, or a lone .db3 / .mcap.

    Anything else is refused with a BagError, so a mistyped --out can never delete someone's folder.
    """
    path = Path(path)
    if path.is_file():
        if path.suffix not in (".db3", ".mcap"):
            raise BagError(f"{path} is not a bag (.db3 or .mcap): refusing to overwrite it; choose another --out")
        path.unlink()
        return
    others = [p.name for p in path.iterdir()
              if not (p.is_file() and (p.name == "metadata.yaml" or p.name.endswith(BAG_FILE_SUFFIXES)))]
    if others:
        raise BagError(f"{path} holds more than a bag ({', '.join(sorted(others)[:5])}): refusing to overwrite it; "
                       "choose another --out")
    shutil.rmtree(path)


def _header(store: Typestore, stamp_ns: int, frame_id: str) -> Any:
    time_type = store.types["builtin_interfaces/msg/Time"]
    stamp = time_type(sec=int(stamp_ns // 1_000_000_000), nanosec=int(stamp_ns % 1_000_000_000))
    return store.types["std_msgs/msg/Header"](stamp=stamp, frame_id=frame_id)


def image_message(store: Typestore, rgb: np.ndarray, stamp_ns: int, frame_id: str = "camera",
                  msgtype: str = IMAGE, encoding: str = "rgb8") -> Any:
    """A rosbags Image (rgb8/bgr8) or CompressedImage (jpeg/png) holding `rgb`."""
    try:
        data, encoding, step = encode_rgb(rgb, compressed=msgtype == COMPRESSED_IMAGE, encoding=encoding)
    except ImageConversionError as error:
        raise BagError(str(error)) from None
    header = _header(store, stamp_ns, frame_id)
    pixels = np.frombuffer(data, dtype=np.uint8)
    if msgtype == COMPRESSED_IMAGE:
        return store.types[COMPRESSED_IMAGE](header=header, format=encoding, data=pixels)
    return store.types[IMAGE](header=header, height=rgb.shape[0], width=rgb.shape[1], encoding=encoding,
                              is_bigendian=0, step=step, data=pixels)


def string_message(store: Typestore, text: str) -> Any:
    return store.types[STRING](data=text)


def write_observation_bag(path: str | Path, observations: Iterable[tuple[int, np.ndarray, str]],
                          camera_topic: str = "/camera/image_raw", task_topic: str = "/vla/instruction",
                          storage: str = "sqlite3", camera_type: str = IMAGE, encoding: str = "rgb8") -> Path:
    """A bag of (stamp_ns, RGB frame, instruction): the task is written 1 ms before each frame it changes at.

    Bag time equals the header stamp, as a recorder on the camera's machine would see it. For tests,
    demos and converting folders of frames into something `bag-replay` and `bag-compare` read.
    """
    with BagWriter(path, storage) as writer:
        writer.add_topic(task_topic, STRING, TASK_QOS)
        writer.add_topic(camera_topic, camera_type, CAMERA_QOS)
        task = None
        for stamp_ns, rgb, instruction in observations:
            if instruction != task:
                writer.write(task_topic, max(0, stamp_ns - 1_000_000), string_message(writer.store, instruction))
                task = instruction
            writer.write(camera_topic, stamp_ns, image_message(writer.store, rgb, stamp_ns, msgtype=camera_type,
                                                               encoding=encoding))
    return Path(path)
