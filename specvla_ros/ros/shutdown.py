"""Clean exit on SIGINT and SIGTERM, whatever the decoder is doing.

rclpy's own handlers shut the context down at the signal, so nothing can be published after it
(no zero commands to stop the arm), and a plain return from main() while the inference thread
is inside a long torch call aborts the interpreter ("terminate called without an active
exception", SIGABRT). Instead:
- `ShutdownSignals` replaces the handlers (rclpy is initialised with SignalHandlerOptions.NO),
  installed by node_entry before torch and rclpy are even imported. During start-up a signal
  raises `ShutdownRequested` (imports or model loading are abandoned; a decoder process already
  started is ended by its own clean-up); once spinning, it only sets a flag that the spin loop
  checks every `poll_s`.
- The node then publishes its zero commands and stops its worker within a bound, and main()
  shuts rclpy down. If the inference thread is still inside a decode, `exit_now` ends the process
  with os._exit: the decoder's thread cannot be interrupted, and interpreter finalisation under it
  is what aborted.
"""
from __future__ import annotations

import logging
import os
import signal
import sys
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # this module is imported before rclpy, to catch signals during the heavy imports
    from rclpy.context import Context
    from rclpy.executors import Executor

HANDLED = (signal.SIGINT, signal.SIGTERM)


class ShutdownRequested(BaseException):
    """A signal arrived before the node was spinning (BaseException: `except Exception` lets it pass)."""


class ShutdownSignals:
    """SIGINT / SIGTERM -> `requested` (the signal's name); raises ShutdownRequested until spinning."""

    def __init__(self) -> None:
        self.requested: str | None = None
        self.raise_on_signal = True  # until spinning (and never again during clean-up)

    def install(self) -> None:
        for signum in HANDLED:
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        first = self.requested is None
        self.requested = signal.Signals(signum).name
        if first and self.raise_on_signal:
            raise ShutdownRequested(self.requested)

    def spin(self, executor: "Executor", context: "Context", poll_s: float = 0.1) -> None:
        """Spin until a signal arrives or the context shuts down."""
        self.raise_on_signal = False
        while self.requested is None and context.ok():
            executor.spin_once(timeout_sec=poll_s)


def exit_now(code: int) -> None:
    """End the process without interpreter finalisation (a decode thread still runs); flush first."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - a closed stream must not keep the process alive
            pass
    os._exit(code)
