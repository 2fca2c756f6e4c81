"""Play a bag's camera + task into a running specvla_node and capture what it publishes.

Two clocks:
- recorded timing (`rate`, default 1.0 = as recorded): the node meets the data as it did live,
  dropping frames when it is slower than the camera;
- lockstep ("as fast as the node consumes"): each frame waits for the node's answer to *that*
  frame (DecodeStats, or with `wait_for="command"` the first model command, matched by
  image_stamp) before the next is sent, so every frame is decoded exactly once and the results
  can be compared frame by frame with offline decoding. After a task change lockstep pauses
  `task_settle_s` so the node holds the new task before the next frame arrives (two topics have
  no common order).

Before the first frame the replayer waits until the node's camera and task subscriptions have
matched, and after every task until the node has acknowledged it (reliable, latched), so no frame
is lost to a task still on its way; frames sent while no task was acknowledged are counted as
such. When the node cannot be reached, the error says why (not running, listening to another
camera topic or type, an incompatible QoS). The output bag holds the inputs as published plus the
node's outputs (command, decode stats), stamped on arrival; it is itself replayable, and it is
removed again when nothing was played.
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
from rclpy.duration import Duration
from rclpy.executors import Executor, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message, serialize_message
from std_msgs.msg import String

from specvla_ros.bags import CAMERA_QOS, TASK_QOS, BagError, BagWriter, TopicQos, find_camera, remove_bag
from specvla_ros.bags.reader import TASK_TYPES, check_topic, open_bag, read_messages
from specvla_ros.core.errors import SpecVLAError
from specvla_ros.ros.bag_record import BagCapture, KnownTopic, absolute, message_class
from specvla_ros.ros.dds_profile import current_setup
from specvla_ros.ros.qos import IMAGE_QOS_CHOICES, describe_image_qos, image_qos
from specvla_ros.ros.qos import TASK_QOS as NODE_TASK_QOS
from specvla_ros.ros.replay_diagnosis import delivery_hint, qos_reliability

OUTPUT_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"


class ReplayError(SpecVLAError):
    """The replay cannot run: nobody listens, or the node never answers."""


@dataclass
class ReplayConfig:
    bag: Path
    camera_topic: str | None = None    # None: the bag's only colour image topic
    task_topic: str = "/vla/instruction"
    task: str | None = None            # the task for every frame; the bag's task topic is then not played
    image_qos: str = "sensor_data"     # the camera publisher's QoS (IMAGE_QOS_CHOICES)
    remap: dict[str, str] = field(default_factory=dict)  # bag topic -> published topic
    rate: float = 1.0                  # recorded timing x rate (ignored in lockstep)
    lockstep: bool = False
    wait_for: str = "stats"            # lockstep answer: "stats" (DecodeStats) or "command" (first model command)
    node: str = "/specvla_node"        # whose ~/command and ~/decode_stats are waited for and captured
    loops: int = 1                     # 0 = until interrupted
    out: Path | None = None            # output bag (inputs as published + node outputs)
    storage: str = "sqlite3"
    overwrite: bool = False            # replace an existing output bag (only ever a bag)
    frame_timeout_s: float = 30.0      # lockstep: give up on a frame's answer after this
    discovery_timeout_s: float = 10.0  # wait this long for the node's subscriptions
    task_settle_s: float = 0.3         # lockstep: pause after a task change
    task_ack_timeout_s: float = 2.0    # wait this long for the node to acknowledge a task
    tail_s: float = 2.0                # recorded timing: wait this long for the last frame's answer

    def __post_init__(self) -> None:
        if not self.rate > 0:
            raise ReplayError(f"rate must be > 0 (1.0 = recorded timing), got {self.rate}")
        if self.wait_for not in ("stats", "command"):
            raise ReplayError(f"wait_for must be 'stats' or 'command', got '{self.wait_for}'")
        if self.loops < 0:
            raise ReplayError(f"loops must be >= 0 (0 = forever), got {self.loops}")
        if self.image_qos not in IMAGE_QOS_CHOICES:
            raise ReplayError(f"image QoS must be one of {', '.join(IMAGE_QOS_CHOICES)}, got '{self.image_qos}'")
        if self.task is not None and not self.task.strip():
            raise ReplayError("the task given is empty: pass the instruction, e.g. --task \"pick up the red cube\"")

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
    frames_before_task: int = 0       # published while the node had acknowledged no task: it cannot answer them
    frames_answered: int = 0          # distinct frames the node answered (by image stamp)
    frames_unanswered: int = 0        # lockstep: timed out
    loops: int = 0
    wall_s: float = 0.0
    answer_ms_p50: float | None = None  # publish -> answer
    answer_ms_p95: float | None = None
    captured: dict[str, int] = field(default_factory=dict)
    out: str | None = None
    interrupted: bool = False         # Ctrl-C: what was played so far is in the output bag
    camera_topic: str = ""            # as published (after --remap)
    camera_type: str = ""
    task_source: str = ""
    image_qos: str = ""               # this player's camera publisher
    node_camera_qos: str | None = None  # the node's camera subscription, as seen in the graph
    dds_transport: str = ""
    largest_frame_kb: float = 0.0
    hints: list[str] = field(default_factory=list)  # why frames went unanswered, and what to do


def _stamp_ns(stamp) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


class BagReplayer(Node):
    """Publishes a bag's camera + task messages; `run(executor)` plays it and returns a ReplaySummary."""

    def __init__(self, config: ReplayConfig, **node_kwargs) -> None:
        camera = find_camera(config.bag, config.camera_topic)  # a bad bag fails before any ROS entity exists
        if config.task is None:
            with open_bag(config.bag) as reader:
                check_topic(reader, config.bag, config.task_topic, TASK_TYPES, "task")
        if config.out is not None and config.out.exists():
            if not config.overwrite:
                raise BagError(f"{config.out} exists already: choose a new --out, or --overwrite to replace it")
            remove_bag(config.out)
        super().__init__("specvla_bag_replay", **node_kwargs)
        self.config = config
        self.camera_topic, self.camera_type, self.camera_note = camera.topic, camera.msgtype, camera.how
        self.writer: BagWriter | None = None
        self._classes = {camera.topic: message_class(camera.msgtype), config.task_topic: String}
        self._published_as = {t: absolute(config.remap.get(t, t)) for t in self._classes}
        self._camera_pub = self.create_publisher(self._classes[camera.topic], self._published_as[camera.topic],
                                                 image_qos(config.image_qos))
        self._task_pub = self.create_publisher(String, self._published_as[config.task_topic], NODE_TASK_QOS)
        answer_class = message_class("specvla_ros/msg/DecodeStats" if config.wait_for == "stats"
                                     else "specvla_ros/msg/EndEffectorDelta")
        self.create_subscription(answer_class, config.answer_topic, self._on_answer, OUTPUT_QOS)
        self._sent_s: dict[int, float] = {}     # frame stamp -> monotonic publish time
        self._answered: dict[int, float] = {}   # frame stamp -> answer latency (s)
        self._task_acknowledged = False         # the node holds a (non-empty) task we sent
        self._largest_frame = 0
        self.capture: BagCapture | None = None
        if config.out is not None:
            self.writer = BagWriter(config.out, config.storage)
            try:
                camera_qos = CAMERA_QOS if config.image_qos == "sensor_data" else TopicQos(depth=5)
                self.writer.add_topic(self._published_as[camera.topic], camera.msgtype, camera_qos)
                self.writer.add_topic(self._published_as[config.task_topic], "std_msgs/msg/String", TASK_QOS)
                command, stats = config.output_topics
                known = {command: KnownTopic(message_class("specvla_ros/msg/EndEffectorDelta"), OUTPUT_QOS,
                                             TopicQos()),
                         stats: KnownTopic(message_class("specvla_ros/msg/DecodeStats"), OUTPUT_QOS, TopicQos())}
                self.capture = BagCapture(self, self.writer, list(known), known)
            except BaseException:
                self._discard_output()
                raise

    @property
    def camera(self) -> str:
        """The camera topic as published (after remapping)."""
        return self._published_as[self.camera_topic]

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

        Ctrl-C ends the playing early; the summary then says `interrupted`. When the replay fails or
        is interrupted before anything was played, the output bag is removed (it would block a retry)."""
        config = self.config
        summary = ReplaySummary(out=str(config.out) if config.out else None, camera_topic=self.camera,
                                camera_type=self.camera_type, image_qos=describe_image_qos(config.image_qos),
                                task_source=f"given: '{config.task.strip()}'" if config.task is not None
                                else f"bag topic {config.task_topic}", dds_transport=current_setup().describe())
        started = time.monotonic()
        try:
            self._wait_for_node(executor)
            summary.node_camera_qos = self._node_camera_qos()
            loop = 0
            while config.loops == 0 or loop < config.loops:
                self._play_once(executor, summary, first=loop == 0)
                loop += 1
                summary.loops = loop
            if not config.lockstep and self.count_publishers(config.answer_topic) and self._sent_s:
                last = max(self._sent_s, key=self._sent_s.get)
                self._spin_until(executor, lambda: last in self._answered, config.tail_s)
            else:
                self._spin_until(executor, lambda: False, 0.2)  # let the last outputs reach the capture
        except KeyboardInterrupt:
            summary.interrupted = True
        except BaseException:
            if summary.frames_published == 0:
                self._discard_output()
            raise
        finally:
            summary.wall_s = round(time.monotonic() - started, 3)
            summary.frames_answered = len(self._answered)
            summary.largest_frame_kb = round(self._largest_frame / 1000, 1)
            if self._answered:
                latencies = 1000.0 * np.array(list(self._answered.values()))
                summary.answer_ms_p50 = round(float(np.percentile(latencies, 50)), 2)
                summary.answer_ms_p95 = round(float(np.percentile(latencies, 95)), 2)
        if summary.frames_published == 0 and self.writer is not None:
            self._discard_output()
            summary.out = None
        elif self.writer is not None:
            summary.captured = dict(self.writer.counts)
        unanswered = summary.frames_unanswered or (summary.frames_published > summary.frames_before_task
                                                   and not summary.frames_answered)
        if unanswered and not summary.interrupted:
            summary.hints.append(delivery_hint(self._largest_frame, config.image_qos, summary.node_camera_qos,
                                               current_setup(), self.camera_type == COMPRESSED_IMAGE))
        return summary

    def close(self) -> None:
        """Finish the output bag (safe to call twice)."""
        if self.writer is not None:
            self.writer.close()

    def destroy_node(self) -> None:
        self.close()
        super().destroy_node()

    def _discard_output(self) -> None:
        """Remove an output bag that holds nothing played (a failed start would otherwise block the retry)."""
        if self.writer is not None and self.config.out is not None:
            self.writer.close()
            self.writer = None
            if self.config.out.exists():
                remove_bag(self.config.out)

    def _wait_for_node(self, executor: Executor) -> None:
        config = self.config
        found = self._spin_until(executor, lambda: self._camera_pub.get_subscription_count() > 0
                                 and self._task_pub.get_subscription_count() > 0
                                 and (not config.lockstep or self.count_publishers(config.answer_topic) > 0),
                                 config.discovery_timeout_s)
        if not found:
            reason = self._why_unreached()
            if config.lockstep:
                raise ReplayError(reason)
            self.get_logger().warning(f"{reason}; playing anyway")
        self._spin_until(executor, lambda: False, 0.2)  # discovery of the capture subscriptions settles

    def _why_unreached(self) -> str:
        """Why the node's subscriptions did not match ours, in words a user can act on."""
        config, camera, task = self.config, self.camera, self._published_as[self.config.task_topic]
        node_runs = self.count_publishers(config.answer_topic) > 0
        waited = f"after {config.discovery_timeout_s:g} s"
        if not node_runs and self._camera_pub.get_subscription_count() == 0:
            return (f"no node answers on {config.answer_topic} or listens on {camera} {waited}: start specvla_node "
                    "first (same ROS_DOMAIN_ID; --node if it has another name; --remap if it listens elsewhere)")
        if self._camera_pub.get_subscription_count() == 0:
            kind = "a compressed camera (sensor_msgs/CompressedImage)" if self.camera_type == COMPRESSED_IMAGE \
                else "a raw camera (sensor_msgs/Image)"
            text = f"{config.node} is running but does not receive this bag's camera {camera}, {kind}"
            reliable_readers = [i for i in self.get_subscriptions_info_by_topic(camera)
                                if qos_reliability(i.qos_profile) == "reliable"]
            if reliable_readers and config.image_qos != "reliable":
                return (f"{text}: it subscribes reliable and this player publishes best effort (incompatible); "
                        "pass --image-qos reliable")
            if self.camera_type == COMPRESSED_IMAGE:
                text += f": start the node with -p topics.compressed_image:={camera}"
            else:
                text += f": start the node with -p topics.image:={camera}, or --remap {self.camera_topic}:=<its topic>"
            listening = self._node_image_subscriptions()
            if listening:
                text += f" (it listens to {listening})"
            return text
        if self._task_pub.get_subscription_count() == 0:
            return (f"nobody subscribes to the task topic {task} {waited}: --remap {config.task_topic}:=<the node's "
                    "topics.task>")
        return f"no node publishes {config.answer_topic} {waited}: --node if it has another name"

    def _node_image_subscriptions(self) -> str:
        namespace, _, name = self.config.node.rstrip("/").rpartition("/")
        try:
            topics = self.get_subscriber_names_and_types_by_node(name, namespace or "/")
        except Exception:  # NodeNameNonExistentError: not under that name
            return ""
        return ", ".join(f"{topic} ({', '.join(types)})" for topic, types in topics
                         if any(t.startswith("sensor_msgs/msg/") and t.endswith("Image") for t in types))

    def _node_camera_qos(self) -> str | None:
        name = self.config.node.rstrip("/").rpartition("/")[2]
        infos = self.get_subscriptions_info_by_topic(self.camera)
        mine = [i for i in infos if i.node_name == name] or infos
        return qos_reliability(mine[0].qos_profile) if mine else None

    def _publish_task(self, executor: Executor, raw: bytes, text: str, summary: ReplaySummary,
                      changed: bool) -> None:
        """Publish a task, wait for the node to acknowledge it, and (lockstep, on a change) let it settle."""
        config = self.config
        self._task_pub.publish(raw)
        self._record(self._published_as[config.task_topic], raw)
        summary.tasks_published += 1
        listening = self._task_pub.get_subscription_count() > 0
        acknowledged = listening and self._task_pub.wait_for_all_acked(Duration(seconds=config.task_ack_timeout_s))
        self._task_acknowledged = bool(text) and acknowledged
        if config.lockstep and changed:  # a republished, unchanged task needs no pause
            self._spin_until(executor, lambda: False, config.task_settle_s)

    def _play_once(self, executor: Executor, summary: ReplaySummary, first: bool) -> None:
        config = self.config
        if config.task is not None:
            topics = {self.camera_topic: None}
            if first:
                task = config.task.strip()
                self._publish_task(executor, serialize_message(String(data=task)), task, summary, changed=True)
        else:
            topics = {self.camera_topic: None, config.task_topic: TASK_TYPES}
        loop_start, first_ns = 0.0, None
        task = ""
        for message, _ in read_messages(config.bag, topics, decode=False):
            if not config.lockstep:
                if first_ns is None:  # the schedule starts at the first message, once the bag is open
                    loop_start, first_ns = time.monotonic(), message.time_ns
                due = loop_start + (message.time_ns - first_ns) / 1e9 / config.rate
                self._spin_until(executor, lambda: False, due - time.monotonic())  # sleep until due, spinning
            if message.topic == config.task_topic and config.task is None:
                text = deserialize_message(message.raw, String).data.strip()
                self._publish_task(executor, message.raw, text, summary, changed=text != task)
                task = text
                continue
            msg = deserialize_message(message.raw, self._classes[message.topic])
            stamp = _stamp_ns(msg.header.stamp)
            self._sent_s[stamp] = time.monotonic()
            self._answered.pop(stamp, None)  # a loop replays the same stamps: wait for a new answer
            self._camera_pub.publish(message.raw)
            self._record(self.camera, message.raw)
            self._largest_frame = max(self._largest_frame, len(message.raw))
            summary.frames_published += 1
            if not self._task_acknowledged:
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
    """`specvla bag-replay`: prints the ReplaySummary as JSON (hints also on stderr)."""
    try:
        config = ReplayConfig(bag=args.bag, camera_topic=absolute(args.camera_topic) if args.camera_topic else None,
                              task_topic=absolute(args.task_topic), task=args.task, image_qos=args.image_qos,
                              remap=parse_remaps(args.remap), rate=args.rate, lockstep=args.lockstep,
                              wait_for=args.wait_for, node=absolute(args.node), loops=args.loop, out=args.out,
                              storage=args.storage, overwrite=args.overwrite, frame_timeout_s=args.frame_timeout,
                              discovery_timeout_s=args.discovery_timeout)
        summary = replay(config, getattr(args, "ros_arguments", []))
    except SpecVLAError as error:
        print(f"specvla bag-replay: {error}", file=sys.stderr)
        return 1
    for hint in summary.hints:
        print(f"specvla bag-replay: {hint}", file=sys.stderr)
    print(json.dumps(asdict(summary), indent=2))
    return 0 if summary.frames_unanswered == 0 else 3


def replay(config: ReplayConfig, ros_arguments: list[str] | None = None) -> ReplaySummary:
    """Play a bag in a process of its own (the node runs elsewhere); Ctrl-C ends it cleanly.

    Only `ros_arguments` (from `--ros-args` on) reach rcl: given the whole command line it would read
    `--remap a:=b`'s `a:=b` as a deprecated-syntax remap of its own."""
    rclpy.init(args=["specvla", *(ros_arguments or [])])
    replayer = None
    try:
        replayer = BagReplayer(config)
        print(replayer.camera_note, file=sys.stderr)
        executor = SingleThreadedExecutor()
        executor.add_node(replayer)
        return replayer.run(executor)
    finally:
        if replayer is not None:
            replayer.destroy_node()
        rclpy.try_shutdown()
