"""specvla_ros.bags: writing and reading rosbag2 bags (sqlite3 and MCAP) without ROS, and the errors."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import yaml

from specvla_ros.bags import (
    COMPRESSED_IMAGE,
    END_EFFECTOR_DELTA,
    IMAGE,
    STRING,
    BagError,
    BagWriter,
    bag_topics,
    image_message,
    read_messages,
    read_observations,
    string_message,
    write_observation_bag,
)
from test.bags.conftest import T0_NS, frames


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_observations_round_trip(tmp_path, storage) -> None:
    written = frames(8)
    bag = write_observation_bag(tmp_path / "bag", written, storage=storage)
    assert {name: (t.msgtype, t.count) for name, t in bag_topics(bag).items()} == {
        "/camera/image_raw": (IMAGE, 8), "/vla/instruction": (STRING, 2)}
    metadata = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert metadata["version"] == 8 and metadata["storage_identifier"] == storage

    observations = read_observations(bag)
    for _ in range(2):  # re-iterable
        read = list(observations)
        assert [o.stamp_ns for o in read] == [stamp for stamp, _, _ in written]
        assert [o.instruction for o in read] == [text for _, _, text in written]
        for observation, (_, image, _) in zip(read, written, strict=True):
            assert observation.image.dtype == np.uint8 and np.array_equal(observation.image, image)
    stamp, image, text = read[0]  # unpacks as the plain (stamp_ns, image, instruction) triple
    assert stamp == T0_NS and image.flags.writeable and text == written[0][2]
    assert observations.skipped_before_task == 0


def test_frames_pair_with_the_latest_task_and_early_frames_are_skipped(tmp_path) -> None:
    rgb = np.zeros((4, 6, 3), dtype=np.uint8)
    with BagWriter(tmp_path / "bag") as writer:
        writer.add_topic("/cam", IMAGE)
        writer.add_topic("/task", STRING)
        events = [("/cam", 1), ("/cam", 2), ("/task", "pick up the red cube"), ("/cam", 3), ("/task", "  "),
                  ("/cam", 4), ("/task", "push the blue cube"), ("/cam", 5), ("/cam", 6)]
        for time_ns, (topic, value) in enumerate(events, start=1):
            if topic == "/cam":
                writer.write(topic, time_ns, image_message(writer.store, rgb + value, stamp_ns=0))
            else:
                writer.write(topic, time_ns, string_message(writer.store, value))
    observations = read_observations(tmp_path / "bag", "/cam", "/task")
    read = list(observations)
    assert [(int(o.image[0, 0, 0]), o.instruction) for o in read] == [
        (3, "pick up the red cube"), (5, "push the blue cube"), (6, "push the blue cube")]
    assert [o.stamp_ns for o in read] == [4, 8, 9]  # no header stamp: bag time instead
    assert observations.skipped_before_task == 3     # two before any task, one after an empty task


@pytest.mark.parametrize("camera_type, encoding, exact", [
    (IMAGE, "bgr8", True), (COMPRESSED_IMAGE, "png", True), (COMPRESSED_IMAGE, "jpeg", False)])
def test_camera_encodings(tmp_path, camera_type, encoding, exact) -> None:
    y, x = np.mgrid[0:24, 0:40]
    smooth = np.stack([6 * x, 10 * y, 255 - 6 * x], axis=-1).astype(np.uint8)  # a camera-like, JPEG-friendly frame
    written = [(stamp, smooth if i == 0 else image, text) for i, (stamp, image, text) in enumerate(frames(2))]
    bag = write_observation_bag(tmp_path / "bag", written, storage="mcap", camera_type=camera_type, encoding=encoding)
    for observation, (_, image, _) in zip(read_observations(bag), written, strict=True):
        assert observation.image.shape == image.shape
        error = np.abs(observation.image.astype(int) - image).mean()
        assert error == 0 if exact else (error < 8 if image is smooth else error < 60)  # noise: JPEG's worst case


def test_mono8_and_unsupported_encodings(tmp_path) -> None:
    with BagWriter(tmp_path / "bag") as writer:
        writer.add_topic("/vla/instruction", STRING)
        writer.add_topic("/camera/image_raw", IMAGE)
        writer.write("/vla/instruction", 1, string_message(writer.store, "pick"))
        gray = np.arange(12, dtype=np.uint8)
        for time_ns, (encoding, step, data) in enumerate([("mono8", 4, gray), ("16UC1", 8, np.zeros(24, np.uint8))],
                                                         start=2):
            message = writer.store.types[IMAGE](header=writer.store.types["std_msgs/msg/Header"](
                stamp=writer.store.types["builtin_interfaces/msg/Time"](sec=0, nanosec=0), frame_id=""),
                height=3, width=4, encoding=encoding, is_bigendian=0, step=step, data=data)
            writer.write("/camera/image_raw", time_ns, message)
    read = iter(read_observations(tmp_path / "bag"))
    first = next(read)
    assert first.image.shape == (3, 4, 3) and np.array_equal(first.image[..., 1], gray.reshape(3, 4))
    with pytest.raises(BagError, match="'16UC1' is not a colour image.*depth"):
        next(read)


def test_custom_messages_keep_rclpy_bytes_and_definitions(tmp_path) -> None:
    from rclpy.serialization import serialize_message
    from specvla_ros.msg import EndEffectorDelta

    msg = EndEffectorDelta(source=EndEffectorDelta.SOURCE_MODEL, gripper=0.25, clamped=True)
    msg.translation.x, msg.rotation.z = 0.01, -0.2
    msg.token_bins = np.arange(7, dtype=np.int16) + 100
    msg.image_stamp.sec, msg.image_stamp.nanosec = 12, 34
    raw = serialize_message(msg)  # (its padding bytes differ from call to call)
    with BagWriter(tmp_path / "bag", storage="mcap") as writer:
        writer.add_topic("/specvla_node/command", END_EFFECTOR_DELTA)
        writer.write_raw("/specvla_node/command", 5, raw)
    ((message, decoded),) = list(read_messages(tmp_path / "bag", {"/specvla_node/command": None}))
    assert message.msgtype == END_EFFECTOR_DELTA and message.raw == raw
    assert (decoded.source, decoded.gripper, decoded.clamped) == (0, 0.25, True)
    assert decoded.translation.x == 0.01 and decoded.rotation.z == -0.2
    assert decoded.token_bins.tolist() == list(range(100, 107))
    assert (decoded.image_stamp.sec, decoded.image_stamp.nanosec) == (12, 34)
    topic = yaml.safe_load((tmp_path / "bag" / "metadata.yaml").read_text())[
        "rosbag2_bagfile_information"]["topics_with_message_count"][0]["topic_metadata"]
    # The type hash rosidl generated for our message (what `ros2 bag` and rclpy compare against).
    assert topic["type_description_hash"] == "RIHS01_4a2889d54d72e71056edec21ba10dc0686ba4c1067085f6aa7cf354f90884efa"


def test_the_bag_package_imports_without_ros_or_torch() -> None:
    code = ("import sys, specvla_ros.bags; bad = [m for m in ('rclpy', 'torch') if m in sys.modules]; "
            "sys.exit(f'imported {bad}' if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


# ----- errors ------------------------------------------------------------------------------------
@pytest.fixture
def good_bag(tmp_path):
    return write_observation_bag(tmp_path / "good", frames(4), storage="sqlite3")


def test_missing_bag_and_missing_topic(tmp_path, good_bag) -> None:
    with pytest.raises(BagError, match="no bag at .*nowhere"):
        read_observations(tmp_path / "nowhere")
    with pytest.raises(BagError, match=r"no camera topic '/wrist/image'.*/camera/image_raw \(sensor_msgs/msg/Image"):
        read_observations(good_bag, camera_topic="/wrist/image")
    with pytest.raises(BagError, match="has no task topic '/task'"):
        read_observations(good_bag, task_topic="/task")


def test_unsupported_message_types(good_bag) -> None:
    with pytest.raises(BagError, match="camera topic '/vla/instruction' holds std_msgs/msg/String, an unsupported "
                                       "message type; supported: sensor_msgs/msg/Image"):
        read_observations(good_bag, camera_topic="/vla/instruction")
    with pytest.raises(BagError, match="task topic '/camera/image_raw' holds sensor_msgs/msg/Image"):
        read_observations(good_bag, task_topic="/camera/image_raw")


@pytest.mark.parametrize("storage, damage", [
    ("sqlite3", "truncate"), ("sqlite3", "garbage"), ("mcap", "truncate"), ("mcap", "garbage"), ("mcap", "metadata")])
def test_corrupt_bags(tmp_path, storage, damage) -> None:
    bag = write_observation_bag(tmp_path / "bag", frames(4), storage=storage)
    data_file = next(p for p in bag.iterdir() if p.suffix in (".db3", ".mcap"))
    data = data_file.read_bytes()
    if damage == "truncate":
        data_file.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        data_file.write_bytes(b"\x13" * len(data))
    else:
        (bag / "metadata.yaml").write_text("rosbag2_bagfile_information: [")
    with pytest.raises(BagError, match="not a readable rosbag2 bag|is corrupt"):
        list(read_observations(bag))


def test_storage_holding_fewer_messages_than_its_metadata_is_reported(tmp_path) -> None:
    bag = write_observation_bag(tmp_path / "bag", frames(4), storage="mcap")
    data_file = next(bag.glob("*.mcap"))
    data = bytearray(data_file.read_bytes())
    data[200:1200] = bytes(1000)  # zero part of the data: the reader finds no messages, without raising
    data_file.write_bytes(bytes(data))
    with pytest.raises(BagError, match="corrupt or truncated.*/camera/image_raw: 0 of 4"):
        list(read_observations(bag))


def test_writer_refuses_existing_paths_and_unknown_types(tmp_path, good_bag) -> None:
    with pytest.raises(BagError, match="exists already"):
        BagWriter(good_bag)
    with pytest.raises(BagError, match="unknown bag storage 'rosbag1'"):
        BagWriter(tmp_path / "new", storage="rosbag1")
    with BagWriter(tmp_path / "other") as writer, pytest.raises(BagError, match="unknown to the bag writer"):
        writer.add_topic("/x", "my_msgs/msg/Missing")
