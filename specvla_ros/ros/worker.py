"""The inference worker: newest (frame, task) in, one decode at a time, result out.

A dedicated thread rather than an executor callback: a decode takes tens to hundreds of
milliseconds and must never delay the control timer or the camera callback. Requests go
through a single slot: a frame that arrives while the model is busy replaces the waiting one
(and is counted as dropped), so the model always works on the newest frame.

`MailboxWorker` holds that slot and the loop; `InferenceWorker` runs the job on its thread,
`process_worker.ProcessWorker` forwards it to a decoder in a child process (no shared GIL).
"""
from __future__ import annotations

import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Generic, TypeVar

Request = TypeVar("Request")
Result = TypeVar("Result")


class WorkerStopped(Exception):
    """Raised by `_execute` when stop() cut the job short: nothing to count or report."""


@dataclass
class WorkerCounters:
    submitted: int = 0
    dropped: int = 0      # replaced while waiting: the model was busy with an older frame
    completed: int = 0
    failed: int = 0


class MailboxWorker(Generic[Request, Result]):
    """Single newest-request slot served by one thread; subclasses say how a request is executed.

    `on_result(request, result)` and `on_error(request, exception, traceback_text)` run on the
    worker thread; keep them short (store, publish, count). Subclasses call `_start_thread()` at
    the end of their `__init__`, once `_execute` can run.
    """

    def __init__(
        self,
        on_result: Callable[[Request, Result], None],
        on_error: Callable[[Request, BaseException, str], None],
        name: str = "specvla_inference",
    ) -> None:
        self._on_result = on_result
        self._on_error = on_error
        self._slot: Request | None = None
        self._wake = threading.Condition()
        self._stopping = False
        self._busy = False
        self._busy_since: float | None = None  # monotonic start of the job in flight
        self.counters = WorkerCounters()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _start_thread(self) -> None:
        self._thread.start()

    def _execute(self, request: Request) -> Result:
        raise NotImplementedError

    @property
    def busy(self) -> bool:
        return self._busy

    def busy_for_s(self, now_s: float | None = None) -> float | None:
        """How long the job in flight has run (monotonic seconds); None when idle."""
        since = self._busy_since
        if since is None:
            return None
        return (time.monotonic() if now_s is None else now_s) - since

    def submit(self, request: Request) -> None:
        """Offer the newest request; replaces (and counts) one still waiting."""
        with self._wake:
            if self._slot is not None:
                self.counters.dropped += 1
            self._slot = request
            self.counters.submitted += 1
            self._wake.notify()

    def stop(self, timeout_s: float = 2.0) -> bool:
        """Ask the thread to finish after the current job; True if it ended in time."""
        self._request_stop()
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def _request_stop(self) -> None:
        with self._wake:
            self._stopping = True
            self._slot = None
            self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                while self._slot is None and not self._stopping:
                    self._wake.wait()
                if self._stopping:
                    return
                request, self._slot = self._slot, None
                self._busy = True
                self._busy_since = time.monotonic()
            try:
                result = self._execute(request)
            except WorkerStopped:
                return
            except Exception as error:  # the node stays up whatever the model does
                self.counters.failed += 1
                self._report(self._on_error, request, error, traceback.format_exc())
            else:
                self.counters.completed += 1
                self._report(self._on_result, request, result)
            finally:
                self._busy = False
                self._busy_since = None

    @staticmethod
    def _report(callback: Callable[..., Any], *args: Any) -> None:
        try:
            callback(*args)
        except Exception:  # a failing callback must not kill the thread either
            traceback.print_exc()


class InferenceWorker(MailboxWorker[Request, Result]):
    """Runs `job(request)` on its own thread for the newest submitted request."""

    def __init__(
        self,
        job: Callable[[Request], Result],
        on_result: Callable[[Request, Result], None],
        on_error: Callable[[Request, BaseException, str], None],
        name: str = "specvla_inference",
    ) -> None:
        super().__init__(on_result, on_error, name)
        self._job = job
        self._start_thread()

    def _execute(self, request: Request) -> Result:
        return self._job(request)
