"""The inference worker: newest (frame, task) in, one decode at a time, result out.

A dedicated thread rather than an executor callback: a decode takes tens to hundreds of
milliseconds and must never delay the control timer or the camera callback. Requests go
through a single slot: a frame that arrives while the model is busy replaces the waiting one
(and is counted as dropped), so the model always works on the newest frame.

`MailboxWorker` holds that slot and the loop. Two workers serve the node alike: `InferenceWorker`
decodes on its thread, `process_worker.ProcessWorker` in a child process (no shared GIL). Both take
an `InferenceRequest` (the frame as received), turn it into a `DecodeCall` (the decoder's
arguments) on the worker thread when its decode starts, and give the decoder's `ActionResult`.
"""
from __future__ import annotations

import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Generic, Protocol, TypeVar

import numpy as np
from sensor_msgs.msg import CompressedImage, Image

from specvla_ros.core.decoder import ActionResult
from specvla_ros.ros.image_conversion import to_rgb
from specvla_ros.ros.messages import time_to_ns

Request = TypeVar("Request")
Result = TypeVar("Result")


class Decoder(Protocol):
    """What both workers decode with: the core's decoders (times only with temporal drafting)."""

    def decode(self, image: np.ndarray, instruction: str, **times: float) -> ActionResult: ...


@dataclass(frozen=True)
class DecodeCall:
    """One decode: the arguments of `decoder.decode`. Times only when temporal drafting reads them."""

    image: np.ndarray            # (H, W, 3) uint8 rgb
    instruction: str
    time_s: float | None = None        # the frame's stamp (or arrival), seconds
    frame_age_s: float | None = None   # how long the frame waited before decoding, seconds

    def run(self, decoder: Decoder) -> ActionResult:
        if self.time_s is None and self.frame_age_s is None:
            return decoder.decode(self.image, self.instruction)
        return decoder.decode(self.image, self.instruction, time_s=self.time_s, frame_age_s=self.frame_age_s)


@dataclass(frozen=True)
class InferenceRequest:
    """A frame and the task to decode it for, as the node received them."""

    image: Image | CompressedImage
    task: str
    received_s: float  # monotonic arrival time of the frame

    def decode_call(self, frame_times: bool) -> DecodeCall:
        """The decoder's arguments; called when the decode starts (the frame's age), on the worker
        thread (conversion fails there, as an InputError). Temporal drafting's reset rules need the
        frame's time (its stamp; arrival if unstamped) and age: `frame_times`."""
        rgb = to_rgb(self.image)
        if not frame_times:
            return DecodeCall(rgb, self.task)
        stamp_ns = time_to_ns(self.image.header.stamp)
        return DecodeCall(rgb, self.task, time_s=stamp_ns / 1e9 if stamp_ns else self.received_s,
                          frame_age_s=time.monotonic() - self.received_s)


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


class InferenceWorker(MailboxWorker[InferenceRequest, ActionResult]):
    """Decodes the newest submitted request on its own thread, with a decoder in this process.

    `frame_times`: pass the frame's time and age to the decoder (temporal drafting reads them).
    """

    def __init__(
        self,
        decoder: Decoder,
        on_result: Callable[[InferenceRequest, ActionResult], None],
        on_error: Callable[[InferenceRequest, BaseException, str], None],
        frame_times: bool = False,
        name: str = "specvla_inference",
    ) -> None:
        super().__init__(on_result, on_error, name)
        self._decoder: Decoder | None = decoder
        self._frame_times = frame_times
        # What loading decided (decoder.tree.auto's choice), for the node's log; as ProcessWorker's.
        self.start_notes: list[str] = list(getattr(decoder, "start_notes", []))
        self._start_thread()

    @property
    def decoder(self) -> Decoder | None:
        """The decoder in this process; None once stopped."""
        return self._decoder

    def _execute(self, request: InferenceRequest) -> ActionResult:
        decoder = self._decoder
        if decoder is None:
            raise WorkerStopped()
        return request.decode_call(self._frame_times).run(decoder)

    def stop(self, timeout_s: float = 2.0) -> bool:
        """As MailboxWorker.stop; the decoder is let go, so the model is freed once no decode uses it."""
        stopped = super().stop(timeout_s)
        self._decoder = None
        return stopped
