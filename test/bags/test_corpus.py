"""read_observations on bags in the shapes others record (test/bags/corpus.py): each works, or says why not."""
from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from specvla_ros.bags import BagError, bag_topics, read_messages, read_observations
from test.bags import corpus
from test.bags.conftest import frames


def _images(count: int) -> list[np.ndarray]:
    return [image for _, image, _ in frames(count)]


def test_old_metadata_version_4_bag(tmp_path) -> None:
    observations = list(read_observations(corpus.old_metadata(tmp_path)))
    assert [o.instruction for o in observations] == [corpus.TASK] * 4
    assert all(np.array_equal(o.image, image) for o, image in zip(observations, _images(4), strict=True))


def test_bare_2019_db3_with_old_type_names_and_no_task(tmp_path) -> None:
    path = corpus.bare_db3(tmp_path)
    assert not (tmp_path / "metadata.yaml").exists()
    assert bag_topics(path)["/image"].msgtype == "sensor_msgs/msg/Image"  # stored as 'sensor_msgs/Image'
    with pytest.raises(BagError, match="has no task topic '/vla/instruction'.*--task \"pick up the red cube\""):
        read_observations(path)
    observations = read_observations(path, task="Pick up the red cube ")
    read = list(observations)
    assert observations.camera_topic == "/image" and "(the only image topic)" in observations.camera_note
    assert [o.instruction for o in read] == ["Pick up the red cube"] * 3 and observations.skipped_before_task == 0
    assert all(np.array_equal(o.image, image) for o, image in zip(read, _images(3), strict=True))  # bgr8 -> RGB
    ((message, decoded), *_) = read_messages(path, {"/image": None})
    assert message.msgtype == "sensor_msgs/msg/Image" and decoded.encoding == "bgr8"


def test_a_bag_folder_that_lost_its_metadata_reads_its_one_storage_file(tmp_path) -> None:
    bag = corpus.mcap_zstd(tmp_path)
    (bag / "metadata.yaml").unlink()
    assert len(list(read_observations(bag))) == 6


def test_mcap_with_zstd_chunks(tmp_path) -> None:
    bag = corpus.mcap_zstd(tmp_path)
    assert b"zstd" in next(bag.glob("*.mcap")).read_bytes()  # the chunks really are compressed
    read = list(read_observations(bag))
    assert all(np.array_equal(o.image, image) for o, image in zip(read, _images(6), strict=True))


def test_compressed_camera_is_found_by_itself(tmp_path) -> None:
    observations = read_observations(corpus.compressed_camera(tmp_path))
    assert observations.camera_topic == "/camera/image_raw/compressed"
    assert observations.camera_type == "sensor_msgs/msg/CompressedImage" and len(list(observations)) == 6


@pytest.mark.parametrize("how, reason", [
    ("raw", "'16UC1' is not a colour image"),
    ("compressedDepth", "format '16UC1; compressedDepth png' is a compressedDepth depth stream"),
    ("png", "format 'png' decodes to a 16-bit single-channel image"),
])
def test_depth_only_bags_are_refused_with_the_reason(tmp_path, how, reason) -> None:
    bag = corpus.depth_only(tmp_path, how)
    with pytest.raises(BagError, match=f"its only image topic .* cannot drive the model: {re.escape(reason)}") as auto:
        read_observations(bag)
    assert "depth cannot drive a VLA" in str(auto.value)
    topic = next(iter(t for t in bag_topics(bag) if "depth" in t))
    with pytest.raises(BagError, match=f"camera topic '{topic}' cannot drive the model: {re.escape(reason)}"):
        read_observations(bag, camera_topic=topic, task="pick")  # named, or with a task: refused all the same


def test_rgbd_bag_uses_its_colour_camera_and_two_cameras_are_listed(tmp_path) -> None:
    observations = read_observations(corpus.multi_topic(tmp_path))
    assert observations.camera_topic == "/camera/color/image_raw"
    assert "the only colour image topic; 2 other image topics" in observations.camera_note
    assert len(list(observations)) == 5
    two = corpus.multi_topic(tmp_path, second_colour_camera=True)
    with pytest.raises(BagError, match="has 2 colour image topics: name one with --camera-topic") as listed:
        read_observations(two)
    for line in ("/camera/color/image_raw (Image, rgb8 40x24, 5 frames)",
                 "/camera/depth/image_rect_raw (Image, 16UC1 40x24, 5 frames: not colour)",
                 "/camera/depth/image_rect_raw/compressedDepth (CompressedImage, 16UC1; compressedDepth png, 5 frames: "
                 "not colour)", "/wrist/image_raw/compressed (CompressedImage, jpeg, 5 frames)"):
        assert line in str(listed.value)
    wrist = read_observations(two, camera_topic="/wrist/image_raw/compressed")
    assert [o.image.shape for o in wrist] == [(24, 40, 3)] * 5


def test_camera_only_bag_needs_a_task_and_a_given_task_wins_over_the_bags(tmp_path) -> None:
    bag = corpus.camera_only(tmp_path)
    with pytest.raises(BagError, match="no task topic.*or give the task itself: --task"):
        read_observations(bag)
    assert [o.instruction for o in read_observations(bag, task="push the blue cube")] == ["push the blue cube"] * 6
    with_task = corpus.camera_and_task(tmp_path)
    assert {o.instruction for o in read_observations(with_task)} == {corpus.TASK}  # the bag's own task
    assert {o.instruction for o in read_observations(with_task, task="place it")} == {"place it"}
    with pytest.raises(BagError, match="the task given is empty"):
        read_observations(bag, task="  ")


def test_no_camera_at_all(tmp_path) -> None:
    from specvla_ros.bags import STRING, BagWriter, string_message

    with BagWriter(tmp_path / "bag") as writer:
        writer.add_topic("/vla/instruction", STRING)
        writer.write("/vla/instruction", 1, string_message(writer.store, "pick"))
    with pytest.raises(BagError, match="has no camera: no sensor_msgs/msg/Image or CompressedImage topic.*"
                                       "/vla/instruction"):
        read_observations(tmp_path / "bag")


def test_ros1_bag_gets_the_one_command_that_converts_it_and_that_command_works(tmp_path) -> None:
    bag = corpus.ros1_bag(tmp_path)
    with pytest.raises(BagError, match="is a ROS 1 bag; convert it once, then use the result: rosbags-convert") \
            as refused:
        read_observations(bag)
    command = shlex.split(str(refused.value).rsplit(": ", 1)[1])
    command[0] = str(Path(sys.executable).parent / command[0])  # the venv's rosbags-convert
    subprocess.run(command, check=True, capture_output=True)
    converted = read_observations(tmp_path / "noetic_ros2")
    read = list(converted)
    assert [o.instruction for o in read] == [corpus.TASK] * 3
    assert all(np.array_equal(o.image, image) for o, image in zip(read, _images(3), strict=True))
    assert [o.stamp_ns for o in read] == [stamp for stamp, _, _ in frames(3)]


def test_bad_frames_stop_the_read_or_are_skipped_and_listed(tmp_path) -> None:
    from specvla_ros.bags import IMAGE, STRING, BagWriter, image_message, string_message

    written = frames(5)
    with BagWriter(tmp_path / "bag") as writer:
        writer.add_topic("/vla/instruction", STRING)
        writer.add_topic("/camera/image_raw", IMAGE)
        writer.write("/vla/instruction", 1, string_message(writer.store, "pick"))
        for index, (stamp, image, _) in enumerate(written):
            message = image_message(writer.store, image, stamp)
            if index in (1, 3):  # a truncated frame and a depth frame in the middle of a colour stream
                message = type(message)(header=message.header, height=message.height, width=message.width,
                                        encoding="16UC1" if index == 3 else "rgb8", is_bigendian=0,
                                        step=message.step, data=message.data[:-7])
            writer.write("/camera/image_raw", stamp, message)
    with pytest.raises(BagError, match="camera frame 1 .* needs step.*--skip-bad-frames"):
        list(read_observations(tmp_path / "bag"))
    observations = read_observations(tmp_path / "bag", skip_bad_frames=True)
    assert [o.stamp_ns for o in observations] == [written[i][0] for i in (0, 2, 4)]
    assert [(b.index, b.time_ns) for b in observations.bad_frames] == [(1, written[1][0]), (3, written[3][0])]
    assert "needs step" in observations.bad_frames[0].reason
    assert "not a colour image" in observations.bad_frames[1].reason
