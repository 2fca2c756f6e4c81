#!/usr/bin/env python3
"""The node under load: control-period jitter, command age, overhead beyond the decoder, CPU, memory.

    .venv/bin/python bench/node_benchmark.py --out out/bench/node                 # 60 s at 30 Hz
    .venv/bin/python bench/node_benchmark.py --seconds 600 --out out/bench/soak   # the 10-minute soak
    .venv/bin/python bench/node_benchmark.py --isolation process --out out/bench/node-process

--isolation process runs the node with inference.isolation "process" (the decoder in a child
process), so the two can be measured side by side.

Starts `specvla node` as its own process (as deployed) on the embedded pair, with real rclpy
publishers feeding it camera frames at --camera-hz and a task, and a subscriber recording what it
publishes. Reports, from the node's own stamps:
  * publish-period jitter: |header-stamp interval - 1 / control_rate_hz| of consecutive commands;
  * command age at publish: header stamp - image stamp of the frame the action came from;
  * overhead beyond the decoder: (decode-stats stamp - frame stamp) - the decode's own time, i.e.
    transport, image conversion, mailbox and bookkeeping around the decoder;
  * timer wait: first command carrying the action - decode-stats stamp (commands go out on the
    control timer, so this is up to one control period by design);
  * CPU use of the node, and its resident memory over time (growth after the first 10 s), both
    summed over the node's process and its children (the decoder process with --isolation process).
Writes results.json, results.md and rss.png. ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST is set here.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

import rclpy  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from specvla_ros.msg import DecodeStats, EndEffectorDelta  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from specvla_ros.ros.qos import CAMERA_QOS, COMMAND_QOS, STATS_QOS, TASK_QOS  # noqa: E402

NODE_NAME = "specvla_bench_node"


def stamp_ns(stamp) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


def load_frames(path: Path | None) -> tuple[list[np.ndarray], str]:
    if path is not None:
        with np.load(path) as frames:
            return list(frames["images"]), str(frames["instructions"][0])
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (224, 224, 3), dtype=np.uint8) for _ in range(8)], "pick up the red cube"


def _stat_fields(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None


def process_tree(pid: int) -> list[int]:
    """pid and all its descendants (the decoder process and multiprocessing's helper), from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat_fields(int(entry.name))) is not None:
            parents.setdefault(int(fields[1]), []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(parents.get(current, []))
    return tree


def proc_stats(pid: int) -> dict[int, tuple[float, float]]:
    """pid -> (CPU seconds used, resident MB) for a process and its descendants, from /proc."""
    ticks, page = os.sysconf("SC_CLK_TCK"), os.sysconf("SC_PAGE_SIZE")
    stats = {}
    for member in process_tree(pid):
        if (fields := _stat_fields(member)) is not None:
            stats[member] = ((int(fields[11]) + int(fields[12])) / ticks, int(fields[21]) * page / 2**20)
    return stats


def cpu_seconds_since(start: dict[int, tuple[float, float]], end: dict[int, tuple[float, float]]) -> float:
    return sum(cpu - start.get(pid, (0.0, 0.0))[0] for pid, (cpu, _) in end.items())


def rss_mb(stats: dict[int, tuple[float, float]]) -> float:
    return sum(mb for _, mb in stats.values())


def start_node(args: argparse.Namespace) -> subprocess.Popen:
    from specvla_ros.models import model_pair

    model = model_pair(args.model, args.draft)
    if model.draft_path is None:
        raise SystemExit("--model needs --draft (the draft head trained for that model)")
    target, draft = model.target_path, model.draft_path
    command = [sys.executable, "-m", "specvla_ros.cli", "node", "--ros-args", "-r", f"__node:={NODE_NAME}",
               "-p", f"model.path:={target}", "-p", f"model.draft_path:={draft}",
               "-p", f"decoder.relax_bins:=[{args.relax_bins}]", "-p", f"control_rate_hz:={args.rate}",
               "-p", "dry_run:=false", "-p", "start_enabled:=true", "-p", "action_timeout_s:=1.0",
               "-p", "latency_budget_ms:=5000.0", "-p", f"inference.isolation:={args.isolation}",
               "-p", f"model.compile:={args.compile}"]
    for parameter in args.param:
        command += ["-p", parameter]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


class Probe:
    """Feeds the node (camera + task) and records its commands and decode stats."""

    def __init__(self, node, frames: list[np.ndarray], instruction: str) -> None:
        self.node, self.frames, self.instruction = node, frames, instruction
        self.image_pub = node.create_publisher(Image, "/camera/image_raw", CAMERA_QOS)
        self.task_pub = node.create_publisher(String, "/vla/instruction", TASK_QOS)
        self.commands: list[tuple[int, int, int]] = []  # (header ns, image ns, source)
        self.stats: dict[int, tuple[float, int]] = {}   # image ns -> (decode total ms, stats stamp ns)
        node.create_subscription(EndEffectorDelta, f"/{NODE_NAME}/command", self._on_command, COMMAND_QOS)
        node.create_subscription(DecodeStats, f"/{NODE_NAME}/decode_stats", self._on_stats, STATS_QOS)
        self.published = 0

    def _on_command(self, msg: EndEffectorDelta) -> None:
        self.commands.append((stamp_ns(msg.header.stamp), stamp_ns(msg.image_stamp), msg.source))

    def _on_stats(self, msg: DecodeStats) -> None:
        self.stats[stamp_ns(msg.image_stamp)] = (msg.total_ms, stamp_ns(msg.header.stamp))

    def publish_task(self) -> None:
        self.task_pub.publish(String(data=self.instruction))

    def publish_frame(self) -> None:
        frame = self.frames[self.published % len(self.frames)]
        msg = Image(height=frame.shape[0], width=frame.shape[1], encoding="rgb8", step=frame.shape[1] * 3,
                    data=frame.tobytes())
        msg.header.stamp = self.node.get_clock().now().to_msg()
        msg.header.frame_id = "camera"
        self.image_pub.publish(msg)
        self.published += 1


def summarize(probe: Probe, rate: float, warmup_ns: int, cpu_s: float, wall_s: float,
              rss: list[tuple[float, float]]) -> dict:
    commands = [c for c in probe.commands if c[0] >= warmup_ns]
    stamps = np.array([c[0] for c in commands], dtype=np.int64)
    periods_ms = np.diff(stamps) / 1e6
    jitter_ms = np.abs(periods_ms - 1000.0 / rate)
    model = [c for c in commands if c[2] == EndEffectorDelta.SOURCE_MODEL]
    age_ms = np.array([(header - image) / 1e6 for header, image, _ in model if image > 0])
    first_command: dict[int, int] = {}
    for header, image, _ in model:
        first_command.setdefault(image, header)
    decoded = {image: probe.stats[image] for image in first_command if image in probe.stats}
    overhead_ms = np.array([(stats_ns - image) / 1e6 - total for image, (total, stats_ns) in decoded.items()])
    timer_wait_ms = np.array([(first_command[image] - stats_ns) / 1e6 for image, (_, stats_ns) in decoded.items()])
    rss_after = [mb for t, mb in rss if t >= 10.0] or [mb for _, mb in rss]

    def pct(values: np.ndarray, q: float) -> float:
        return float(np.percentile(values, q)) if len(values) else float("nan")

    return {
        "control_rate_hz": rate, "commands": len(commands), "frames_published": probe.published,
        "frames_decoded": len(probe.stats), "model_commands": len(model),
        "period_ms_p50": pct(periods_ms, 50), "jitter_ms_p50": pct(jitter_ms, 50), "jitter_ms_p99": pct(jitter_ms, 99),
        "jitter_ms_max": pct(jitter_ms, 100),
        "command_age_ms_p50": pct(age_ms, 50), "command_age_ms_p99": pct(age_ms, 99),
        "overhead_ms_p50": pct(overhead_ms, 50), "overhead_ms_p95": pct(overhead_ms, 95),
        "timer_wait_ms_p50": pct(timer_wait_ms, 50), "timer_wait_ms_p95": pct(timer_wait_ms, 95),
        "decode_ms_p50": pct(np.array([total for total, _ in probe.stats.values()]), 50),
        # The node's first camera frame after "ready": compiled graphs must already exist (model.compile).
        "first_decode_ms": probe.stats[min(probe.stats)][0] if probe.stats else float("nan"),
        "node_cpu_percent": 100.0 * cpu_s / wall_s,
        "rss_mb_start": rss_after[0], "rss_mb_end": rss_after[-1], "rss_growth_mb": rss_after[-1] - rss_after[0],
        "rss_samples": rss,
    }


def markdown(result: dict, seconds: float) -> str:
    r = result
    return "\n".join([
        f"# Node benchmark: {seconds:g} s at {r['control_rate_hz']:g} Hz control, decoder in a "
        f"{r['isolation']}", "",
        "| measure | value |", "|---|---|",
        f"| commands / model commands | {r['commands']} / {r['model_commands']} |",
        f"| frames published / decoded | {r['frames_published']} / {r['frames_decoded']} |",
        f"| publish period p50 | {r['period_ms_p50']:.2f} ms |",
        f"| period jitter p50 / p99 / max | {r['jitter_ms_p50']:.2f} / {r['jitter_ms_p99']:.2f} / "
        f"{r['jitter_ms_max']:.2f} ms |",
        f"| command age at publish p50 / p99 | {r['command_age_ms_p50']:.1f} / {r['command_age_ms_p99']:.1f} ms |",
        f"| decode p50 / first frame after ready | {r['decode_ms_p50']:.1f} / {r['first_decode_ms']:.1f} ms |",
        f"| overhead beyond the decoder p50 / p95 | {r['overhead_ms_p50']:.2f} / {r['overhead_ms_p95']:.2f} ms |",
        f"| wait for the control tick p50 / p95 | {r['timer_wait_ms_p50']:.1f} / {r['timer_wait_ms_p95']:.1f} ms |",
        f"| node CPU (all its processes) | {r['node_cpu_percent']:.0f} % of one core |",
        f"| resident memory after 10 s: start / end / growth | {r['rss_mb_start']:.0f} / {r['rss_mb_end']:.0f} / "
        f"{r['rss_growth_mb']:+.1f} MB |", ""])


def plot_rss(rss: list[tuple[float, float]], path: Path) -> None:
    try:
        import matplotlib
    except ImportError:
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axis = plt.subplots(figsize=(6, 3))
    axis.plot([t for t, _ in rss], [mb for _, mb in rss])
    axis.set_xlabel("s")
    axis.set_ylabel("node resident memory (MB)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=30.0, help="node control_rate_hz (default 30)")
    parser.add_argument("--camera-hz", type=float, default=30.0)
    parser.add_argument("--relax-bins", type=int, default=0, help="the node's decoder.relax_bins (default 0, as the node starts)")
    parser.add_argument("--threads", type=int, default=1, help="OMP threads of the node process")
    parser.add_argument("--isolation", choices=("thread", "process"), default="thread",
                        help="the node's inference.isolation: decoder on a thread of the node (default) or "
                             "in a child process")
    parser.add_argument("--param", action="append", default=[], metavar="NAME:=VALUE",
                        help="one more node parameter (repeat), e.g. --param decoder.mode:=autoregressive")
    parser.add_argument("--start-timeout", type=float, default=600.0, help="seconds to wait for the node's first "
                        "decode (loading, compiling, decoder.tree.auto; default 600)")
    parser.add_argument("--compile", default="auto", choices=("auto", "off", "default", "reduce-overhead"),
                        help="the node's model.compile (default auto, as the node starts)")
    parser.add_argument("--frames", type=Path, default=Path(__file__).parent / "data" / "tabletop_frames.npz")
    parser.add_argument("--model", type=Path)
    parser.add_argument("--draft", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    frames, instruction = load_frames(args.frames if args.frames.is_file() else None)
    process = start_node(args)
    rclpy.init()
    node = rclpy.create_node("specvla_bench_probe")
    probe = Probe(node, frames, instruction)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        deadline = time.monotonic() + args.start_timeout  # model load, compilation, decoder.tree.auto, discovery
        while not probe.stats and time.monotonic() < deadline:
            if process.poll() is not None:
                raise SystemExit(f"the node exited: {process.stderr.read()[-2000:]}")
            probe.publish_task()
            probe.publish_frame()
            time.sleep(0.2)
        if not probe.stats:
            raise SystemExit(f"the node decoded nothing within {args.start_timeout:g} s (--start-timeout)")
        probe.commands.clear()
        warmup_ns = node.get_clock().now().nanoseconds
        cpu_start = proc_stats(process.pid)
        started = time.monotonic()
        next_frame, next_sample = started, started
        rss: list[tuple[float, float]] = []
        while time.monotonic() - started < args.seconds:
            now = time.monotonic()
            if now >= next_frame:
                probe.publish_frame()
                next_frame += 1.0 / args.camera_hz
            if now >= next_sample:
                rss.append((now - started, rss_mb(proc_stats(process.pid))))
                next_sample += 1.0
            time.sleep(max(0.0, min(next_frame, next_sample) - time.monotonic()))
        wall_s = time.monotonic() - started
        cpu_s = cpu_seconds_since(cpu_start, proc_stats(process.pid))
        time.sleep(0.5)  # the last stats messages
        result = summarize(probe, args.rate, warmup_ns, cpu_s, wall_s, rss)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    result.update({"seconds": args.seconds, "camera_hz": args.camera_hz, "relax_bins": args.relax_bins,
                   "node_threads": args.threads, "isolation": args.isolation})
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(result, indent=1) + "\n")
    table = markdown(result, args.seconds)
    (args.out / "results.md").write_text(table)
    plot_rss(result["rss_samples"], args.out / "rss.png")
    print(table)
    print(f"written: {args.out / 'results.json'}, {args.out / 'results.md'}, {args.out / 'rss.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
