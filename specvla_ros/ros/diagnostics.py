"""The node's health in one DiagnosticStatus: level, a reason a person can act on, key values.

Built by hand (diagnostic_updater is not on PyPI); values are strings, as DiagnosticStatus wants.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

from specvla_ros.ros.incidents import Incident

if TYPE_CHECKING:
    from specvla_ros.core.decoder import DecodeStats

OK, WARN, ERROR = DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR


class RollingWindow:
    """Last N samples of one quantity, for last / p50 / p95."""

    def __init__(self, size: int = 100) -> None:
        self._values: deque[float] = deque(maxlen=size)

    def add(self, value: float) -> None:
        self._values.append(float(value))

    def __len__(self) -> int:
        return len(self._values)

    def last(self) -> float:
        return self._values[-1] if self._values else float("nan")

    def percentile(self, q: float) -> float:
        return float(np.percentile(self._values, q)) if self._values else float("nan")

    def mean(self) -> float:
        return float(np.mean(self._values)) if self._values else float("nan")


class DecodeWindows:
    """The recent decodes as /diagnostics reports them: latencies, acceptance lengths, rate.

    Filled on the worker thread (`record`), read by the 1 Hz diagnostics timer: the caller holds
    the lock that orders the two.
    """

    RATE_WINDOW_S = 5.0

    def __init__(self) -> None:
        self.draft_ms = RollingWindow()
        self.verify_ms = RollingWindow()
        self.total_ms = RollingWindow()
        self.acceptance_length = RollingWindow()
        self._completed_s: deque[float] = deque(maxlen=50)  # monotonic completion times

    def record(self, stats: DecodeStats, now_s: float) -> None:
        """One completed decode (the decoder's own timings), completed at monotonic now_s."""
        self.draft_ms.add(stats.draft_ms)
        self.verify_ms.add(stats.verify_ms)
        self.total_ms.add(stats.total_ms)
        self.acceptance_length.add(stats.mean_acceptance_length)
        self._completed_s.append(now_s)

    def rate_hz(self, now_s: float) -> float:
        """Decodes completed per second over the last RATE_WINDOW_S."""
        return sum(1 for t in self._completed_s if now_s - t <= self.RATE_WINDOW_S) / self.RATE_WINDOW_S


@dataclass
class HealthInputs:
    """Everything the status is computed from, gathered by the node once per second."""

    task_known: bool
    image_age_s: float | None          # None: no frame yet
    image_timeout_s: float
    incidents: list[tuple[int, Incident]]  # (level, incident), most severe first (Incidents.current)
    incident_counts: dict[str, int]    # cause -> occurrences since start-up
    decoding_for_s: float | None       # the decode in flight started this long ago; None when idle
    latency_budget_ms: float
    dry_run: bool
    enabled: bool
    relax_bins: tuple[int, ...]
    mode: str
    dropped_frames: int
    inferences: int
    failed_inferences: int
    commands_published: int
    inference_rate_hz: float
    decodes: DecodeWindows = field(default_factory=DecodeWindows)
    lifecycle_state: str = "active"    # unconfigured, inactive, active, finalized, or a transition state


# Why a node that is not active neither decodes nor commands, and what moves it on.
LIFECYCLE_MESSAGES = {
    "unconfigured": "unconfigured: no model loaded (lifecycle configure loads it)",
    "inactive": "inactive: model loaded, no decoding, no commands (lifecycle activate starts them)",
    "finalized": "finalized: shut down",
}


def assess(inputs: HealthInputs) -> tuple[int, str]:
    """(level, message): the most important thing a person should know right now."""
    if inputs.incidents and inputs.incidents[0][0] == ERROR:
        return ERROR, _incident_message(inputs.incidents)
    if inputs.lifecycle_state != "active":  # intended by whoever drives the lifecycle: not a fault
        return OK, LIFECYCLE_MESSAGES.get(inputs.lifecycle_state, f"{inputs.lifecycle_state} (lifecycle transition)")
    budget_s = inputs.latency_budget_ms / 1000.0
    if inputs.decoding_for_s is not None and inputs.decoding_for_s > budget_s:
        return WARN, (f"decode_over_budget: a decode has been running for {inputs.decoding_for_s:.1f} s "
                      f"(latency_budget_ms {inputs.latency_budget_ms:.0f}); commands follow stale_action_policy")
    if inputs.incidents:
        return WARN, _incident_message(inputs.incidents)
    if inputs.image_age_s is None:
        return WARN, "waiting for camera"
    if inputs.image_age_s > inputs.image_timeout_s:
        return WARN, f"stale camera: last frame {inputs.image_age_s:.2f} s ago"
    if not inputs.task_known:
        return WARN, "no task: publish an instruction"
    total_ms = inputs.decodes.total_ms
    if len(total_ms) and total_ms.last() > inputs.latency_budget_ms:
        return WARN, f"latency over budget: {total_ms.last():.0f} ms > {inputs.latency_budget_ms:.0f} ms"
    if inputs.dry_run:
        return OK, "running (dry run: no commands published)"
    if not inputs.enabled:
        return OK, "running (disabled: call ~/enable)"
    return OK, "running"


def build_status(node_name: str, hardware_id: str, inputs: HealthInputs,
                 extra: dict[str, str] | None = None) -> DiagnosticStatus:
    """The status with every key value; `extra` (transport, decoder process) appended as given."""
    level, message = assess(inputs)
    decodes = inputs.decodes
    values = {
        "lifecycle_state": inputs.lifecycle_state,
        "mode": inputs.mode,
        "relax_bins": " ".join(str(r) for r in inputs.relax_bins),
        "draft_latency_ms_last": _fmt(decodes.draft_ms.last()),
        "draft_latency_ms_p50": _fmt(decodes.draft_ms.percentile(50)),
        "draft_latency_ms_p95": _fmt(decodes.draft_ms.percentile(95)),
        "verify_latency_ms_last": _fmt(decodes.verify_ms.last()),
        "verify_latency_ms_p50": _fmt(decodes.verify_ms.percentile(50)),
        "verify_latency_ms_p95": _fmt(decodes.verify_ms.percentile(95)),
        "total_latency_ms_last": _fmt(decodes.total_ms.last()),
        "total_latency_ms_p50": _fmt(decodes.total_ms.percentile(50)),
        "total_latency_ms_p95": _fmt(decodes.total_ms.percentile(95)),
        "mean_acceptance_length": _fmt(decodes.acceptance_length.mean()),
        "inference_rate_hz": _fmt(inputs.inference_rate_hz),
        "camera_age_s": "none" if inputs.image_age_s is None else _fmt(inputs.image_age_s),
        "dropped_frames": str(inputs.dropped_frames),
        "inferences": str(inputs.inferences),
        "failed_inferences": str(inputs.failed_inferences),
        "commands_published": str(inputs.commands_published),
        "dry_run": str(inputs.dry_run).lower(),
        "enabled": str(inputs.enabled).lower(),
        "decoding_for_s": "idle" if inputs.decoding_for_s is None else _fmt(inputs.decoding_for_s),
        "problems": ", ".join(incident.cause.value for _, incident in inputs.incidents) or "none",
        **{f"count.{cause}": str(count) for cause, count in inputs.incident_counts.items()},
        **(extra or {}),
    }
    return DiagnosticStatus(
        level=level,
        name=f"{node_name}: inference",
        message=message,
        hardware_id=hardware_id,
        values=[KeyValue(key=k, value=v) for k, v in values.items()],
    )


def _incident_message(incidents: list[tuple[int, Incident]]) -> str:
    """The first incident's cause and message, and the other causes by name."""
    first = incidents[0][1]
    others = [incident.cause.value for _, incident in incidents[1:]]
    also = f" (also: {', '.join(others)})" if others else ""
    return f"{first.cause.value}: {first.message}{also}"


def _fmt(value: float) -> str:
    return "nan" if value != value else f"{value:.3f}"
