#!/usr/bin/env python3
"""Soak: specvla_node under mixed malformed and valid traffic for minutes; memory and safety audited.

    .venv/bin/python bench/fuzz_soak.py --out out/bench/fuzz_soak                  # 60 s warm-up + 10 min
    .venv/bin/python bench/fuzz_soak.py --warmup 5 --seconds 20 --out /tmp/soak    # a quick look

Starts `specvla_node` as its own process (as deployed) on the embedded pair, with commands live
(dry_run false, enabled), a twist output and an enable topic, and sends it the fuzz suite's seeded
traffic (test/ros/fuzz_traffic.py: valid and malformed compressed frames including PNG bombs,
tasks, live parameter sets, enable service calls and enable topic messages) from this process over
loopback DDS. Every command and twist it publishes is audited (test/ros/fuzz_harness.py: finite,
within the bounds in force, motion only when enabled and not in dry-run, node alive). The node's
resident memory (with its decoder process, if any) is sampled once a second; growth is measured
from the end of the warm-up. At the end each refusable cause is probed on /diagnostics and the
node is stopped with SIGINT (its exit code is recorded).

Writes results.json, results.md and rss.png. ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST is set here.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))  # apart from other runs on this machine
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the fuzz traffic and audit live with the tests

import numpy as np  # noqa: E402
import rclpy  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from specvla_ros.models import BUNDLED as MODELS  # noqa: E402
from test.ros.fuzz_harness import FuzzRun, NodeProcess  # noqa: E402
from test.ros.fuzz_traffic import Mix, Traffic, jpeg_header_claiming, live_defaults  # noqa: E402

NODE_NAME = "specvla_soak_node"
ENABLE_TOPIC = "/soak/enable"
CAMERA_TOPIC = "/soak/camera"


def node_parameters(args: argparse.Namespace) -> dict:
    parameters = {"model.path": str(MODELS / "target"), "model.draft_path": str(MODELS / "draft"),
                  "inference.isolation": args.isolation, "dry_run": False, "start_enabled": True,
                  "control_rate_hz": 20.0, "action_timeout_s": 0.6, "publish_twist": True,
                  "topics.twist": "/soak/twist", "topics.enable": ENABLE_TOPIC, "topics.task": "/vla/instruction",
                  "model.compile": args.compile}
    parameters["topics.compressed_image" if args.camera == "compressed" else "topics.image"] = CAMERA_TOPIC
    return parameters


def ros_argument(name: str, value) -> str:
    if isinstance(value, bool):
        return f"{name}:={str(value).lower()}"
    return f"{name}:={value}"


def wait_for_diagnostics(run: FuzzRun, timeout_s: float) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end and run.handle.alive():
        run.spin(0.1)
        if run.auditor.statuses:
            return True
    return False


def probes(run: FuzzRun, compressed: bool) -> list:
    if compressed:
        huge = CompressedImage(format="jpeg", data=jpeg_header_claiming(65000, 65000))
        bad = CompressedImage(format="gif", data=b"GIF89a" + b"\x00" * 30)
    else:
        huge = Image(height=100_000, width=100_000, encoding="rgb8", step=300_000, data=b"\x00" * 16)
        bad = Image(height=48, width=64, encoding="yuv422", step=128, data=b"\x00" * 64)
    return [("image_too_large", lambda: run.image_pub.publish(huge)),
            ("image_rejected", lambda: run.image_pub.publish(bad)),
            ("parameter_refused", lambda: run.set_parameters({"action_low": [float("nan")] * 7})),
            ("task_rejected", lambda: run.task_pub.publish(String(data="pick up the cube " * 1000)))]


def rss_growth(samples: list[tuple[float, float]], warm_end_s: float) -> dict:
    """Resident memory at the end of the warm-up and at the end (medians of 10 s), and the maximum after."""
    times = np.array([t for t, _ in samples])
    mb = np.array([m for _, m in samples])
    warm = float(np.median(mb[(times > warm_end_s - 10) & (times <= warm_end_s)]))
    after = mb[times > warm_end_s]
    final = float(np.median(after[-10:]))
    return {"warm_mb": warm, "final_mb": final, "max_after_warmup_mb": float(after.max()),
            "growth_pct": 100.0 * (final - warm) / warm, "max_growth_pct": 100.0 * (float(after.max()) - warm) / warm}


def plot(samples: list[tuple[float, float]], warm_end_s: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 3.2))
    axis.plot([t for t, _ in samples], [m for _, m in samples], lw=1)
    axis.axvline(warm_end_s, color="grey", ls="--", lw=1, label="end of warm-up")
    axis.set_xlabel("seconds since the node started")
    axis.set_ylabel("node RSS (MB)")
    axis.set_title("specvla_node under mixed malformed and valid traffic")
    axis.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def progress(run: FuzzRun, every_s: int = 60) -> None:
    """A line a minute: the soak is alive, and how it goes."""
    if len(run.report.rss_samples) % every_s == 0:
        print(f"  {time.monotonic() - run.started_mono:6.0f} s  inputs {run.report.total_inputs}  "
              f"rss {run.report.rss_samples[-1][1]:.0f} MB  violations {len(run.auditor.violations)}", flush=True)


def markdown(result: dict) -> str:
    rss = result["rss"]
    commands = result["commands"]
    lines = [
        f"Soak: {result['seconds']:.0f} s of traffic after a {result['warmup_s']:.0f} s warm-up, "
        f"{result['camera']} camera, inference.isolation {result['isolation']}, seed {result['seed']}.",
        "",
        "| quantity | value |",
        "|---|---|",
        f"| inputs sent | {result['total_inputs']} ({', '.join(f'{k} {v}' for k, v in result['inputs'].items())}) |",
        f"| parameter sets accepted / refused | {result['parameter_sets_accepted']} / "
        f"{result['parameter_sets_refused']} |",
        f"| decodes (DecodeStats) | {result['decode_stats']} |",
        f"| commands published (model / zero / hold) | {commands.get('model', 0)} / {commands.get('zero', 0)} / "
        f"{commands.get('hold', 0)} |",
        f"| twists published | {result['twists']} |",
        f"| unsafe commands or other violations | {len(result['violations'])} |",
        f"| RSS at end of warm-up / at end / max after warm-up (MB) | {rss['warm_mb']:.0f} / {rss['final_mb']:.0f} / "
        f"{rss['max_after_warmup_mb']:.0f} |",
        f"| RSS growth after warm-up (end / max) | {rss['growth_pct']:+.1f} % / {rss['max_growth_pct']:+.1f} % |",
        f"| exit code after SIGINT | {result['exit_code']} |",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600.0, help="traffic after the warm-up (s)")
    parser.add_argument("--warmup", type=float, default=60.0, help="traffic before memory is measured (s)")
    parser.add_argument("--camera", choices=("compressed", "raw"), default="compressed")
    parser.add_argument("--isolation", choices=("thread", "process"), default="thread")
    parser.add_argument("--compile", choices=("auto", "off"), default="auto",
                        help="the node's model.compile (default auto, as the node starts; off: a short smoke run)")
    parser.add_argument("--seed", type=int, default=2022)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    compressed = args.camera == "compressed"

    parameters = node_parameters(args)
    command = [str(Path(sys.executable).parent / "specvla_node"), "--ros-args", "-r", f"__node:={NODE_NAME}"]
    for name, value in parameters.items():
        command += ["-p", ros_argument(name, value)]
    handle = NodeProcess(command, args.out / "node.log")
    context = Context()
    rclpy.init(context=context)
    tester = Node("soak_tester", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(tester)
    run = FuzzRun(tester, executor, handle, {**live_defaults(), **parameters}, node_name=NODE_NAME,
                  compressed=compressed, enable_topic=ENABLE_TOPIC, image_topic=CAMERA_TOPIC)
    # Fewer enable-topic inputs than in CI: each waits up to 1 s for /diagnostics to confirm it.
    traffic = Traffic(args.seed, mix=Mix({"image": 0.64, "task": 0.12, "parameters": 0.13, "enable": 0.10,
                                          "enable_topic": 0.005}))
    try:
        if not wait_for_diagnostics(run, 120.0):
            raise SystemExit(f"the node did not come up; see {args.out / 'node.log'}")
        print(f"node up; warm-up {args.warmup:.0f} s, then {args.seconds:.0f} s of traffic", flush=True)
        run.run(traffic, seconds=args.warmup)
        warm_end_s = time.monotonic() - run.started_mono
        run.run(traffic, seconds=args.seconds, on_second=lambda: progress(run))
        run.restore_defaults(live_defaults())
        run.probe_causes(probes(run, compressed))
        report = run.finish()
    finally:
        executor.shutdown()
        tester.destroy_node()
        rclpy.try_shutdown(context=context)
        if handle.popen.poll() is None:
            handle.popen.kill()

    result = {
        "seconds": args.seconds, "warmup_s": args.warmup, "camera": args.camera, "isolation": args.isolation,
        "seed": args.seed, "total_inputs": report.total_inputs, "inputs": dict(report.inputs),
        "parameter_sets_accepted": report.parameter_sets_accepted,
        "parameter_sets_refused": report.parameter_sets_refused, "decode_stats": report.decode_stats,
        "commands": dict(report.commands), "twists": report.twists, "violations": report.violations,
        "rss": rss_growth(report.rss_samples, warm_end_s), "rss_samples": report.rss_samples,
        "exit_code": report.exit_code,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
    }
    (args.out / "results.json").write_text(json.dumps(result, indent=2))
    (args.out / "results.md").write_text(markdown(result))
    plot(report.rss_samples, warm_end_s, args.out / "rss.png")
    print(markdown(result))
    for violation in report.violations[:20]:
        print(f"VIOLATION: {violation}")
    return 0 if not report.violations and report.exit_code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
