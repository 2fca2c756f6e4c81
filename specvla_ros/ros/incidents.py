"""What went wrong, per cause: counts for diagnostics, one throttled log line per cause, safe text.

Bad input arrives at camera rate: one ERROR line per bad frame floods the log (hundreds a minute)
and hides everything else. Each cause here logs its first occurrence at once, then at most once
per `log_interval_s` with the number of repeats in between. Diagnostics name every cause that is
active (not yet resolved by a good decode or a valid task) and, as WARN, those seen within the
last `recent_s` even if resolved since, so a reader polling at 1 Hz sees intermittent trouble.

Anything echoed from a message (a task, an encoding name) goes through `printable`: control and
format characters are escaped, so a task holding a newline cannot forge a log line, and long
text is cut.
"""
from __future__ import annotations

import threading
import unicodedata
from dataclasses import dataclass
from enum import Enum

from diagnostic_msgs.msg import DiagnosticStatus

OK, WARN, ERROR = DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR


class Cause(str, Enum):
    """Why the node refused something or stopped trusting the model; names appear on /diagnostics."""

    IMAGE_REJECTED = "image_rejected"          # a frame that cannot be converted (encoding, size, data)
    IMAGE_TOO_LARGE = "image_too_large"        # over inputs.max_image_pixels (checked before decoding)
    TASK_REJECTED = "task_rejected"            # empty, or over inputs.max_task_bytes
    MODEL_ERROR = "model_error"                # the decoder raised
    DECODER_PROCESS = "decoder_process"        # the decoder process died or stopped answering
    NONFINITE_OUTPUT = "nonfinite_output"      # NaN/inf logits or action: nothing published from it
    NON_ACTION_TOKENS = "non_action_tokens"    # a text or padding id among the 7 tokens: not published
    DECODE_OVER_BUDGET = "decode_over_budget"  # a decode slower than latency_budget_ms
    PARAMETER_REFUSED = "parameter_refused"    # a parameter update was refused
    TRANSITION_FAILED = "transition_failed"    # a lifecycle transition (configure: the model) failed

    @property
    def level(self) -> int:
        return WARN if self in _WARN_CAUSES else ERROR


_WARN_CAUSES = {Cause.NON_ACTION_TOKENS, Cause.DECODE_OVER_BUDGET, Cause.PARAMETER_REFUSED}
# Resolved by the next decode whose action was published: they concern one frame or one decode.
PER_DECODE = (Cause.IMAGE_REJECTED, Cause.IMAGE_TOO_LARGE, Cause.MODEL_ERROR, Cause.NONFINITE_OUTPUT,
              Cause.NON_ACTION_TOKENS)


def severity(level: int | bytes) -> int:
    """A DiagnosticStatus level as a number (rclpy gives the constants as bytes)."""
    return level[0] if isinstance(level, bytes) else int(level)


def printable(text: object, max_chars: int = 200) -> str:
    """`text` safe to log: control / format / line-separator characters escaped, cut to max_chars."""
    out: list[str] = []
    length = 0
    for char in str(text):
        if unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp"):
            piece = char.encode("unicode_escape").decode("ascii")
        else:
            piece = char
        if length + len(piece) > max_chars:
            out.append(f"... [{len(str(text))} characters]")
            break
        out.append(piece)
        length += len(piece)
    return "".join(out)


@dataclass
class Incident:
    cause: Cause
    message: str        # newest, already printable
    count: int = 0
    last_s: float = 0.0
    active: bool = False
    logged_s: float | None = None
    unlogged: int = 0   # occurrences since the last log line

    @property
    def level(self) -> int:
        return self.cause.level


class Incidents:
    """Thread-safe record of every cause: the node reports, resolves and reads; diagnostics show."""

    def __init__(self, log_interval_s: float = 10.0, recent_s: float = 5.0) -> None:
        self.log_interval_s = log_interval_s
        self.recent_s = recent_s
        self._lock = threading.Lock()
        self._by_cause = {cause: Incident(cause, "") for cause in Cause}

    def report(self, cause: Cause, message: str, now_s: float) -> str | None:
        """Record one occurrence; return the line to log now, or None while throttled."""
        with self._lock:
            incident = self._by_cause[cause]
            incident.message = printable(message, max_chars=400)
            incident.count += 1
            incident.last_s = now_s
            incident.active = True
            if incident.logged_s is not None and now_s - incident.logged_s < self.log_interval_s:
                incident.unlogged += 1
                return None
            repeats = incident.unlogged
            incident.logged_s, incident.unlogged = now_s, 0
        suffix = f" ({repeats} more since the last report)" if repeats else ""
        return f"{cause.value}: {incident.message}{suffix}"

    def resolve(self, causes: tuple[Cause, ...] | list[Cause]) -> None:
        """These causes are over (a good decode, a valid task); they stay 'recent' for a while."""
        with self._lock:
            for cause in causes:
                self._by_cause[cause].active = False

    def current(self, now_s: float) -> list[tuple[int, Incident]]:
        """(level, incident) for every active or recent cause, most severe and newest first.

        Active causes keep their own level; resolved but recent ones show as WARN.
        """
        with self._lock:
            shown = []
            for incident in self._by_cause.values():
                if incident.active:
                    shown.append((incident.level, Incident(**vars(incident))))
                elif incident.count and now_s - incident.last_s <= self.recent_s:
                    shown.append((WARN, Incident(**vars(incident))))
        return sorted(shown, key=lambda item: (-severity(item[0]), -item[1].last_s))

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {cause.value: incident.count for cause, incident in self._by_cause.items()}
