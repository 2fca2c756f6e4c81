"""Play a bag's camera + task topics into a running specvla_node and capture what it publishes.

Two clocks:
- recorded timing (`rate`, default 1.0 = as recorded): the node meets the data as it did live,
  dropping frames when it is slower than the camera;
- lockstep ("as fast as the node consumes"): each frame waits for the node's answer to *that*
  frame (DecodeStats, or with `wait_for="command"` the first model command, matched by
  image_stamp) before the next is sent, so every frame is decoded exactly once and the results
  can be compared frame by frame with offline decoding. After a task message lockstep pauses
  `task_settle_s` so the node holds the new task before the next frame arrives (two topics have
  no common order).

The output bag holds the inputs as published plus the node's outputs (command, decode stats),
stamped on arrival; it is itself replayable.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import rclpy
from rclpy.executors import Executor, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.serialization import deserialize_message

from specvla_ros.bags import CAMERA_QOS, TASK_QOS, BagError, BagWriter, TopicQos
from specvla_ros.bags.reader import CAMERA_TYPES, TASK_TYPES, check_topic, open_bag, read_messages
from specvla_ros.core.errors import SpecVLAError
from specvla_ros.ros.bag_record import BagCapture, KnownTopic, absolute, message_class, msgtype_name

# As specvla_node's subscriptions (node.py; not imported: it would load torch into a player).
NODE_TASK_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                           durability=DurabilityPolicy.TRANSIENT_LOCAL)
OUTPUT_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)


class ReplayError(SpecVLAError):
    """The replay cannot run: nobody listens, or the node never answers."""


@dataclass
class ReplayConfig:
    bag: Path
    camera_topic: str = "/camera/image_raw"
    task_topic: str = "/vla/instruction"
    remap: dict[str, str] = field(default_factory=dict)  # bag topic -> published topic
    rate: float = 1.0                  # recorded timing x rate (ignored in lockstep)
    lockstep: bool = False
    wait_for: str = "stats"            # lockstep answer: "stats" (DecodeStats) or "command" (first model command)
    node: str = "/specvla_node"        # whose ~/command and ~/decode_stats are waited for and captured
    loops: int = 1                     # 0 = until interrupted
    out: Path | None = None            # output bag (inputs as published + node outputs)
    storage: str = "sqlite3"
    frame_timeout_s: float = 30.0      # lockstep: give up on a frame's answer after this
    discovery_timeout_s: float = 10.0  # wait this long for the node's subscriptions
    task_settle_s: float = 0.3         # lockstep: pause after a task message
    tail_s: float = 2.0                # recorded timing: wait this long for the last frame's answer

    def __post_init__(self) -> None:
        if not self.rate > 0:
            raise ReplayError(f"rate must be > 0 (1.0 = recorded timing), got {self.rate}")
        if self.wait_for not in ("stats", "command"):
            raise ReplayError(f"wait_for must be 'stats' or 'command', got '{self.wait_for}'")
        if self.loops < 0:
            raise ReplayError(f"loops must be >= 0 (0 = forever), got {self.loops}")

    @property
    def answer_topic(self) -> str:
        return f"{self.node.rstrip('/')}/{'decode_stats' if self.wait_for == 'stats' else 'command'}"

    @property
    def output_topics(self) -> tuple[str, str]:
        return f"{self.node.rstrip('/')}/command", f"{self.node.rstrip('/')}/decode_stats"


@dataclass
class ReplaySummary:
    frames_published: int = 0
    tasks_published: int = 0
    frames_before_task: int = 0       # published before any task: the node cannot answer them
    frames_answered: int = 0          # distinct frames the node answered (by image stamp)
    frames_unanswered: int = 0        # lockstep: timed out
    loops: int = 0
    wall_s: float = 0.0
    answer_ms_p50: float | None = None  # publish -> answer
    answer_ms_p95: float | None = None
    captured: dict[str, int] = field(default_factory=dict)
    out: str | None = None
    interrupted: bool = False         # Ctrl-C: what was played so far is in the output bag


def _stamp_ns(stamp) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


class BagReplayer(Node):
    """Publishes a bag's camera + task messages; `run(executor)` plays it and returns a ReplaySummary."""

    def __init__(self, config: ReplayConfig, **node_kwargs) -> None:
        with open_bag(config.bag) as reader:  # a bad bag fails before any ROS entity exists
            camera_type = check_topic(reader, config.bag, config.camera_topic, CAMERA_TYPES, "camera")
            check_topic(reader, config.bag, config.task_topic, TASK_TYPES, "task")
        super().__init__("specvla_bag_replay", **node_kwargs)
        self.config = config
        self.writer: BagWriter | None = None
        self._classes = {config.camera_topic: message_class(camera_type),
                         config.task_topic: message_class("std_msgs/msg/String")}
        self._published_as = {t: absolute(config.remap.get(t, t)) for t in self._classes}
        self._camera_pub = self.create_publisher(self._classes[config.camera_topic],
                                                 self._published_as[config.camera_topic], qos_profile_sensor_data)
        self._task_pub = self.create_publisher(self._classes[config.task_topic],
                                               self._published_as[config.task_topic], NODE_TASK_QOS)
        answer_class = message_class("specvla_ros/msg/DecodeStats" if config.wait_for == "stats"
                                     else "specvla_ros/msg/EndEffectorDelta")
        self.create_subscription(answer_class, config.answer_topic, self._on_answer, OUTPUT_QOS)
        self._sent_s: dict[int, float] = {}     # frame stamp -> monotonic publish time
        self._answered: dict[int, float] = {}   # frame stamp -> answer latency (s)
        self.capture: BagCapture | None = None
        if config.out is not None:
            self.writer = BagWriter(config.out, config.storage)
            for topic in self._classes:
                self.writer.add_topic(self._published_as[topic], msgtype_name(self._classes[topic]),
                                      CAMERA_QOS if topic == config.camera_topic else TASK_QOS)
            command, stats = config.output_topics
            known = {command: KnownTopic(message_class("specvla_ros/msg/EndEffectorDelta"), OUTPUT_QOS, TopicQos()),
                     stats: KnownTopic(message_class("specvla_ros/msg/DecodeStats"), OUTPUT_QOS, TopicQos())}
            self.capture = BagCapture(self, self.writer, list(known), known)

    # ----- answers ----------------------------------------------------------------------------
    def _on_answer(self, msg) -> None:
        if self.config.wait_for == "command" and msg.source != msg.SOURCE_MODEL:
            return
        stamp = _stamp_ns(msg.image_stamp)
        sent = self._sent_s.get(stamp)
        if sent is not None and stamp not in self._answered:
            self._answered[stamp] = time.monotonic() - sent

    # ----- playing ----------------------------------------------------------------------------
    def run(self, executor: Executor) -> ReplaySummary:
        """Play the bag `loops` times, spinning `executor` (which must hold this node) in between.

        Ctrl-C ends the playing early; the summary then says `interrupted`."""
        config = self.config
        summary = ReplaySummary(out=str(config.out) if config.out else None)
        started = time.monotonic()
        try:
            self._wait_for_node(executor)
            loop = 0
            while config.loops == 0 or loop < config.loops:
                self._play_once(executor, summary)
                loop += 1
                summary.loops = loop
            if not config.lockstep and self.count_publishers(config.answer_topic) and self._sent_s:
                last = max(self._sent_s, key=self._sent_s.get)
                self._spin_until(executor, lambda: last in self._answered, config.tail_s)
            else:
                self._spin_until(executor, lambda: False, 0.2)  # let the last outputs reach the capture
        except KeyboardInterrupt:
            summary.interrupted = True
        finally:
            summary.wall_s = round(time.monotonic() - started, 3)
            summary.frames_answered = len(self._answered)
            if self._answered:
                latencies = 1000.0 * np.array(list(self._answered.values()))
                summary.answer_ms_p50 = round(float(np.percentile(latencies, 50)), 2)
                summary.answer_ms_p95 = round(float(np.percentile(latencies, 95)), 2)
            if self.writer is not None:
                summary.captured = dict(self.writer.counts)
        return summary

    def close(self) -> None:
        """Finish the output bag (safe to call twice)."""
        if self.writer is not None:
            self.writer.close()

    def destroy_node(self) -> None:
        self.close()
        super().destroy_node()

    def _wait_for_node(self, executor: Executor) -> None:
        config = self.config
        camera = self._published_as[config.camera_topic]
        found = self._spin_until(executor, lambda: self._camera_pub.get_subscription_count() > 0
                                 and (not config.lockstep or self.count_publishers(config.answer_topic) > 0),
                                 config.discovery_timeout_s)
        if not found and config.lockstep:
            raise ReplayError(f"no node answers on {config.answer_topic} or listens on {camera} after "
                              f"{config.discovery_timeout_s:g} s: start specvla_node first (same ROS_DOMAIN_ID; "
                              "--node if it has another name; --remap if it listens elsewhere)")
        if not found:
            self.get_logger().warning(f"nobody subscribes to {camera} yet; playing anyway")
        self._spin_until(executor, lambda: False, 0.2)  # discovery of the capture subscriptions settles

    def _play_once(self, executor: Executor, summary: ReplaySummary) -> None:
        config = self.config
        topics = {config.camera_topic: CAMERA_TYPES, config.task_topic: TASK_TYPES}
        loop_start, first_ns = 0.0, None
        task = ""
        for message, _ in read_messages(config.bag, topics, decode=False):
            if not config.lockstep:
                if first_ns is None:  # the schedule starts at the first message, once the bag is open
                    loop_start, first_ns = time.monotonic(), message.time_ns
                due = loop_start + (message.time_ns - first_ns) / 1e9 / config.rate
                self._spin_until(executor, lambda: False, due - time.monotonic())  # sleep until due, spinning
            published_as = self._published_as[message.topic]
            msg = deserialize_message(message.raw, self._classes[message.topic])
            if message.topic == config.task_topic:
                self._task_pub.publish(message.raw)
                self._record(published_as, message.raw)
                summary.tasks_published += 1
                changed, task = msg.data.strip() != task, msg.data.strip()
                if config.lockstep and changed:  # a republished, unchanged task needs no pause
                    self._spin_until(executor, lambda: False, config.task_settle_s)
                continue
            stamp = _stamp_ns(msg.header.stamp)
            self._sent_s[stamp] = time.monotonic()
            self._answered.pop(stamp, None)  # a loop replays the same stamps: wait for a new answer
            self._camera_pub.publish(message.raw)
            self._record(published_as, message.raw)
            summary.frames_published += 1
            if not task:
                summary.frames_before_task += 1
            elif config.lockstep and not self._spin_until(executor, lambda s=stamp: s in self._answered,
                                                          config.frame_timeout_s):
                summary.frames_unanswered += 1
                self.get_logger().warning(f"no answer to the frame stamped {stamp} ns within "
                                          f"{config.frame_timeout_s:g} s; going on")

    def _record(self, topic: str, raw: bytes) -> None:
        if self.writer is not None:
            self.writer.write_raw(topic, self.get_clock().now().nanoseconds, raw)

    @staticmethod
    def _spin_until(executor: Executor, done, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while not done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            executor.spin_once(timeout_sec=min(0.01, remaining))
        return True


def parse_remaps(items: list[str]) -> dict[str, str]:
    remap = {}
    for item in items:
        source, sep, target = item.partition(":=")
        if not sep or not source or not target:
            raise ReplayError(f"--remap takes FROM:=TO, e.g. /camera/image_raw:=/wrist/image, got '{item}'")
        remap[absolute(source)] = absolute(target)
    return remap


def run_replay(args: argparse.Namespace) -> int:
    """`specvla bag-replay`: prints the ReplaySummary as JSON."""
    try:
        config = ReplayConfig(bag=args.bag, camera_topic=absolute(args.camera_topic),
                              task_topic=absolute(args.task_topic), remap=parse_remaps(args.remap), rate=args.rate,
                              lockstep=args.lockstep, wait_for=args.wait_for, node=absolute(args.node),
                              loops=args.loop, out=args.out, storage=args.storage, frame_timeout_s=args.frame_timeout)
        if config.out is not None and config.out.exists():
            raise BagError(f"{config.out} exists already: choose a new --out (bags are never overwritten)")
        summary = replay(config)
    except SpecVLAError as error:
        print(f"specvla bag-replay: {error}", file=sys.stderr)
        return 1
    print(json.dumps(asdict(summary), indent=2))
    return 0 if summary.frames_unanswered == 0 else 3


def replay(config: ReplayConfig) -> ReplaySummary:
    """Play a bag in a process of its own (the node runs elsewhere); Ctrl-C ends it cleanly."""
    rclpy.init()
    replayer = None
    try:
        replayer = BagReplayer(config)
        executor = SingleThreadedExecutor()
        executor.add_node(replayer)
        return replayer.run(executor)
    finally:
        if replayer is not None:
            replayer.destroy_node()
        rclpy.try_shutdown()
