"""Bag replay through a real specvla_node (rclpy, Fast DDS on loopback) with a real tiny VLA.

A generated bag played in lockstep must yield commands whose actions equal offline decoding of the
same frames, for exact (r = 0) and relaxed (r > 0) acceptance alike: the node adds transport, not
nondeterminism.
"""
from __future__ import annotations

import numpy as np
import pytest
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter

from specvla_ros.bags import bag_topics, read_messages, read_observations, write_observation_bag
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
