"""Recording a live run (real node, real DDS on loopback) and a simulated one into rosbag2 bags."""
from __future__ import annotations

import time

import pytest
import yaml
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image
from std_msgs.msg import String

from specvla_ros.bags import BagError, BagWriter, bag_topics, read_messages, read_observations
from specvla_ros.cli import main
from specvla_ros.core.config import DecoderConfig
from specvla_ros.core.decoder import build_decoder
from specvla_ros.ros.bag_record import BagRecorder, message_class
from specvla_ros.ros.image_conversion import rgb_to_image
from specvla_ros.ros.node import SpecVLANode
from specvla_ros.ros.qos import TASK_QOS
from test.bags.conftest import frames

COMMAND, STATS = "/specvla_node/command", "/specvla_node/decode_stats"


def _spin_until(executor, done, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not done() and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.01)
    return done()


@pytest.mark.slow
def test_recorder_adapts_qos_and_records_a_live_run(ros_context, pair, tmp_path) -> None:
    target, head = pair
    overrides = [Parameter(k, value=v) for k, v in
                 dict(dry_run=False, start_enabled=True, control_rate_hz=20.0, action_timeout_s=5.0).items()]
    node = SpecVLANode(decoder=build_decoder(target, head, DecoderConfig()), context=ros_context,
                       parameter_overrides=overrides)
    camera = Node("camera", context=ros_context)
    image_pub = camera.create_publisher(Image, "/camera/image_raw", qos_profile_sensor_data)
    task_pub = camera.create_publisher(String, "/vla/instruction", TASK_QOS)
    task_pub.publish(String(data="pick up the red cube"))  # before the recorder exists: latched
    writer = BagWriter(tmp_path / "bag", storage="mcap")
    recorder = BagRecorder(writer, context=ros_context)
    executor = SingleThreadedExecutor(context=ros_context)
    for ros_node in (node, camera, recorder):
        executor.add_node(ros_node)
    try:
        assert _spin_until(executor, lambda: not recorder.capture.waiting_for, 10.0), recorder.capture.waiting_for
        _spin_until(executor, lambda: False, 0.3)  # the new subscriptions match their publishers
        sent = []
        for stamp_ns, rgb, _ in frames(6):
            image = rgb_to_image(rgb)
            image.header.stamp.sec, image.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
            image_pub.publish(image)
            sent.append(stamp_ns)
            _spin_until(executor, lambda: False, 0.1)
        _spin_until(executor, lambda: writer.counts[STATS] >= 1 and writer.counts[COMMAND] >= 1, 10.0)
    finally:
        executor.shutdown()
        for ros_node in (recorder, camera, node):
            ros_node.destroy_node()
        writer.close()

    topics = bag_topics(tmp_path / "bag")
    assert set(topics) == {"/camera/image_raw", "/vla/instruction", COMMAND, STATS}
    assert topics["/camera/image_raw"].count == 6 and topics["/vla/instruction"].count == 1
    assert topics[COMMAND].count >= 1 and topics[STATS].count >= 1
    assert [o.stamp_ns for o in read_observations(tmp_path / "bag")] == sent
    assert all(msg.source in (0, 1) for _, msg in read_messages(tmp_path / "bag", {COMMAND: None}))
    metadata = yaml.safe_load((tmp_path / "bag" / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    offered = {t["topic_metadata"]["name"]: yaml.safe_load(t["topic_metadata"]["offered_qos_profiles"])[0]
               for t in metadata["topics_with_message_count"]}
    assert offered["/vla/instruction"]["durability"] == 1     # transient local: `ros2 bag play` re-latches it
    assert offered["/camera/image_raw"]["reliability"] == 2   # best effort, as the camera published
    assert offered[COMMAND]["reliability"] == 1


def test_unknown_message_packages_are_refused_clearly() -> None:
    with pytest.raises(BagError, match="my_robot_msgs/msg/Gripper is not supported here.*'my_robot_msgs' is not "
                                       "installed"):
        message_class("my_robot_msgs/msg/Gripper")
    assert message_class("sensor_msgs/msg/CompressedImage").__name__ == "CompressedImage"


@pytest.mark.slow
def test_bag_record_sim_records_a_closed_loop_run(checkpoints, tmp_path, capsys) -> None:
    target, draft = checkpoints
    out = tmp_path / "sim_bag"
    code = main(["bag-record", "--sim", "--tasks", "pick", "--max-steps", "3", "--model", str(target),
                 "--draft", str(draft), "--relax-bins", "2", "--out", str(out), "--storage", "mcap"])
    assert code == 0, capsys.readouterr().err
    topics = bag_topics(out)
    assert set(topics) == {"/camera/image_raw", "/vla/instruction", COMMAND, STATS}
    assert topics["/camera/image_raw"].count >= 3 and topics["/vla/instruction"].count >= 1
    assert topics[STATS].count >= 3
    stats = [msg for _, msg in read_messages(out, {STATS: None})]
    assert all(list(s.relax_bins) == [2] * 7 and s.mode == "speculative" for s in stats)
    observations = read_observations(out)
    read = list(observations)
    # The bridge publishes the task, then the frame; on two topics the frame may still arrive first.
    assert len(read) + observations.skipped_before_task == topics["/camera/image_raw"].count
    assert read and read[0].image.shape == (224, 224, 3) and read[0].instruction.startswith("pick")
    assert "/camera/image_raw: " in capsys.readouterr().out
    assert main(["bag-record", "--out", str(out)]) == 1  # never overwrites
    assert "exists already" in capsys.readouterr().err


def test_cli_task_list_matches_the_simulator() -> None:
    from specvla_ros.cli.arguments import SIM_TASKS
    from specvla_ros.sim.tasks import TASKS

    assert tuple(SIM_TASKS) == tuple(TASKS)


@pytest.mark.slow
def test_recording_a_camera_with_the_task_given_makes_a_bag_the_tools_use(tmp_path, capsys) -> None:
    """`ros2 bag record` of a camera has no task; `bag-record --task` writes it in, latched, at the start."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    out = tmp_path / "camera_bag"
    camera = subprocess.Popen([sys.executable, "-m", "test.ros.camera_process", "--width", "640", "--height", "480",
                               "--frames", "15"], cwd=Path(__file__).resolve().parents[2],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        code = main(["bag-record", "--out", str(out), "--topics", "/camera/image_raw", "/vla/instruction",
                     "--task", "pick up the red cube", "--duration", "6", "--storage", "mcap"])
        sent, _ = camera.communicate(timeout=30)
    finally:
        if camera.poll() is None:
            camera.kill()
    assert code == 0
    printed = capsys.readouterr()
    assert "/vla/instruction: 1 messages (given with --task)" in printed.out
    stamps = [o.stamp_ns for o in read_observations(out)]  # no task= needed: the bag holds it
    assert stamps and set(stamps) <= set(json.loads(sent)["stamps"])
    assert {o.instruction for o in read_observations(out)} == {"pick up the red cube"}
    assert len(stamps) >= 12  # 640x480 frames crossed from the camera's process (the shared-memory profile)
    metadata = yaml.safe_load((out / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    task_qos = [yaml.safe_load(t["topic_metadata"]["offered_qos_profiles"])[0]
                for t in metadata["topics_with_message_count"] if t["topic_metadata"]["name"] == "/vla/instruction"]
    assert task_qos[0]["durability"] == 1  # transient local: `ros2 bag play` re-latches it
    assert main(["bag-record", "--out", str(out), "--duration", "0.2"]) == 1
    assert "exists already: choose a new --out, or --overwrite" in capsys.readouterr().err
    assert main(["bag-record", "--out", str(out), "--duration", "0.2", "--overwrite", "--topics", "/nothing"]) == 0
    assert bag_topics(out) == {}
    assert main(["bag-record", "--sim", "--task", "pick", "--out", str(tmp_path / "x")]) == 1
    assert "not with --sim" in capsys.readouterr().err
