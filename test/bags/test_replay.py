"""Bag replay through a real specvla_node (rclpy, Fast DDS on loopback) with a real tiny VLA.

A generated bag played in lockstep must yield commands whose actions equal offline decoding of the
same frames, for exact (r = 0) and relaxed (r > 0) acceptance alike: the node adds transport, not
nondeterminism.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter

from specvla_ros.bags import BagError, bag_topics, read_messages, read_observations, write_observation_bag
from specvla_ros.cli import main
from specvla_ros.core.config import DecoderConfig
from specvla_ros.core.decoder import build_decoder
from specvla_ros.ros.bag_replay import BagReplayer, ReplayConfig, ReplayError
from specvla_ros.ros.node import SpecVLANode
from specvla_ros.ros.safety import SafetyLimits, clamp_action
from test.bags.conftest import PERIOD_NS, frames

COMMAND, STATS = "/specvla_node/command", "/specvla_node/decode_stats"
LIVE = dict(dry_run=False, start_enabled=True, control_rate_hz=50.0, action_timeout_s=5.0)


class Rig:
    """specvla_node (given decoder) and a BagReplayer on one executor, in a private context."""

    def __init__(self, context, decoder, config: ReplayConfig, **parameters) -> None:
        overrides = [Parameter(name, value=value) for name, value in parameters.items()]
        self.node = SpecVLANode(decoder=decoder, context=context, parameter_overrides=overrides)
        self.replayer = BagReplayer(config, context=context)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.executor.add_node(self.replayer)

    def run(self):
        try:
            return self.replayer.run(self.executor)
        finally:
            self.executor.shutdown()
            self.replayer.destroy_node()  # closes the output bag
            self.node.destroy_node()


def _stamp(msg) -> int:
    return msg.image_stamp.sec * 1_000_000_000 + msg.image_stamp.nanosec


def _first_by_stamp(bag, topic, keep=lambda msg: True) -> dict:
    first = {}
    for _, msg in read_messages(bag, {topic: None}):
        if keep(msg):
            first.setdefault(_stamp(msg), msg)
    return first


@pytest.mark.slow
@pytest.mark.parametrize("relax_bins, storage, wait_for", [(0, "sqlite3", "command"), (3, "mcap", "command"),
                                                            (3, "sqlite3", "stats")])
def test_lockstep_replay_matches_offline_decoding(ros_context, pair, tmp_path, relax_bins, storage, wait_for) -> None:
    target, head = pair
    written = frames(8, task_every=4)
    bag = write_observation_bag(tmp_path / "in", written, storage=storage)
    out = tmp_path / "out"
    config = ReplayConfig(bag=bag, lockstep=True, wait_for=wait_for, out=out, storage=storage, frame_timeout_s=20.0)
    node_decoder = build_decoder(target, head, DecoderConfig(relax_bins=relax_bins))
    summary = Rig(ros_context, node_decoder, config, **LIVE, **{"decoder.relax_bins": [relax_bins]}).run()
    assert (summary.frames_published, summary.frames_answered, summary.frames_unanswered) == (8, 8, 0)
    assert summary.tasks_published == 2 and summary.loops == 1

    topics = bag_topics(out)  # the output bag: what was played and what the node said
    assert set(topics) == {"/camera/image_raw", "/vla/instruction", COMMAND, STATS}
    assert (topics["/camera/image_raw"].count, topics["/vla/instruction"].count) == (8, 2)
    assert topics[STATS].count >= 8 and topics[COMMAND].count >= (8 if wait_for == "command" else 1)
    assert topics[COMMAND].msgtype == "specvla_ros/msg/EndEffectorDelta"
    assert [o.stamp_ns for o in read_observations(out)] == [stamp for stamp, _, _ in written]

    commands = _first_by_stamp(out, COMMAND, lambda msg: msg.source == 0)  # first model command per frame
    stats = _first_by_stamp(out, STATS)
    offline = build_decoder(target, head, DecoderConfig(relax_bins=relax_bins))  # a fresh decoder, same weights
    limits = SafetyLimits()
    for observation in read_observations(bag):
        expected = offline.decode(observation.image, observation.instruction)
        assert tuple(stats[observation.stamp_ns].token_ids) == expected.token_ids
        assert list(stats[observation.stamp_ns].relax_bins) == [relax_bins] * 7
        command = commands.get(observation.stamp_ns)
        if command is None:
            assert wait_for == "stats"  # lockstep on stats may move on before a control tick sent this frame's action
            continue
        assert tuple(command.token_bins) == expected.bins
        assert np.allclose(command.normalized_action, expected.normalized, atol=1e-6)
        clamped, _ = clamp_action(np.asarray(expected.action), limits)
        sent = [command.translation.x, command.translation.y, command.translation.z,
                command.rotation.x, command.rotation.y, command.rotation.z, command.gripper]
        assert np.allclose(sent, clamped, atol=1e-6)


def test_recorded_timing_with_rate_loop_and_remap(ros_context, pair, tmp_path) -> None:
    target, head = pair
    bag = write_observation_bag(tmp_path / "in", frames(5, task_every=5))
    config = ReplayConfig(bag=bag, rate=2.0, loops=2, remap={"/camera/image_raw": "/wrist/image_raw"},
                          out=tmp_path / "out", tail_s=20.0)  # the newest frame is always decoded: wait for it
    decoder = build_decoder(target, head, DecoderConfig())
    summary = Rig(ros_context, decoder, config, **{"topics.image": "/wrist/image_raw"}).run()  # dry_run: no commands
    assert (summary.frames_published, summary.tasks_published, summary.loops) == (10, 2, 2)
    assert summary.frames_answered >= 1  # recorded timing: the node may drop frames, never the last one

    topics = bag_topics(tmp_path / "out")
    assert topics["/wrist/image_raw"].count == 10 and "/camera/image_raw" not in topics
    assert topics[STATS].count >= 1 and topics[COMMAND].count == 0  # dry_run: subscribed, but no commands
    # Recorded timing at twice the speed: frames go out half a recorded period apart (the median is
    # robust to the odd late frame on a busy machine; as fast as possible would be ~1 ms).
    sent_ns = [m.time_ns for m, _ in read_messages(tmp_path / "out", {"/wrist/image_raw": None}, decode=False)]
    intervals_s = [(b - a) / 1e9 for loop in (sent_ns[:5], sent_ns[5:]) for a, b in zip(loop, loop[1:], strict=False)]
    assert 0.6 * PERIOD_NS / 2e9 <= float(np.median(intervals_s)) <= 1.6 * PERIOD_NS / 2e9, intervals_s


def test_lockstep_without_a_node_fails_clearly(ros_context, tmp_path) -> None:
    bag = write_observation_bag(tmp_path / "in", frames(2))
    replayer = BagReplayer(ReplayConfig(bag=bag, lockstep=True, discovery_timeout_s=0.5), context=ros_context)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(replayer)
    try:
        with pytest.raises(ReplayError, match="no node answers on /specvla_node/decode_stats.*start specvla_node"):
            replayer.run(executor)
    finally:
        executor.shutdown()
        replayer.destroy_node()


def test_cli_exit_codes_for_bad_bags(tmp_path, capsys) -> None:
    bag = write_observation_bag(tmp_path / "in", frames(2))
    assert main(["bag-replay", str(bag), "--camera-topic", "/wrist/image", "--lockstep"]) == 1
    assert "specvla bag-replay: " in (err := capsys.readouterr().err) and "has no camera topic '/wrist/image'" in err
    assert main(["bag-replay", str(bag), "--task-topic", "/camera/image_raw"]) == 1
    assert "unsupported message type" in capsys.readouterr().err
    (bag / "metadata.yaml").write_text("not: [yaml")
    assert main(["bag-replay", str(bag)]) == 1
    assert "not a readable rosbag2 bag" in capsys.readouterr().err
    assert main(["bag-replay", str(bag), "--remap", "/camera/image_raw"]) == 1
    assert "--remap takes FROM:=TO" in capsys.readouterr().err


# ----- issue 24: bags recorded by others, failures that say why, full-size frames -------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("shape", ["camera_only", "bare_db3"])
def test_camera_only_bag_replays_in_lockstep_with_the_task_given(ros_context, pair, tmp_path, shape) -> None:
    """A plain camera recording; and a lone 2019-style .db3 whose types carry old names ('sensor_msgs/Image')."""
    from test.bags import corpus

    target, head = pair
    bag = getattr(corpus, shape)(tmp_path, count=5)
    remap = {"/image": "/camera/image_raw"} if shape == "bare_db3" else {}  # that webcam published on /image
    config = ReplayConfig(bag=bag, task="push the blue cube to the left", lockstep=True, out=tmp_path / "out",
                          remap=remap, frame_timeout_s=20.0)
    summary = Rig(ros_context, build_decoder(target, head, DecoderConfig()), config, **LIVE).run()
    assert (summary.frames_published, summary.frames_answered, summary.frames_before_task) == (5, 5, 0)
    assert summary.tasks_published == 1 and summary.task_source == "given: 'push the blue cube to the left'"
    assert summary.camera_type == "sensor_msgs/msg/Image" and summary.hints == []
    stats = _first_by_stamp(tmp_path / "out", STATS)
    offline = build_decoder(target, head, DecoderConfig())
    for observation in read_observations(bag, task="push the blue cube to the left"):
        assert tuple(stats[observation.stamp_ns].token_ids) == offline.decode(observation.image,
                                                                              observation.instruction).token_ids
    assert {o.instruction for o in read_observations(tmp_path / "out")} == {"push the blue cube to the left"}


@pytest.mark.slow
def test_compressed_camera_is_named_when_the_node_listens_for_raw_frames(ros_context, pair, tmp_path) -> None:
    from test.bags import corpus

    target, head = pair
    bag = corpus.compressed_camera(tmp_path, count=4)
    config = ReplayConfig(bag=bag, lockstep=True, out=tmp_path / "out", discovery_timeout_s=1.5)
    rig = Rig(ros_context, build_decoder(target, head, DecoderConfig()), config, **LIVE)  # topics.image: raw
    with pytest.raises(ReplayError) as refused:
        rig.run()
    message = str(refused.value)
    assert "/specvla_node is running but does not receive this bag's camera /camera/image_raw/compressed, a " \
           "compressed camera (sensor_msgs/CompressedImage): start the node with -p " \
           "topics.compressed_image:=/camera/image_raw/compressed" in message
    assert "(it listens to /camera/image_raw (sensor_msgs/msg/Image))" in message
    assert not (tmp_path / "out").exists()  # a failed start leaves no empty bag behind to block the retry
    config = ReplayConfig(bag=bag, lockstep=True, out=tmp_path / "out", frame_timeout_s=20.0)
    summary = Rig(ros_context, build_decoder(target, head, DecoderConfig()), config,
                  **{**LIVE, "topics.compressed_image": "/camera/image_raw/compressed"}).run()
    assert (summary.frames_published, summary.frames_answered) == (4, 4)
    assert summary.camera_type == "sensor_msgs/msg/CompressedImage"


@pytest.mark.slow
def test_a_reliable_node_needs_a_reliable_player(ros_context, pair, tmp_path) -> None:
    target, head = pair
    bag = write_observation_bag(tmp_path / "in", frames(3, task_every=3))
    reliable_node = {**LIVE, "topics.image_qos": "reliable"}
    config = ReplayConfig(bag=bag, lockstep=True, discovery_timeout_s=1.5)
    with pytest.raises(ReplayError, match="it subscribes reliable and this player publishes best effort "
                                          "\\(incompatible\\); pass --image-qos reliable"):
        Rig(ros_context, build_decoder(target, head, DecoderConfig()), config, **reliable_node).run()
    config = ReplayConfig(bag=bag, lockstep=True, image_qos="reliable", frame_timeout_s=20.0)
    summary = Rig(ros_context, build_decoder(target, head, DecoderConfig()), config, **reliable_node).run()
    assert (summary.frames_answered, summary.image_qos, summary.node_camera_qos) == (
        3, "reliable (reliable, keep last 5)", "reliable")


@pytest.mark.slow
def test_frames_before_the_task_are_counted_as_the_node_saw_them(ros_context, pair, tmp_path) -> None:
    target, head = pair
    written = frames(4, task_every=4)
    bag = write_observation_bag(tmp_path / "in", written)
    # Recorded timing: the task (1 ms before the first frame) is acknowledged before that frame goes out.
    summary = Rig(ros_context, build_decoder(target, head, DecoderConfig()),
                  ReplayConfig(bag=bag, out=tmp_path / "out", tail_s=20.0)).run()
    assert summary.frames_before_task == 0
    assert written[0][0] in {_stamp(m) for _, m in read_messages(tmp_path / "out", {STATS: None})}  # not lost
    # The node listens to another task topic: no frame had a task at the node, and the summary says so.
    summary = Rig(ros_context, build_decoder(target, head, DecoderConfig()),
                  ReplayConfig(bag=bag, discovery_timeout_s=1.0, tail_s=0.5),
                  **{"topics.task": "/elsewhere"}).run()
    assert (summary.frames_published, summary.frames_before_task, summary.frames_answered) == (4, 4, 0)


def test_failed_replay_leaves_no_bag_and_overwrite_replaces_only_bags(ros_context, tmp_path, capsys) -> None:
    bag = write_observation_bag(tmp_path / "in", frames(2))
    out = tmp_path / "out"
    replayer = BagReplayer(ReplayConfig(bag=bag, lockstep=True, out=out, discovery_timeout_s=0.3),
                           context=ros_context)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(replayer)
    try:
        assert out.exists()  # created up front, so the node's outputs are captured from the start
        with pytest.raises(ReplayError, match="no node answers"):
            replayer.run(executor)
    finally:
        executor.shutdown()
        replayer.destroy_node()
    assert not out.exists()
    write_observation_bag(out, frames(1))
    with pytest.raises(BagError, match="exists already: choose a new --out, or --overwrite"):
        BagReplayer(ReplayConfig(bag=bag, out=out), context=ros_context)
    replayer = BagReplayer(ReplayConfig(bag=bag, out=out, overwrite=True), context=ros_context)
    replayer.destroy_node()
    assert {t.count for t in bag_topics(out).values()} == {0}  # the old bag (one frame) is gone; a new, empty one
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "todo.txt").write_text("keep me")
    assert main(["bag-replay", str(bag), "--out", str(folder), "--overwrite"]) == 1
    assert "holds more than a bag (todo.txt): refusing to overwrite it" in capsys.readouterr().err
    assert (folder / "todo.txt").exists()


@pytest.mark.slow
def test_only_ros_arguments_reach_rcl(tmp_path) -> None:
    import subprocess
    import sys

    bag = write_observation_bag(tmp_path / "in", frames(2))
    run = subprocess.run([sys.executable, "-m", "specvla_ros.cli", "bag-replay", str(bag), "--remap",
                          "/camera/image_raw:=/nowhere", "--rate", "20", "--discovery-timeout", "0.3",
                          "--ros-args", "-r", "__node:=my_player"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "deprecated" not in run.stderr  # rcl was not handed `/camera/image_raw:=/nowhere` (it warned before)
    assert "[my_player]: no node answers" in run.stderr  # ... but it was handed what follows --ros-args


def test_delivery_hint_names_the_transport_when_frames_are_large() -> None:
    from specvla_ros.ros.dds_profile import DdsSetup
    from specvla_ros.ros.replay_diagnosis import delivery_hint

    defaults = DdsSetup("rmw_fastrtps_cpp", None, False)
    ours = DdsSetup("rmw_fastrtps_cpp", Path("config/fastdds_large_images.xml"), True)
    large = delivery_hint(921_654, "sensor_data", "best effort", defaults, compressed=False)
    assert "frames of up to 922 kB went unanswered over best effort" in large
    assert "--image-qos reliable" in large and "specvla dds-profile" in large
    for hint in (delivery_hint(921_654, "sensor_data", "best effort", ours, False),
                 delivery_hint(921_654, "reliable", "reliable", defaults, False),
                 delivery_hint(30_000, "sensor_data", "best effort", defaults, False)):
        assert "read its /diagnostics" in hint


@pytest.mark.slow
def test_full_size_frames_replay_in_lockstep_from_another_process(ros_context, pair, tmp_path) -> None:
    """`bag-replay --lockstep` of 640x480 rgb8 frames waited 30 s per frame and exited 3: the frames never crossed
    Fast DDS. The player runs as the user runs it, in its own process, with the project's environment."""
    import json
    import subprocess
    import sys

    target, head = pair
    rng = np.random.default_rng(5)
    written = [(stamp, rng.integers(0, 256, (480, 640, 3), dtype=np.uint8), text) for stamp, _, text in frames(6)]
    bag = write_observation_bag(tmp_path / "in", written)
    node = SpecVLANode(decoder=build_decoder(target, head, DecoderConfig()), context=ros_context,
                       parameter_overrides=[Parameter(k, value=v) for k, v in LIVE.items()])
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    player = subprocess.Popen([sys.executable, "-m", "specvla_ros.cli", "bag-replay", str(bag), "--lockstep",
                               "--frame-timeout", "10"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while player.poll() is None:
            executor.spin_once(timeout_sec=0.01)
        out, err = player.communicate()
    finally:
        if player.poll() is None:
            player.kill()
        executor.shutdown()
        node.destroy_node()
    assert player.returncode == 0, err
    summary = json.loads(out)
    assert (summary["frames_published"], summary["frames_answered"], summary["frames_unanswered"]) == (6, 6, 0)
    assert summary["largest_frame_kb"] > 900 and summary["node_camera_qos"] == "best effort"
    assert "config/fastdds_large_images.xml (shared memory 32 MB" in summary["dds_transport"]
