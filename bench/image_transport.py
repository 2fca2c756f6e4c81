#!/usr/bin/env python3
"""Which camera frames reach another process over Fast DDS on this machine, and how fast.

    .venv/bin/python bench/image_transport.py --out out/bench/image_transport      # ~2 min

For each case, a subscriber process and a publisher process (plain rclpy, two participants, as a
camera driver and specvla_node are) exchange --frames sensor_msgs/Image frames at --hz; the
subscriber counts what arrives and the publish-to-receive latency (both stamp with the same
clock). Cases cross frame size, QoS (the subscriber's and the publisher's) and the Fast DDS
transport setup of each side: Fast DDS defaults, FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA, UDP with
4 MB socket buffers (rmem_max here), and config/fastdds_large_images.xml. Every process runs with
ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST on a domain of its own. Writes results.json and results.md.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROFILE = ROOT / "config" / "fastdds_large_images.xml"
TOPIC = "/bench/image"
# UDP only, on loopback, with the largest socket buffers this machine allows (net.core.rmem_max = 4 MB).
UDP_BUFFERS_XML = """<?xml version="1.0" encoding="UTF-8" ?>
<profiles xmlns="http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles">
  <transport_descriptors>
    <transport_descriptor>
      <transport_id>udp_big_buffers</transport_id>
      <type>UDPv4</type>
      <sendBufferSize>4194304</sendBufferSize>
      <receiveBufferSize>4194304</receiveBufferSize>
      <interfaceWhiteList><address>127.0.0.1</address></interfaceWhiteList>
    </transport_descriptor>
  </transport_descriptors>
  <participant profile_name="udp_big_buffers" is_default_profile="true">
    <rtps>
      <userTransports><transport_id>udp_big_buffers</transport_id></userTransports>
      <useBuiltinTransports>false</useBuiltinTransports>
    </rtps>
  </participant>
</profiles>
"""


@dataclass(frozen=True)
class Case:
    width: int
    height: int
    publisher_qos: str       # sensor_data | reliable
    subscriber_qos: str
    publisher_setup: str     # default | large_data | udp_buffers | profile
    subscriber_setup: str


@dataclass
class Result:
    case: Case
    received: int
    sent: int
    latency_ms_p50: float | None
    latency_ms_p95: float | None


CASES = [
    Case(320, 240, "sensor_data", "sensor_data", "default", "default"),
    Case(640, 480, "sensor_data", "sensor_data", "default", "default"),
    Case(1280, 720, "sensor_data", "sensor_data", "default", "default"),
    Case(640, 480, "reliable", "sensor_data", "default", "default"),     # a REP-2003 camera, our default QoS
    Case(640, 480, "reliable", "reliable", "default", "default"),
    Case(1280, 720, "reliable", "reliable", "default", "default"),
    Case(640, 480, "sensor_data", "sensor_data", "large_data", "large_data"),
    Case(640, 480, "sensor_data", "sensor_data", "udp_buffers", "udp_buffers"),
    Case(1280, 720, "sensor_data", "sensor_data", "udp_buffers", "udp_buffers"),
    Case(640, 480, "sensor_data", "sensor_data", "profile", "profile"),
    Case(1280, 720, "sensor_data", "sensor_data", "profile", "profile"),
    Case(1920, 1080, "sensor_data", "sensor_data", "profile", "profile"),
    Case(640, 480, "sensor_data", "sensor_data", "default", "profile"),     # only the node has it
    Case(640, 480, "sensor_data", "sensor_data", "profile", "default"),     # only the camera has it
    Case(1280, 720, "reliable", "reliable", "profile", "profile"),
]


def _qos(name: str):
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

    return qos_profile_sensor_data if name == "sensor_data" else QoSProfile(depth=5,
                                                                             reliability=ReliabilityPolicy.RELIABLE)


def subscriber(args: argparse.Namespace) -> None:
    import numpy as np
    import rclpy
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node("bench_image_subscriber")
    latencies: list[float] = []

    def on_image(msg: Image) -> None:
        sent = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        latencies.append((time.time_ns() - sent) / 1e6)

    node.create_subscription(Image, TOPIC, on_image, _qos(args.qos))
    deadline = time.monotonic() + args.seconds
    while time.monotonic() < deadline and len(latencies) < args.frames:
        rclpy.spin_once(node, timeout_sec=0.05)
    result = {"received": len(latencies)}
    if latencies:
        result |= {"p50": float(np.percentile(latencies, 50)), "p95": float(np.percentile(latencies, 95))}
    print(json.dumps(result), flush=True)
    node.destroy_node()
    rclpy.shutdown()


def publisher(args: argparse.Namespace) -> None:
    import numpy as np
    import rclpy
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node("bench_image_publisher")
    pub = node.create_publisher(Image, TOPIC, _qos(args.qos))
    pixels = np.random.default_rng(0).integers(0, 256, (args.height, args.width, 3), dtype=np.uint8)
    msg = Image(height=args.height, width=args.width, encoding="rgb8", step=args.width * 3, data=pixels.tobytes())
    deadline = time.monotonic() + 10.0
    while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
    time.sleep(0.5)  # the reader's side of the match settles
    next_due = time.monotonic()
    for _ in range(args.frames):
        now_ns = time.time_ns()
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(now_ns, 1_000_000_000)
        pub.publish(msg)
        next_due += 1.0 / args.hz
        time.sleep(max(0.0, next_due - time.monotonic()))
    time.sleep(1.0)  # reliable retransmissions finish
    node.destroy_node()
    rclpy.shutdown()


def _environment(setup: str, domain: int, udp_xml: Path) -> dict[str, str]:
    unset = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_BUILTIN_TRANSPORTS")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env |= {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "ROS_DOMAIN_ID": str(domain)}
    if setup == "large_data":
        env["FASTDDS_BUILTIN_TRANSPORTS"] = "LARGE_DATA"
    elif setup == "udp_buffers":
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(udp_xml)
    elif setup == "profile":
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(PROFILE)
    return env


def run_case(case: Case, frames: int, hz: float, domain: int, udp_xml: Path) -> Result:
    me = [sys.executable, str(Path(__file__).resolve())]
    size = ["--width", str(case.width), "--height", str(case.height), "--frames", str(frames), "--hz", str(hz)]
    sub = subprocess.Popen([*me, "--role", "subscriber", "--qos", case.subscriber_qos, *size,
                            "--seconds", str(frames / hz + 15)],
                           env=_environment(case.subscriber_setup, domain, udp_xml), stdout=subprocess.PIPE, text=True)
    time.sleep(1.0)
    pub = subprocess.Popen([*me, "--role", "publisher", "--qos", case.publisher_qos, *size],
                           env=_environment(case.publisher_setup, domain, udp_xml))
    pub.wait()
    out, _ = sub.communicate(timeout=60)
    summary = json.loads(out.strip().splitlines()[-1])
    return Result(case, summary["received"], frames, summary.get("p50"), summary.get("p95"))


def _setup_name(setup: str) -> str:
    return {"default": "defaults", "large_data": "`LARGE_DATA`", "udp_buffers": "UDP, 4 MB buffers",
            "profile": "`fastdds_large_images.xml`"}[setup]


def markdown(results: list[Result], frames: int, hz: float) -> str:
    lines = [f"{frames} rgb8 frames at {hz:g} Hz from a publisher process to a subscriber process "
             "(ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST).", "",
             "| frame | publisher QoS | subscriber QoS | publisher transport | subscriber transport | received | "
             "latency p50 / p95 |", "|---|---|---|---|---|---|---|"]
    for r in results:
        c = r.case
        latency = "-" if r.latency_ms_p50 is None else f"{r.latency_ms_p50:.1f} / {r.latency_ms_p95:.1f} ms"
        lines.append(f"| {c.width}x{c.height} | {c.publisher_qos} | {c.subscriber_qos} | "
                     f"{_setup_name(c.publisher_setup)} | {_setup_name(c.subscriber_setup)} | "
                     f"{r.received}/{r.sent} | {latency} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("out/bench/image_transport"))
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--hz", type=float, default=30.0)
    parser.add_argument("--role", choices=("subscriber", "publisher"), help=argparse.SUPPRESS)
    parser.add_argument("--qos", default="sensor_data", help=argparse.SUPPRESS)
    parser.add_argument("--width", type=int, default=640, help=argparse.SUPPRESS)
    parser.add_argument("--height", type=int, default=480, help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=20.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "subscriber":
        subscriber(args)
        return 0
    if args.role == "publisher":
        publisher(args)
        return 0
    results = []
    with tempfile.TemporaryDirectory() as folder:
        udp_xml = Path(folder) / "udp_buffers.xml"
        udp_xml.write_text(UDP_BUFFERS_XML)
        domain = 1 + os.getpid() % 100  # one run after another: cases never overlap
        for case in CASES:
            result = run_case(case, args.frames, args.hz, domain, udp_xml)
            print(f"{case}: {result.received}/{result.sent}", flush=True)
            results.append(result)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")
    (args.out / "results.md").write_text(markdown(results, args.frames, args.hz))
    print(markdown(results, args.frames, args.hz))
    return 0


if __name__ == "__main__":
    sys.exit(main())
