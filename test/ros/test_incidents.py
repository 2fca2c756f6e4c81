"""Incidents: one log line per cause and interval, counts, active vs recent, printable text."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from specvla_ros.ros.incidents import ERROR, WARN, Cause, Incidents, printable


def test_bad_frames_at_camera_rate_log_once_per_interval_with_the_repeats() -> None:
    incidents = Incidents(log_interval_s=10.0)
    lines = [incidents.report(Cause.IMAGE_REJECTED, "empty image", now_s=0.01 * i) for i in range(500)]  # 5 s
    assert [line for line in lines if line] == ["image_rejected: empty image"]
    later = incidents.report(Cause.IMAGE_REJECTED, "empty image", now_s=10.5)
    assert later == "image_rejected: empty image (499 more since the last report)"
    assert incidents.counts()["image_rejected"] == 501
    # Another cause is not silenced by the first one's throttle.
    assert incidents.report(Cause.TASK_REJECTED, "empty task", now_s=10.6) == "task_rejected: empty task"


def test_active_until_resolved_then_recent_as_warn_then_gone() -> None:
    incidents = Incidents(recent_s=5.0)
    incidents.report(Cause.MODEL_ERROR, "RuntimeError: boom", now_s=1.0)
    incidents.report(Cause.NON_ACTION_TOKENS, "2 of the 7 tokens", now_s=2.0)
    shown = incidents.current(now_s=3.0)
    assert [(level, i.cause) for level, i in shown] == [(ERROR, Cause.MODEL_ERROR), (WARN, Cause.NON_ACTION_TOKENS)]
    incidents.resolve([Cause.MODEL_ERROR])
    assert [(level, i.cause) for level, i in incidents.current(now_s=3.0)][0] == (WARN, Cause.NON_ACTION_TOKENS)
    assert (WARN, Cause.MODEL_ERROR) in [(level, i.cause) for level, i in incidents.current(now_s=3.0)]
    assert Cause.MODEL_ERROR not in [i.cause for _, i in incidents.current(now_s=6.5)]  # resolved and old
    assert Cause.NON_ACTION_TOKENS in [i.cause for _, i in incidents.current(now_s=60.0)]  # still active


def test_a_task_with_a_newline_cannot_forge_a_log_line() -> None:
    forged = "pick up\n[ERROR] [0.0] [specvla_node]: forged\r\x1b[2J\u202e"
    text = printable(forged)
    assert "\n" not in text and "\r" not in text and "\x1b" not in text and "\u202e" not in text
    assert text.startswith("pick up\\n[ERROR]")
    incidents = Incidents()
    line = incidents.report(Cause.TASK_REJECTED, f"task '{forged}'", now_s=0.0)
    assert line is not None and "\n" not in line


def test_long_text_is_cut_and_says_how_long_it_was() -> None:
    text = printable("x" * 100_000, max_chars=50)
    assert len(text) < 90 and text.endswith("[100000 characters]")


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(st.text())
def test_printable_never_contains_a_line_break_or_control_character(text: str) -> None:
    import unicodedata

    out = printable(text)
    assert all(unicodedata.category(c) not in ("Cc", "Cf", "Zl", "Zp") for c in out)
