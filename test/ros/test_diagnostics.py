"""diagnostics.assess: the one message /diagnostics leads with, in the order a person should act on.

Plain values in, (level, message) out: no node, no rclpy spinning.
"""
from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import pytest

from specvla_ros.ros.diagnostics import (
    ERROR,
    OK,
    WARN,
    DecodeWindows,
    HealthInputs,
    RollingWindow,
    assess,
    build_status,
)
from specvla_ros.ros.incidents import Cause, Incident


def healthy(**changes) -> HealthInputs:
    """A node that is active, fed, decoding within budget and commanding; `changes` break one thing."""
    inputs = HealthInputs(
        task_known=True, image_age_s=0.05, image_timeout_s=1.0, incidents=[], incident_counts={},
        decoding_for_s=None, latency_budget_ms=500.0, dry_run=False, enabled=True, relax_bins=(0,) * 7,
        mode="speculative", dropped_frames=0, inferences=10, failed_inferences=0, commands_published=100,
        inference_rate_hz=5.0)
    return replace(inputs, **changes)


def incident(cause: Cause, message: str = "it happened") -> tuple[int, Incident]:
    return cause.level, Incident(cause, message, count=1, active=True)


def decodes(*total_ms: float) -> DecodeWindows:
    windows = DecodeWindows()
    for index, ms in enumerate(total_ms):
        windows.record(SimpleNamespace(draft_ms=1.0, verify_ms=2.0, total_ms=ms, mean_acceptance_length=2.5),
                       now_s=float(index))
    return windows


def test_running_when_nothing_is_wrong() -> None:
    assert assess(healthy()) == (OK, "running")


@pytest.mark.parametrize(("changes", "level", "start"), [
    ({"dry_run": True}, OK, "running (dry run"),
    ({"enabled": False}, OK, "running (disabled: call ~/enable)"),
    ({"task_known": False}, WARN, "no task"),
    ({"image_age_s": None}, WARN, "waiting for camera"),
    ({"image_age_s": 2.5}, WARN, "stale camera: last frame 2.50 s ago"),
    ({"decoding_for_s": 0.8}, WARN, "decode_over_budget: a decode has been running for 0.8 s"),
    ({"lifecycle_state": "inactive"}, OK, "inactive: model loaded"),
    ({"lifecycle_state": "unconfigured"}, OK, "unconfigured: no model loaded"),
    ({"lifecycle_state": "configuring"}, OK, "configuring (lifecycle transition)"),
])
def test_each_condition_has_its_message(changes: dict, level: int, start: str) -> None:
    got_level, message = assess(healthy(**changes))
    assert got_level == level and message.startswith(start), message


def test_latency_over_budget_reads_the_newest_decode() -> None:
    assert assess(healthy(decodes=decodes(900.0, 100.0))) == (OK, "running")  # the last one is in budget
    level, message = assess(healthy(decodes=decodes(100.0, 900.0)))
    assert (level, message) == (WARN, "latency over budget: 900 ms > 500 ms")


def test_error_incident_wins_over_everything_and_names_the_others() -> None:
    inputs = healthy(incidents=[incident(Cause.MODEL_ERROR, "RuntimeError: boom"),
                                incident(Cause.DECODE_OVER_BUDGET)],
                     lifecycle_state="inactive", image_age_s=None, task_known=False, decoding_for_s=9.0)
    assert assess(inputs) == (ERROR, "model_error: RuntimeError: boom (also: decode_over_budget)")


def test_warning_incident_comes_after_lifecycle_and_a_long_decode() -> None:
    warning = [incident(Cause.PARAMETER_REFUSED, "refused parameter update: x")]
    assert assess(healthy(incidents=warning)) == (WARN, "parameter_refused: refused parameter update: x")
    assert assess(healthy(incidents=warning, lifecycle_state="inactive"))[0] == OK
    assert assess(healthy(incidents=warning, decoding_for_s=2.0))[1].startswith("decode_over_budget: a decode")
    # An incident outranks the camera and task checks: it says why, they only say what is missing.
    assert assess(healthy(incidents=warning, image_age_s=None))[1].startswith("parameter_refused")


def test_status_carries_the_windows_and_counts() -> None:
    status = build_status("specvla_node", "model", healthy(decodes=decodes(10.0, 20.0, 30.0),
                                                           incident_counts={"model_error": 2}))
    values = {kv.key: kv.value for kv in status.values}
    assert (status.level, status.message, status.name) == (OK, "running", "specvla_node: inference")
    assert values["total_latency_ms_last"] == "30.000" and values["total_latency_ms_p50"] == "20.000"
    assert values["mean_acceptance_length"] == "2.500" and values["count.model_error"] == "2"
    assert values["decoding_for_s"] == "idle" and values["problems"] == "none"


def test_decode_windows_rate_counts_the_last_five_seconds() -> None:
    windows = decodes(1.0, 1.0, 1.0, 1.0)  # completed at t = 0, 1, 2, 3 s
    assert windows.rate_hz(now_s=3.0) == pytest.approx(4 / 5.0)
    assert windows.rate_hz(now_s=6.5) == pytest.approx(2 / 5.0)  # t = 2 and 3 are within 5 s
    assert len(windows.total_ms) == 4 and RollingWindow().mean() != RollingWindow().mean()  # empty: nan
