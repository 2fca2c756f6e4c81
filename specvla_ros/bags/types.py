"""Message types for bags: the standard ROS 2 set plus this package's msg/*.msg, in a rosbags typestore.

Our custom messages are registered from the same msg/*.msg files rosidl builds, so a bag we write
carries their real definitions and type hashes, and `ros2 bag` / Foxglove decode them without our code.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from rosbags.interfaces import Connection, MessageDefinitionFormat
from rosbags.typesys import Stores, TypesysError, get_types_from_idl, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from specvla_ros.bags.errors import BagError

PACKAGE = "specvla_ros"
IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
STRING = "std_msgs/msg/String"
END_EFFECTOR_DELTA = f"{PACKAGE}/msg/EndEffectorDelta"
DECODE_STATS = f"{PACKAGE}/msg/DecodeStats"
# The ROS 2 wheels we build against are Kilted; the standard types we read and write (Image,
# CompressedImage, String, Header, Vector3) have the same definitions and hashes from Humble on.
STORE = Stores.ROS2_KILTED


def normalize_msgtype(msgtype: str) -> str:
    """'sensor_msgs/Image' (the name early rosbag2, ROS 1 and some tools store) -> 'sensor_msgs/msg/Image'."""
    package, slash, name = msgtype.partition("/")
    return f"{package}/msg/{name}" if slash and "/" not in name else msgtype


def message_dir() -> Path:
    """Where msg/*.msg live: the source checkout (pip -e, tests) or an installed share/specvla_ros/msg."""
    candidates = [Path(__file__).resolve().parents[2] / "msg"]
    prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p] + [sys.prefix]
    candidates += [Path(prefix) / "share" / PACKAGE / "msg" for prefix in prefixes]
    for folder in candidates:
        if (folder / "EndEffectorDelta.msg").is_file():
            return folder
    raise BagError(f"cannot find {PACKAGE}'s msg/*.msg files (looked in {', '.join(map(str, candidates))}); "
                   "run from the source checkout or source the workspace that installed the package")


def custom_types() -> dict:
    """rosbags type definitions of every msg/*.msg of this package."""
    types: dict = {}
    for path in sorted(message_dir().glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"{PACKAGE}/msg/{path.stem}"))
    return types


def default_typestore() -> Typestore:
    """A fresh typestore: standard ROS 2 types + this package's messages (cheap: ~0.1 s)."""
    store = get_typestore(STORE)
    store.register(custom_types())
    return store


def register_bag_definitions(store: Typestore, connections: list[Connection]) -> None:
    """Make `store` able to decode these connections, trusting the bag's own definitions for types it lacks.

    A type the store already knows must match the bag's type hash where the bag records one:
    decoding with another field layout would silently give garbage.
    """
    for connection in connections:
        msgtype, definition = normalize_msgtype(connection.msgtype), connection.msgdef
        if msgtype in store.types:
            digest = connection.digest or ""
            if digest.startswith("RIHS01_") and digest != store.hash_rihs01(msgtype):
                raise BagError(f"topic '{connection.topic}': the bag's {msgtype} differs from the definition this "
                               f"version of {PACKAGE} uses (type hash {digest}); it was recorded with another "
                               "version of the message: convert it or re-record")
            continue
        if definition.format == MessageDefinitionFormat.NONE:
            raise BagError(f"topic '{connection.topic}' has type {msgtype}, which this tool does not know and the "
                           "bag does not define")
        try:
            if definition.format == MessageDefinitionFormat.MSG:
                types = get_types_from_msg(definition.data, msgtype)
            else:
                types = {}
                for part in definition.data.split("=" * 80 + "\n"):
                    if part.strip():
                        types.update(get_types_from_idl(part.split("\n", 1)[1] if part.startswith("IDL: ") else part))
            store.register(types)
        except TypesysError as error:
            raise BagError(f"topic '{connection.topic}': the bag's definition of {msgtype} cannot be used "
                           f"({error})") from None
