"""Small bags in the shapes real recordings come in, written by the tests themselves (issue 24).

Each function writes one bag under `folder` and returns its path; `python -m test.bags.corpus DIR`
writes them all (docs/rosbags.md uses them). The shapes mirror the public
recordings the bag tools were tried on: rosbag2 metadata version 4 (Foxy), a bare 2019-style .db3
with no metadata.yaml and old type names, MCAP with zstd-compressed chunks, a compressed camera,
depth only (raw 16UC1, compressedDepth, 16-bit PNG), several cameras beside unrelated topics,
a camera with no task topic, and a ROS 1 bag.
"""
from __future__ import annotations

import sqlite3
from pathlib import Path

import cv2
import numpy as np
import yaml
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.rosbag2.enums import CompressionFormat, CompressionMode

from specvla_ros.bags import (
    CAMERA_QOS,
    COMPRESSED_IMAGE,
    IMAGE,
    STRING,
    TASK_QOS,
    BagWriter,
    image_message,
    string_message,
)
from specvla_ros.bags.types import default_typestore
from test.bags.conftest import PERIOD_NS, T0_NS, frames

TASK = "pick up the red cube"


def _depth_mm(height: int = 24, width: int = 40) -> np.ndarray:
    return (np.arange(height * width, dtype=np.uint16).reshape(height, width) * 5 + 400)


def _depth_message(store, stamp_ns: int, msgtype: str, how: str):
    """A depth frame as a driver publishes it: raw 16UC1, a compressedDepth stream, or a plain 16-bit PNG."""
    depth = _depth_mm()
    header = store.types["std_msgs/msg/Header"](
        stamp=store.types["builtin_interfaces/msg/Time"](sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9),
        frame_id="depth")
    if msgtype == IMAGE:
        return store.types[IMAGE](header=header, height=depth.shape[0], width=depth.shape[1], encoding="16UC1",
                                  is_bigendian=0, step=depth.shape[1] * 2, data=depth.view(np.uint8).reshape(-1))
    png = cv2.imencode(".png", depth)[1].reshape(-1)
    if how == "compressedDepth":  # a 12-byte depth-quantization header, then the PNG
        return store.types[COMPRESSED_IMAGE](header=header, format="16UC1; compressedDepth png",
                                             data=np.concatenate([np.zeros(12, np.uint8), png]))
    return store.types[COMPRESSED_IMAGE](header=header, format="png", data=png)


def camera_and_task(folder: Path, storage: str = "sqlite3", count: int = 6) -> Path:
    """The plain shape, for reference: /camera/image_raw rgb8 and a latched /vla/instruction."""
    from specvla_ros.bags import write_observation_bag

    return write_observation_bag(folder / f"plain_{storage}", [(s, im, TASK) for s, im, _ in frames(count)],
                                 storage=storage)


def old_metadata(folder: Path, count: int = 4) -> Path:
    """rosbag2 metadata version 4 (Foxy) over the sqlite3 schema of its time (no definitions, no hashes)."""
    store = default_typestore()
    bag = folder / "old_metadata"
    bag.mkdir()
    database = sqlite3.connect(bag / "old_metadata_0.db3")
    database.executescript(
        "CREATE TABLE topics(id INTEGER PRIMARY KEY, name TEXT NOT NULL, type TEXT NOT NULL, "
        "serialization_format TEXT NOT NULL, offered_qos_profiles TEXT NOT NULL);"
        "CREATE TABLE messages(id INTEGER PRIMARY KEY, topic_id INTEGER NOT NULL, timestamp INTEGER NOT NULL, "
        "data BLOB NOT NULL);")
    forever = {"sec": 2147483647, "nsec": 4294967295}  # Foxy wrote "no deadline" this way
    qos = yaml.safe_dump([{"history": 3, "depth": 0, "reliability": 1, "durability": 1, "deadline": forever,
                           "lifespan": forever, "liveliness": 1, "liveliness_lease_duration": forever,
                           "avoid_ros_namespace_conventions": False}], sort_keys=False)
    database.execute("INSERT INTO topics VALUES (1, '/camera/image_raw', ?, 'cdr', '')", (IMAGE,))
    database.execute("INSERT INTO topics VALUES (2, '/vla/instruction', ?, 'cdr', ?)", (STRING, qos))
    rows = [(2, T0_NS - 1_000_000, store.serialize_cdr(string_message(store, TASK), STRING))]
    rows += [(1, stamp, store.serialize_cdr(image_message(store, image, stamp), IMAGE))
             for stamp, image, _ in frames(count)]
    database.executemany("INSERT INTO messages(topic_id, timestamp, data) VALUES (?, ?, ?)", rows)
    database.commit()
    database.close()
    times = [t for _, t, _ in rows]
    metadata = {"rosbag2_bagfile_information": {
        "version": 4, "storage_identifier": "sqlite3", "relative_file_paths": ["old_metadata_0.db3"],
        "duration": {"nanoseconds": max(times) - min(times)},
        "starting_time": {"nanoseconds_since_epoch": min(times)}, "message_count": len(rows),
        "topics_with_message_count": [
            {"topic_metadata": {"name": "/camera/image_raw", "type": IMAGE, "serialization_format": "cdr",
                                "offered_qos_profiles": ""}, "message_count": count},
            {"topic_metadata": {"name": "/vla/instruction", "type": STRING, "serialization_format": "cdr",
                                "offered_qos_profiles": qos}, "message_count": 1}],
        "compression_format": "", "compression_mode": ""}}
    (bag / "metadata.yaml").write_text(yaml.safe_dump(metadata))
    return bag


def bare_db3(folder: Path, count: int = 3) -> Path:
    """A lone 2019-style .db3: no metadata.yaml, the first rosbag2 schema, old type names, a webcam, no task."""
    store = default_typestore()
    path = folder / "webcam_2019.db3"
    database = sqlite3.connect(path)
    database.executescript(
        "CREATE TABLE topics(id INTEGER PRIMARY KEY, name TEXT NOT NULL, type TEXT NOT NULL, "
        "serialization_format TEXT NOT NULL);"
        "CREATE TABLE messages(id INTEGER PRIMARY KEY, topic_id INTEGER NOT NULL, timestamp INTEGER NOT NULL, "
        "data BLOB NOT NULL);")
    database.execute("INSERT INTO topics VALUES (1, '/image', 'sensor_msgs/Image', 'cdr')")
    database.execute("INSERT INTO topics VALUES (2, '/rosout', 'rcl_interfaces/Log', 'cdr')")
    database.executemany("INSERT INTO messages(topic_id, timestamp, data) VALUES (1, ?, ?)",
                         [(stamp, store.serialize_cdr(image_message(store, image, stamp, encoding="bgr8"), IMAGE))
                          for stamp, image, _ in frames(count)])
    database.commit()
    database.close()
    return path


def mcap_zstd(folder: Path, count: int = 6) -> Path:
    """MCAP whose chunks are zstd-compressed, as `ros2 bag record -s mcap` writes by default."""
    store = default_typestore()
    bag = folder / "mcap_zstd"
    writer = Writer(bag, version=8, storage_plugin=StoragePlugin.MCAP)
    writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
    with writer:
        task = writer.add_connection("/vla/instruction", STRING, typestore=store)
        camera = writer.add_connection("/camera/image_raw", IMAGE, typestore=store)
        writer.write(task, T0_NS - 1_000_000, store.serialize_cdr(string_message(store, TASK), STRING))
        for stamp, image, _ in frames(count):
            writer.write(camera, stamp, store.serialize_cdr(image_message(store, image, stamp), IMAGE))
    return bag


def compressed_camera(folder: Path, count: int = 6) -> Path:
    """A jpeg camera on /camera/image_raw/compressed, as image_transport names it, and a task."""
    bag = folder / "compressed"
    with BagWriter(bag, "mcap") as writer:
        writer.add_topic("/vla/instruction", STRING, TASK_QOS)
        writer.add_topic("/camera/image_raw/compressed", COMPRESSED_IMAGE, CAMERA_QOS)
        writer.write("/vla/instruction", T0_NS - 1_000_000, string_message(writer.store, TASK))
        for stamp, image, _ in frames(count):
            writer.write("/camera/image_raw/compressed", stamp,
                         image_message(writer.store, image, stamp, msgtype=COMPRESSED_IMAGE, encoding="jpeg"))
    return bag


def depth_only(folder: Path, how: str = "raw", count: int = 4) -> Path:
    """A depth camera and a task, nothing else: raw 16UC1, 'compressedDepth', or a 16-bit 'png'."""
    msgtype = IMAGE if how == "raw" else COMPRESSED_IMAGE
    topic = {"raw": "/camera/depth/image_rect_raw", "compressedDepth": "/camera/depth/image_rect_raw/compressedDepth",
             "png": "/camera/depth/image_rect_raw/compressed"}[how]
    bag = folder / f"depth_{how}"
    with BagWriter(bag) as writer:
        writer.add_topic("/vla/instruction", STRING, TASK_QOS)
        writer.add_topic(topic, msgtype, CAMERA_QOS)
        writer.write("/vla/instruction", T0_NS - 1_000_000, string_message(writer.store, TASK))
        for index in range(count):
            stamp = T0_NS + index * PERIOD_NS
            writer.write(topic, stamp, _depth_message(writer.store, stamp, msgtype, how))
    return bag


RGBD_TOPICS = {"/camera/color/image_raw": "colour", "/camera/depth/image_rect_raw": "raw",
               "/camera/depth/image_rect_raw/compressedDepth": "compressedDepth"}


def multi_topic(folder: Path, second_colour_camera: bool = False, count: int = 5) -> Path:
    """An RGB-D camera (colour, raw depth, compressedDepth), other topics, a task; with `second_colour_camera`
    also a jpeg wrist camera, so no single colour camera can be chosen."""
    bag = folder / ("two_cameras" if second_colour_camera else "rgbd")
    with BagWriter(bag, "mcap") as writer:
        writer.add_topic("/vla/instruction", STRING, TASK_QOS)
        writer.add_topic("/robot/status", STRING, TASK_QOS)
        for topic, kind in RGBD_TOPICS.items():
            writer.add_topic(topic, COMPRESSED_IMAGE if kind == "compressedDepth" else IMAGE, CAMERA_QOS)
        if second_colour_camera:
            writer.add_topic("/wrist/image_raw/compressed", COMPRESSED_IMAGE, CAMERA_QOS)
        writer.write("/vla/instruction", T0_NS - 2_000_000, string_message(writer.store, TASK))
        writer.write("/robot/status", T0_NS - 1_000_000, string_message(writer.store, "ok"))
        for stamp, image, _ in frames(count):
            writer.write("/camera/color/image_raw", stamp, image_message(writer.store, image, stamp))
            writer.write("/camera/depth/image_rect_raw", stamp + 1, _depth_message(writer.store, stamp, IMAGE, "raw"))
            writer.write("/camera/depth/image_rect_raw/compressedDepth", stamp + 2,
                         _depth_message(writer.store, stamp, COMPRESSED_IMAGE, "compressedDepth"))
            if second_colour_camera:
                writer.write("/wrist/image_raw/compressed", stamp + 3, image_message(
                    writer.store, image[::-1], stamp, msgtype=COMPRESSED_IMAGE, encoding="jpeg"))
    return bag


def camera_only(folder: Path, count: int = 6, storage: str = "mcap") -> Path:
    """`ros2 bag record /camera/image_raw`: frames and nothing else, no task."""
    bag = folder / f"camera_only_{storage}"
    with BagWriter(bag, storage) as writer:
        writer.add_topic("/camera/image_raw", IMAGE, CAMERA_QOS)
        for stamp, image, _ in frames(count):
            writer.write("/camera/image_raw", stamp, image_message(writer.store, image, stamp))
    return bag


def ros1_bag(folder: Path, count: int = 3) -> Path:
    """A ROS 1 bag (rosbag v2.0) with a camera and a task."""
    from rosbags.rosbag1 import Writer as Ros1Writer
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS1_NOETIC)
    types = store.types
    path = folder / "noetic.bag"
    with Ros1Writer(path) as writer:
        task = writer.add_connection("/vla/instruction", STRING, typestore=store)
        camera = writer.add_connection("/camera/image_raw", IMAGE, typestore=store)
        writer.write(task, T0_NS - 1_000_000, store.serialize_ros1(types[STRING](data=TASK), STRING))
        for index, (stamp, image, _) in enumerate(frames(count)):
            header = types["std_msgs/msg/Header"](seq=index, stamp=types["builtin_interfaces/msg/Time"](
                sec=stamp // 10**9, nanosec=stamp % 10**9), frame_id="camera")
            message = types[IMAGE](header=header, height=image.shape[0], width=image.shape[1], encoding="rgb8",
                                   is_bigendian=0, step=image.shape[1] * 3, data=image.reshape(-1))
            writer.write(camera, stamp, store.serialize_ros1(message, IMAGE))
    return path


def write_all(folder: Path) -> dict[str, Path]:
    """Every shape above, under `folder` (which must not hold them yet)."""
    folder.mkdir(parents=True, exist_ok=True)
    bags = {"old_metadata": old_metadata(folder), "bare_db3": bare_db3(folder), "mcap_zstd": mcap_zstd(folder),
            "compressed": compressed_camera(folder), "rgbd": multi_topic(folder),
            "two_cameras": multi_topic(folder, second_colour_camera=True), "camera_only": camera_only(folder),
            "ros1": ros1_bag(folder)}
    bags |= {f"depth_{how}": depth_only(folder, how) for how in ("raw", "compressedDepth", "png")}
    return bags


if __name__ == "__main__":
    import sys

    for name, path in write_all(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/corpus")).items():
        print(f"{name}: {path}")
