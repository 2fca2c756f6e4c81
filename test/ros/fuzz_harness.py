"""Drive specvla_node with fuzz traffic over real DDS (loopback) and audit everything it publishes.

The `Auditor` knows nothing of the node's internals: it keeps its own record of what the node was
told (bounds, speed caps, enable, dry_run) and when, from the replies of the node's services, and
checks every command and twist the node publishes against the record in force at the command's
stamp. While a change is in flight (request sent, reply not yet received) both the old and the new
record are accepted. The invariants:
- every command is finite and within the action bounds in force;
- model and hold commands only when enabled and not in dry-run; zero commands carry zero motion,
  and while stopped at most `zero_commands_on_disable` of them follow each stop;
- every twist is finite, within the speed caps, and still when stopped;
- the node is alive: /diagnostics keeps arriving (and, in process, nothing raised);
- diagnostics name the cause of a refused input (`probe_causes`);
- resident memory stays within a bound (checked by the caller from `Report.rss_*`).

`FuzzRun` drives either an in-process node (CI) or a node process (bench/fuzz_soak.py).
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import TwistStamped
from rcl_interfaces.srv import SetParametersAtomically
from rclpy.executors import Executor
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import CompressedImage, Image
from specvla_ros.msg import EndEffectorDelta
from std_msgs.msg import Bool, String
from std_srvs.srv import SetBool

from specvla_ros.ros.qos import CAMERA_QOS, COMMAND_QOS, TASK_QOS
from test.ros.fuzz_traffic import TASKS, Input, Traffic

TOLERANCE = 1e-6  # the gripper travels as float32
IN_FLIGHT = 2 ** 62  # commit time of a change not yet acknowledged
ALIVE_WITHIN_S = 3.5  # /diagnostics is published at 1 Hz
MOTION = slice(0, 6)


@dataclass(frozen=True)
class Allowed:
    """What the node was told at one moment: the record a command is checked against."""

    low: tuple[float, ...]
    high: tuple[float, ...]
    max_linear: float
    max_angular: float
    live: bool            # enabled and not dry-run
    zeros_after_stop: int
    stop_id: int = -1     # which stop a non-live record belongs to (its zero-command allowance)

    @classmethod
    def from_values(cls, values: dict[str, Any], enabled: bool) -> "Allowed":
        """ValueError when the values could not bound anything (the node must refuse them)."""
        dry_run, zeros = values["dry_run"], values["zero_commands_on_disable"]
        if not isinstance(dry_run, bool) or isinstance(zeros, bool) or not isinstance(zeros, int) or zeros < 0:
            raise ValueError(f"dry_run {dry_run!r}, zero_commands_on_disable {zeros!r}")
        return cls(_seven_finite(values["action_low"]), _seven_finite(values["action_high"]),
                   _finite(values["max_linear_speed_mps"]), _finite(values["max_angular_speed_radps"]),
                   enabled and not dry_run, zeros)

    def within(self, action: np.ndarray) -> bool:
        return bool(np.all(action >= np.asarray(self.low) - TOLERANCE) and
                    np.all(action <= np.asarray(self.high) + TOLERANCE))


def _finite(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
        raise ValueError(f"not a finite, non-negative number: {value!r}")
    return float(value)


def _seven_finite(values: Any) -> tuple[float, ...]:
    if not isinstance(values, (list, tuple)) or len(values) != 7 or any(
            isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v) for v in values):
        raise ValueError(f"not 7 finite numbers: {values!r}")
    return tuple(float(v) for v in values)


def stamp_ns(stamp) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


class Auditor:
    """Checks every command and twist against the record in force at its stamp; collects violations."""

    def __init__(self, initial: Allowed, start_ns: int, node_name: str = "specvla_node") -> None:
        self.status_name = f"{node_name}: "  # other nodes' /diagnostics are not this node's
        self._stops = 0
        self._budget: dict[int, int] = {}
        self._zero_stamps: dict[int, list[int]] = {}
        initial = self._with_stop(initial, None)
        self._history: list[tuple[int, int, Allowed]] = [(start_ns, start_ns, initial)]  # (begin, commit, record)
        self._what: list[str] = ["start"]  # what each change asked for, for violation reports
        self.violations: list[str] = []
        self.sources: Counter = Counter()
        self.twists = 0
        self.last_diagnostics_mono: float | None = None
        self.statuses: list[tuple[float, int, Any]] = []  # (arrival, array stamp ns, DiagnosticStatus)

    def _with_stop(self, record: Allowed, previous: Allowed | None) -> Allowed:
        if record.live:
            return replace(record, stop_id=-1)
        if previous is not None and not previous.live:  # still stopped: the same allowance
            return replace(record, stop_id=previous.stop_id)
        self._stops += 1
        self._budget[self._stops] = 0 if previous is None else max(previous.zeros_after_stop, record.zeros_after_stop)
        return replace(record, stop_id=self._stops)

    @property
    def current(self) -> Allowed:
        return self._history[-1][2]

    def change(self, begin_ns: int, commit_ns: int, record: Allowed, what: str = "") -> None:
        """The node was told `record` by a request sent at begin_ns, acknowledged at commit_ns."""
        self._history.append((begin_ns, commit_ns, self._with_stop(record, self.current)))
        self._what.append(what)

    def propose(self, record: Allowed, what: str) -> None:
        """A change is being sent: until `settle` or `withdraw`, commands may follow either record. It is
        registered before sending because the node's commands after it may arrive before its reply."""
        self.change(time.time_ns(), IN_FLIGHT, record, what)

    def settle(self, commit_ns: int) -> None:
        """The change in flight is known to be in force (its reply, or /diagnostics, said so)."""
        begin, _, record = self._history[-1]
        self._history[-1] = (begin, commit_ns, record)

    def withdraw(self) -> None:
        """The change in flight was refused: the record before it stays in force."""
        self._history.pop()
        self._what.pop()

    def _records_at(self, stamp: int) -> tuple[list[Allowed], bool]:
        """(records that may be in force at `stamp`, whether more than one may be)."""
        settled = len(self._history) - 1  # commands are recent: search from the newest record back
        while settled > 0 and self._history[settled][1] > stamp:
            settled -= 1
        records = [self._history[settled][2]]
        records += [record for begin, commit, record in self._history[settled + 1:] if begin <= stamp]
        return records, len(records) > 1

    def on_command(self, msg: EndEffectorDelta) -> None:
        action = np.array([msg.translation.x, msg.translation.y, msg.translation.z,
                           msg.rotation.x, msg.rotation.y, msg.rotation.z, msg.gripper])
        self.sources[msg.source] += 1
        records, ambiguous = self._records_at(stamp_ns(msg.header.stamp))
        where = f"command (source {msg.source}) {action.round(5).tolist()}"
        if not np.all(np.isfinite(action)):
            self.violations.append(f"non-finite {where}")
            return
        if not any(record.within(action) for record in records):
            self.violations.append(f"{where} outside the bounds in force {[(r.low, r.high) for r in records]}")
        if msg.source in (EndEffectorDelta.SOURCE_MODEL, EndEffectorDelta.SOURCE_HOLD):
            if not any(record.live for record in records):
                self.violations.append(f"{where} published while disabled or in dry-run "
                                       f"({self._describe(stamp_ns(msg.header.stamp))})")
        elif msg.source == EndEffectorDelta.SOURCE_ZERO:
            if np.any(action[MOTION] != 0.0):
                self.violations.append(f"zero {where} carries motion")
            if not ambiguous and not records[0].live:
                stop = records[0].stop_id
                self._budget[stop] -= 1
                self._zero_stamps.setdefault(stop, []).append(stamp_ns(msg.header.stamp))
                if self._budget[stop] < 0:
                    self.violations.append(f"{where}: more zero commands than zero_commands_on_disable after a stop "
                                           f"({self._describe(stamp_ns(msg.header.stamp), stop)})")
        else:
            self.violations.append(f"{where}: unknown source")

    def _describe(self, stamp: int, stop_id: int | None = None) -> str:
        """The changes around `stamp` (ms relative to it): when each was sent and acknowledged, what it
        asked for, the record it made; and the zero commands counted against `stop_id`."""
        last = len(self._history) - 1
        while last > 0 and self._history[last][0] > stamp:
            last -= 1
        lines = []
        for index in range(max(0, last - 3), min(len(self._history), last + 3)):
            begin, commit, record = self._history[index]
            lines.append(f"[{(begin - stamp) / 1e6:+.1f}, {(commit - stamp) / 1e6:+.1f}] {self._what[index]} -> "
                         f"live={record.live} N={record.zeros_after_stop} stop={record.stop_id}")
        zeros = [round((t - stamp) / 1e6, 1) for t in self._zero_stamps.get(stop_id, [])] if stop_id else []
        return "; ".join(lines) + (f"; zeros at {zeros}" if zeros else "")

    def on_twist(self, msg: TwistStamped) -> None:
        self.twists += 1
        linear = np.array([msg.twist.linear.x, msg.twist.linear.y, msg.twist.linear.z])
        angular = np.array([msg.twist.angular.x, msg.twist.angular.y, msg.twist.angular.z])
        records, _ = self._records_at(stamp_ns(msg.header.stamp))
        if not (np.all(np.isfinite(linear)) and np.all(np.isfinite(angular))):
            self.violations.append(f"non-finite twist {linear.tolist()} {angular.tolist()}")
            return
        if not any(np.linalg.norm(linear) <= r.max_linear + TOLERANCE and
                   np.linalg.norm(angular) <= r.max_angular + TOLERANCE for r in records):
            self.violations.append(f"twist {linear.round(4).tolist()} {angular.round(4).tolist()} over the speed caps")
        if (np.any(linear != 0.0) or np.any(angular != 0.0)) and not any(r.live for r in records):
            self.violations.append("moving twist published while disabled or in dry-run")

    def on_diagnostics(self, msg: DiagnosticArray) -> None:
        now = time.monotonic()
        ours = [status for status in msg.status if status.name.startswith(self.status_name)]
        if not ours:
            return
        self.last_diagnostics_mono = now
        self.statuses += [(now, stamp_ns(msg.header.stamp), status) for status in ours]
        del self.statuses[:-50]

    def check_alive(self, started_mono: float) -> None:
        last = self.last_diagnostics_mono if self.last_diagnostics_mono is not None else started_mono
        if time.monotonic() - last > ALIVE_WITHIN_S:
            self.violations.append(f"node not alive: no /diagnostics for {time.monotonic() - last:.1f} s")


def status_values(status) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


# ----- the node under test --------------------------------------------------------------------------
class InProcessNode:
    """A SpecVLANode spun by the harness's executor; it has died when a callback raised out of it."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.died: str | None = None

    def alive(self) -> bool:
        return self.died is None

    def rss_bytes(self) -> int:
        return process_rss_bytes(os.getpid())

    def stop(self) -> int:
        self.node.shutdown()
        return 0


class NodeProcess:
    """`specvla_node` as its own process (as deployed); RSS summed with its decoder process, if any."""

    def __init__(self, arguments: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(arguments, stdout=self.log, stderr=subprocess.STDOUT,
                                      env={**os.environ, **(env or {})})
        self.died: str | None = None

    def alive(self) -> bool:
        if self.popen.poll() is not None and self.died is None:
            self.died = f"exited with {self.popen.returncode}"
        return self.died is None

    def rss_bytes(self) -> int:
        return sum(process_rss_bytes(pid) for pid in [self.popen.pid, *child_pids(self.popen.pid)])

    def stop(self, sig: int = signal.SIGINT, timeout_s: float = 15.0) -> int:
        self.popen.send_signal(sig)
        try:
            code = self.popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            code = self.popen.wait()
        self.log.close()
        return code


def process_rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def child_pids(pid: int) -> list[int]:
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return children


# ----- the run ----------------------------------------------------------------------------------------
@dataclass
class Report:
    inputs: Counter = field(default_factory=Counter)
    parameter_sets_accepted: int = 0
    parameter_sets_refused: int = 0
    decode_stats: int = 0
    violations: list[str] = field(default_factory=list)
    rss_warm_mb: float = 0.0
    rss_max_mb: float = 0.0
    rss_samples: list[tuple[float, float]] = field(default_factory=list)  # (seconds, MB)
    commands: Counter = field(default_factory=Counter)
    twists: int = 0
    seconds: float = 0.0
    exit_code: int | None = None

    @property
    def total_inputs(self) -> int:
        return sum(self.inputs.values())


class FuzzRun:
    """A tester node that sends fuzz traffic to one specvla_node and audits what comes back."""

    def __init__(self, tester: Node, executor: Executor, handle: InProcessNode | NodeProcess,
                 values: dict[str, Any], node_name: str = "specvla_node", compressed: bool = False,
                 enable_topic: str = "", image_topic: str = "/camera/image_raw") -> None:
        self.tester, self.executor, self.handle = tester, executor, handle
        self.values = dict(values)  # what the node was told, as far as it acknowledged
        self.enabled = bool(values["start_enabled"])
        self.compressed = compressed
        self.report = Report()
        self.started_mono = time.monotonic()
        self.auditor = Auditor(Allowed.from_values(self.values, self.enabled), time.time_ns(), node_name)
        prefix = f"/{node_name}"
        self.image_pub = tester.create_publisher(CompressedImage if compressed else Image, image_topic, CAMERA_QOS)
        self.task_pub = tester.create_publisher(String, "/vla/instruction", TASK_QOS)
        self.enable_pub = tester.create_publisher(Bool, enable_topic, TASK_QOS) if enable_topic else None
        tester.create_subscription(EndEffectorDelta, f"{prefix}/command", self.auditor.on_command, COMMAND_QOS)
        if values.get("publish_twist"):
            tester.create_subscription(TwistStamped, values["topics.twist"], self.auditor.on_twist, COMMAND_QOS)
        tester.create_subscription(DiagnosticArray, "/diagnostics", self.auditor.on_diagnostics, 10)
        from specvla_ros.msg import DecodeStats
        tester.create_subscription(DecodeStats, f"{prefix}/decode_stats", self._on_stats, 10)
        self.enable_client = tester.create_client(SetBool, f"{prefix}/enable")
        self.parameter_client = tester.create_client(SetParametersAtomically, f"{prefix}/set_parameters_atomically")

    def _on_stats(self, msg) -> None:
        self.report.decode_stats += 1

    # ----- plumbing --------------------------------------------------------------------------------
    def spin(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while True:
            self._spin_once(0.005)
            if time.monotonic() >= end:
                return

    def _spin_once(self, timeout_s: float) -> None:
        if isinstance(self.handle, InProcessNode) and self.handle.died:
            time.sleep(timeout_s)
            return
        try:
            self.executor.spin_once(timeout_sec=timeout_s)
        except Exception as error:  # noqa: BLE001 - a callback of the node under test raised: it died
            if isinstance(self.handle, InProcessNode):
                self.handle.died = f"{type(error).__name__}: {error}"
            else:
                raise

    def _call(self, client, request, timeout_s: float = 10.0):
        if not client.wait_for_service(timeout_sec=timeout_s):
            return None
        future = client.call_async(request)
        end = time.monotonic() + timeout_s
        while not future.done() and time.monotonic() < end and self.handle.alive():
            self._spin_once(0.005)
        return future.result() if future.done() else None

    def check(self) -> None:
        if not self.handle.alive():
            self.auditor.violations.append(f"node not alive: {self.handle.died}")
        self.auditor.check_alive(self.started_mono)

    # ----- inputs ----------------------------------------------------------------------------------
    def apply(self, item: Input) -> None:
        self.report.inputs[item.kind] += 1
        if item.kind in ("raw_image", "compressed_image"):
            item.payload.header.stamp = self.tester.get_clock().now().to_msg()
            item.payload.header.frame_id = "camera"
            self.image_pub.publish(item.payload)
        elif item.kind == "task":
            self.task_pub.publish(String(data=item.payload))
        elif item.kind == "parameters":
            self.set_parameters(item.payload)
        elif item.kind == "enable":
            self.set_enabled(item.payload)
        elif item.kind == "enable_topic" and self.enable_pub is not None:
            # Only a message that flips the state can be seen to arrive (/diagnostics changes); one that
            # repeats it could arrive after a later service call and undo it, unknown to the audit.
            self.set_enabled_by_topic(not self.enabled)

    def set_parameters(self, updates: dict[str, Any]) -> bool:
        request = SetParametersAtomically.Request()
        request.parameters = [Parameter(name, value=value).to_parameter_msg() for name, value in updates.items()]
        proposed = {**self.values, **updates}
        try:
            record, valid = Allowed.from_values(proposed, self.enabled), True
        except ValueError:  # nothing safe could follow these values: the node must refuse them
            record, valid = self.auditor.current, False
        self.auditor.propose(record, f"set {updates}")
        response = self._call(self.parameter_client, request)
        if response is None:
            self.auditor.violations.append(f"parameters {updates}: no reply")
        if response is None or not response.result.successful:
            self.auditor.withdraw()
            self.report.parameter_sets_refused += 1
            return False
        self.auditor.settle(time.time_ns())
        self.report.parameter_sets_accepted += 1
        if not valid:
            self.auditor.violations.append(f"the node accepted {updates}: non-finite, misshapen or mistyped")
            return True
        self.values = proposed
        return True

    def set_enabled(self, enabled: bool) -> None:
        self.auditor.propose(Allowed.from_values(self.values, enabled), f"enable service {enabled}")
        response = self._call(self.enable_client, SetBool.Request(data=enabled))
        if response is None or not response.success:
            self.auditor.violations.append(f"enable service {enabled}: no reply or refused")
            self.auditor.withdraw()
            return
        self.enabled = enabled
        self.auditor.settle(time.time_ns())

    def set_enabled_by_topic(self, enabled: bool, timeout_s: float = 3.0) -> None:
        """Publish on the enable topic; the change is settled once /diagnostics, stamped after it, agrees.
        `enabled` must differ from the node's state, or the agreement proves nothing."""
        begin = time.time_ns()
        self.auditor.propose(Allowed.from_values(self.values, enabled), f"enable topic {enabled}")
        self.enable_pub.publish(Bool(data=enabled))
        end = time.monotonic() + timeout_s
        while time.monotonic() < end and self.handle.alive():
            self._spin_once(0.005)
            if any(stamp >= begin and status_values(status).get("enabled") == str(enabled).lower()
                   for _, stamp, status in self.auditor.statuses):
                self.enabled = enabled
                self.auditor.settle(time.time_ns())
                return
        self.auditor.violations.append(f"enable topic {enabled} not applied within {timeout_s} s")
        self.auditor.withdraw()

    # ----- phases ----------------------------------------------------------------------------------
    def warm_up(self, seconds: float) -> None:
        """Valid traffic only, then the warm resident memory. Its frames come from a generator of their
        own: how many fit in `seconds` depends on the machine, and the fuzz sequence must not."""
        frames = Traffic(seed=0)
        self.task_pub.publish(String(data=TASKS[0]))
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.apply_frame(frames)
            self.spin(0.05)
        self.report.rss_warm_mb = self.handle.rss_bytes() / 2 ** 20

    def apply_frame(self, traffic: Traffic) -> None:
        rgb = traffic.frame((48, 64))
        if self.compressed:
            import cv2
            msg = CompressedImage(format="jpeg", data=cv2.imencode(".jpg", rgb)[1].tobytes())
        else:
            from specvla_ros.ros.image_conversion import rgb_to_image
            msg = rgb_to_image(rgb)
        msg.header.stamp = self.tester.get_clock().now().to_msg()
        self.image_pub.publish(msg)

    def run(self, traffic: Traffic, count: int | None = None, seconds: float | None = None,
            gap_s: tuple[float, float] = (0.0, 0.03), on_second: Callable[[], None] | None = None) -> None:
        """Send `count` inputs (or for `seconds`), auditing as they go; samples RSS once a second."""
        started = time.monotonic()
        next_sample = started
        sent = 0
        while (count is None or sent < count) and (seconds is None or time.monotonic() - started < seconds):
            if not self.handle.alive():
                break
            self.apply(traffic.next(self.compressed, self.values["inputs.max_task_bytes"]))
            sent += 1
            self.spin(float(traffic.rng.uniform(*gap_s)))
            if time.monotonic() >= next_sample:
                self.sample_rss()
                self.check()
                next_sample += 1.0
                if on_second is not None:
                    on_second()
        self.report.seconds += time.monotonic() - started

    def sample_rss(self) -> None:
        megabytes = self.handle.rss_bytes() / 2 ** 20
        self.report.rss_samples.append((time.monotonic() - self.started_mono, megabytes))
        self.report.rss_max_mb = max(self.report.rss_max_mb, megabytes)

    def restore_defaults(self, defaults: dict[str, Any]) -> None:
        """Back to sane live parameters, enabled, with a valid task (before probing)."""
        live = {name: defaults[name] for name in ("action_low", "action_high", "max_linear_speed_mps",
                                                 "max_angular_speed_radps", "inputs.max_task_bytes",
                                                 "inputs.max_image_pixels", "zero_commands_on_disable",
                                                 "action_timeout_s", "stale_action_policy", "latency_budget_ms")}
        if not self.set_parameters(live):
            self.auditor.violations.append("restoring the default parameters was refused")
        self.set_enabled(True)
        self.task_pub.publish(String(data=TASKS[1]))
        self.spin(0.3)

    def probe_causes(self, probes: list[tuple[str, Callable[[], None]]], timeout_s: float = 4.0) -> None:
        """For each (cause, send): after `send`, a /diagnostics status must count it and name it."""
        for cause, send in probes:
            before = self._latest_count(cause)
            send()
            sent_at = time.monotonic()
            named = False
            while time.monotonic() - sent_at < timeout_s and self.handle.alive():
                self._spin_once(0.01)
                arrival, _, status = self.auditor.statuses[-1] if self.auditor.statuses else (0.0, 0, None)
                if status is None or arrival < sent_at:
                    continue
                values = status_values(status)
                if int(values.get(f"count.{cause}", 0)) > before:
                    named = cause in values.get("problems", "").split(", ")
                    break
            if not named:
                self.auditor.violations.append(f"diagnostics did not name the cause '{cause}' within {timeout_s} s")
            self.report.inputs["probe"] += 1

    def _latest_count(self, cause: str) -> int:
        if not self.auditor.statuses:
            self.spin(1.2)
        if not self.auditor.statuses:
            return 0
        return int(status_values(self.auditor.statuses[-1][2]).get(f"count.{cause}", 0))

    def finish(self, stop: Callable[[], int] | None = None) -> Report:
        """Stop the node (a stop for the auditor), collect its last messages, fill the report."""
        self.check()
        now = time.time_ns()
        self.auditor.change(now, now, replace(self.auditor.current, live=False), "shutdown")
        code = (stop or self.handle.stop)()
        self.spin(0.5)
        self.report.exit_code = code
        self.report.violations = list(self.auditor.violations)
        self.report.commands = Counter({{0: "model", 1: "zero", 2: "hold"}.get(k, k): v
                                        for k, v in self.auditor.sources.items()})
        self.report.twists = self.auditor.twists
        return self.report

