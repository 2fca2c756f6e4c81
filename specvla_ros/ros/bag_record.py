"""Record a run's topics into a rosbag2 bag, as `ros2 bag record` would (ros2cli is not on PyPI).

Subscriptions are raw: the CDR bytes go into the bag unchanged, stamped with this node's clock at
arrival (sim time under use_sim_time). For a live system the QoS adapts to the publishers found,
as ros2 bag does: a best-effort camera is recorded best effort, a latched task latched (and
stored so, so `ros2 bag play` republishes it latched). `specvla bag-record --sim` records a
closed-loop simulation run (node + tabletop) in one process.
"""
from __future__ import annotations

import argparse
import importlib
import sys
import time
from dataclasses import dataclass
from typing import Sequence

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from specvla_ros.bags import TASK_QOS, BagError, BagWriter, TopicQos, remove_bag, string_message
from specvla_ros.core.errors import SpecVLAError
from specvla_ros.ros.topics import (
    CAMERA_TOPIC,
    COMMAND_TOPIC,
    DECODE_STATS_TOPIC,
    DEFAULT_RECORD_TOPICS,
    TASK_TOPIC,
)

RECORD_DEPTH = 100  # a burst of frames must not be dropped by the recorder's own queue


def message_class(msgtype: str) -> type:
    """'pkg/msg/Name' -> the rclpy message class, or BagError when its Python package is missing."""
    package, _, name = msgtype.partition("/msg/")
    try:
        return getattr(importlib.import_module(f"{package}.msg"), name)
    except (ImportError, AttributeError, ValueError):
        raise BagError(f"message type {msgtype} is not supported here: its Python package '{package}' is not "
                       "installed (pip install ros-<package> or source a ROS workspace that has it)") from None


def msgtype_name(cls: type) -> str:
    """The rclpy class -> 'pkg/msg/Name', the type string bags store."""
    return f"{cls.__module__.split('.')[0]}/msg/{cls.__name__}"


def adapted_qos(publishers: list) -> tuple[QoSProfile, TopicQos]:
    """A subscription QoS that matches every publisher found, and the QoS to store in the bag.

    Reliable only when all publishers are (a reliable reader refuses best-effort writers);
    transient local only when all are (a latched reader refuses volatile writers).
    """
    reliable = all(p.qos_profile.reliability == ReliabilityPolicy.RELIABLE for p in publishers)
    latched = all(p.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL for p in publishers)
    profile = QoSProfile(depth=RECORD_DEPTH,
                         reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)
    return profile, TopicQos(reliable=reliable, transient_local=latched, depth=1 if latched else 10)


@dataclass(frozen=True)
class KnownTopic:
    """A topic subscribed at once, without waiting for its publishers to appear in the graph."""

    msg_class: type
    qos: QoSProfile
    bag_qos: TopicQos


class BagCapture:
    """Writes every message on `topics` into `writer`. Topics in `known` are subscribed at once; the
    others when a publisher appears in the ROS graph (polled every `poll_s`), with adapted QoS."""

    def __init__(self, node: Node, writer: BagWriter, topics: Sequence[str],
                 known: dict[str, KnownTopic] | None = None, poll_s: float = 0.2) -> None:
        self.node = node
        self.writer = writer
        self.unsupported: dict[str, str] = {}
        self._subscriptions: list = []
        self._pending = [absolute(t) for t in topics]
        for topic, spec in (known or {}).items():
            if absolute(topic) in self._pending:
                self._subscribe(absolute(topic), spec.msg_class, spec.qos, spec.bag_qos)
        self._timer = node.create_timer(poll_s, self._poll) if self._pending else None

    @property
    def waiting_for(self) -> list[str]:
        """Topics not recorded yet: no publisher seen (or their type is unsupported)."""
        return list(self._pending)

    def _poll(self) -> None:
        graph = dict(self.node.get_topic_names_and_types())
        for topic in list(self._pending):
            types = graph.get(topic)
            publishers = self.node.get_publishers_info_by_topic(topic) if types else []
            if not publishers:
                continue
            if len(types) != 1:
                self._give_up(topic, f"several message types ({', '.join(types)}) on one topic")
                continue
            try:
                msg_class = message_class(types[0])
            except BagError as error:
                self._give_up(topic, str(error))
                continue
            self._subscribe(topic, msg_class, *adapted_qos(publishers))
        if not self._pending and self._timer is not None:
            self._timer.cancel()

    def _give_up(self, topic: str, reason: str) -> None:
        self._pending.remove(topic)
        self.unsupported[topic] = reason
        self.node.get_logger().error(f"not recording {topic}: {reason}")

    def _subscribe(self, topic: str, msg_class: type, qos: QoSProfile, bag_qos: TopicQos) -> None:
        self.writer.add_topic(topic, msgtype_name(msg_class), bag_qos)
        self._subscriptions.append(self.node.create_subscription(
            msg_class, topic, lambda raw, name=topic: self._on_message(name, raw), qos, raw=True))
        self._pending.remove(topic)
        self.node.get_logger().info(f"recording {topic} ({msgtype_name(msg_class)})")

    def _on_message(self, topic: str, raw: bytes) -> None:
        self.writer.write_raw(topic, self.node.get_clock().now().nanoseconds, raw)


def absolute(topic: str) -> str:
    return topic if topic.startswith("/") else "/" + topic


class BagRecorder(Node):
    """A node that records `topics` into `writer` until destroyed."""

    def __init__(self, writer: BagWriter, topics: Sequence[str] = DEFAULT_RECORD_TOPICS,
                 known: dict[str, KnownTopic] | None = None, **node_kwargs) -> None:
        super().__init__("specvla_bag_record", **node_kwargs)
        self.capture = BagCapture(self, writer, topics, known)


def run_record(args: argparse.Namespace) -> int:
    """`specvla bag-record`."""
    try:
        return _record(args)
    except SpecVLAError as error:
        print(f"specvla bag-record: {error}", file=sys.stderr)
        return 1


def _record(args: argparse.Namespace) -> int:
    task, task_topic = args.task, absolute(args.task_topic)
    if task is not None and (args.sim or not task.strip()):
        raise BagError("--task takes a non-empty instruction, and not with --sim (its tasks come from --tasks)")
    if args.out.exists():
        if not args.overwrite:
            raise BagError(f"{args.out} exists already: choose a new --out, or --overwrite to replace it")
        remove_bag(args.out)
    # With --task, the live task topic is not recorded: the bag's task is the one given.
    topics = [t for t in args.topics if task is None or absolute(t) != task_topic]
    sim_nodes, known = _sim_nodes(args) if args.sim else (None, None)  # loads the model before anything is created
    writer = BagWriter(args.out, args.storage)
    rclpy.init(args=["specvla", *getattr(args, "ros_arguments", [])])
    nodes: list[Node] = []
    started = time.monotonic()
    try:
        recorder = BagRecorder(writer, topics, known)
        nodes.append(recorder)
        if task is not None:
            writer.add_topic(task_topic, "std_msgs/msg/String", TASK_QOS)
            stamp_ns = recorder.get_clock().now().nanoseconds
            writer.write(task_topic, stamp_ns, string_message(writer.store, task.strip()))
        if sim_nodes is not None:
            nodes += sim_nodes()  # after the recorder: the bridge publishes its first frame at construction
        executor = SingleThreadedExecutor()
        for node in nodes:
            executor.add_node(node)
        print(f"recording {', '.join(topics)} into {args.out} ({args.storage}); Ctrl-C to stop", file=sys.stderr)
        if task is not None:
            print(f"task '{task.strip()}' written to {task_topic} at the start", file=sys.stderr)
        bridge = nodes[-1] if args.sim else None
        while rclpy.ok():
            if args.duration and time.monotonic() - started >= args.duration:
                break
            if bridge is not None and bridge.finished:
                _spin_for(executor, 0.5)  # the node's answer to the last frame is still on its way
                break
            executor.spin_once(timeout_sec=0.1)
    except KeyboardInterrupt:
        pass
    finally:
        for node in reversed(nodes):
            node.destroy_node()
        rclpy.try_shutdown()
        writer.close()
    print(f"wrote {args.out} in {time.monotonic() - started:.1f} s:")
    capture = nodes[0].capture if nodes else None
    for topic in map(absolute, topics + ([task_topic] if task is not None else [])):
        note = ""
        if task is not None and topic == task_topic:
            note = " (given with --task)"
        elif capture is not None and topic in capture.unsupported:
            note = f" (not recorded: {capture.unsupported[topic]})"
        elif capture is not None and topic in capture.waiting_for:
            note = " (no publisher seen)"
        print(f"  {topic}: {writer.counts.get(topic, 0)} messages{note}")
    return 0


def _spin_for(executor: SingleThreadedExecutor, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)


def _sim_nodes(args: argparse.Namespace):
    """A factory for (specvla_node, sim bridge), configured as config/sim.yaml; and the known topic types."""
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image
    from std_msgs.msg import String

    from specvla_ros.bags import CAMERA_QOS, TASK_QOS
    from specvla_ros.core.config import DecoderConfig, relax_setting
    from specvla_ros.core.loading import load_decoder
    from specvla_ros.models import model_pair
    from specvla_ros.msg import DecodeStats, EndEffectorDelta
    from specvla_ros.ros.qos import TASK_QOS as NODE_TASK_QOS

    pair = model_pair(args.model, args.draft, log=lambda line: print(line, file=sys.stderr))
    args.model, args.draft = pair.target_path, pair.draft_path
    relax = relax_setting(args.relax_bins)
    decoder = load_decoder(args.model, args.draft if args.mode == "speculative" else None,
                           DecoderConfig(mode=args.mode, relax_bins=relax))
    reliable = TopicQos(depth=10)
    record_qos = QoSProfile(depth=RECORD_DEPTH, reliability=ReliabilityPolicy.RELIABLE)  # as the node's, deeper
    known = {  # task first: subscriptions created first are served first when a task and a frame arrive together
        TASK_TOPIC: KnownTopic(String, NODE_TASK_QOS, TASK_QOS),
        CAMERA_TOPIC: KnownTopic(Image, qos_profile_sensor_data, CAMERA_QOS),
        COMMAND_TOPIC: KnownTopic(EndEffectorDelta, record_qos, reliable),
        DECODE_STATS_TOPIC: KnownTopic(DecodeStats, record_qos, reliable),
    }

    def build() -> list[Node]:
        from specvla_ros.ros.closed_loop import SIM_NODE_PARAMETERS, start_nodes
        from specvla_ros.ros.sim_bridge import SimBridgeNode

        node_values = {**SIM_NODE_PARAMETERS, "decoder.mode": args.mode, "decoder.relax_bins": list(args.relax_bins)}
        bridge_values = {"tasks": list(args.tasks), "episodes_per_task": args.episodes, "seed": args.seed,
                         "max_steps": args.max_steps}
        return list(start_nodes(decoder, node_values, SimBridgeNode, bridge_values))

    return build, known
