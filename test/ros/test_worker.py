"""The single-slot mailbox (MailboxWorker) and the in-process InferenceWorker, without a node.

Jobs are held on events, so every claim about what runs, what is dropped and what is reported is
checked at a known moment, not by timing.
"""
from __future__ import annotations

import queue
import threading
import time

import numpy as np
import pytest

from specvla_ros.ros.image_conversion import rgb_to_image
from specvla_ros.ros.worker import InferenceRequest, InferenceWorker, MailboxWorker, WorkerStopped

TIMEOUT_S = 5.0


class HeldWorker(MailboxWorker[str, str]):
    """Each job waits until released; 'fail' raises, 'stopped' ends the thread quietly."""

    def __init__(self) -> None:
        self.results: queue.Queue = queue.Queue()
        self.started: queue.Queue = queue.Queue()
        self.release = threading.Semaphore(0)
        super().__init__(lambda request, result: self.results.put(("result", request, result)),
                         lambda request, error, trace: self.results.put(("error", request, error, trace)))
        self._start_thread()

    def _execute(self, request: str) -> str:
        self.started.put(request)
        assert self.release.acquire(timeout=TIMEOUT_S)
        if request == "fail":
            raise ValueError("bad request")
        if request == "stopped":
            raise WorkerStopped()
        return request.upper()

    def run_one(self, request: str) -> tuple:
        self.submit(request)
        assert self.started.get(timeout=TIMEOUT_S) == request
        self.release.release()
        return self.results.get(timeout=TIMEOUT_S)


@pytest.fixture
def worker():
    worker = HeldWorker()
    yield worker
    for _ in range(4):
        worker.release.release()  # nothing left held
    assert worker.stop(timeout_s=TIMEOUT_S)


def test_each_request_gets_its_result(worker: HeldWorker) -> None:
    assert worker.run_one("a") == ("result", "a", "A")
    assert worker.run_one("b") == ("result", "b", "B")
    assert (worker.counters.submitted, worker.counters.completed, worker.counters.dropped) == (2, 2, 0)


def test_newest_request_replaces_the_waiting_one(worker: HeldWorker) -> None:
    worker.submit("first")
    assert worker.started.get(timeout=TIMEOUT_S) == "first"  # busy with it
    assert worker.busy and worker.busy_for_s() >= 0.0
    for request in ("second", "third", "newest"):
        worker.submit(request)
    worker.release.release()
    assert worker.results.get(timeout=TIMEOUT_S) == ("result", "first", "FIRST")
    assert worker.started.get(timeout=TIMEOUT_S) == "newest"  # second and third never ran
    worker.release.release()
    assert worker.results.get(timeout=TIMEOUT_S) == ("result", "newest", "NEWEST")
    assert (worker.counters.submitted, worker.counters.dropped, worker.counters.completed) == (4, 2, 2)


def test_an_error_is_reported_with_its_traceback_and_serving_goes_on(worker: HeldWorker) -> None:
    kind, request, error, trace = worker.run_one("fail")
    assert (kind, request, type(error), str(error)) == ("error", "fail", ValueError, "bad request")
    assert "ValueError: bad request" in trace
    assert worker.run_one("next") == ("result", "next", "NEXT")
    assert (worker.counters.failed, worker.counters.completed) == (1, 1)


def test_a_failing_callback_does_not_kill_the_thread(capsys) -> None:
    served: list[str] = []

    class Worker(MailboxWorker[str, str]):
        def __init__(self) -> None:
            super().__init__(self._on_result, lambda *args: None)
            self._start_thread()

        def _execute(self, request: str) -> str:
            return request

        def _on_result(self, request: str, result: str) -> None:
            served.append(request)
            if request == "crash":
                raise RuntimeError("callback bug")

    worker = Worker()
    try:
        for request in ("crash", "after"):
            worker.submit(request)
            deadline = time.monotonic() + TIMEOUT_S
            while request not in served and time.monotonic() < deadline:
                time.sleep(0.001)
        assert served == ["crash", "after"]
    finally:
        assert worker.stop(timeout_s=TIMEOUT_S)
    assert "callback bug" in capsys.readouterr().err  # printed, not swallowed


def test_worker_stopped_ends_the_thread_without_a_report(worker: HeldWorker) -> None:
    worker.submit("stopped")
    assert worker.started.get(timeout=TIMEOUT_S) == "stopped"
    worker.release.release()
    worker._thread.join(TIMEOUT_S)
    assert not worker._thread.is_alive() and worker.results.empty()
    assert (worker.counters.completed, worker.counters.failed) == (0, 0)


def test_stop_waits_for_the_job_in_flight_up_to_its_timeout(worker: HeldWorker) -> None:
    worker.submit("long")
    assert worker.started.get(timeout=TIMEOUT_S) == "long"
    worker.submit("waiting")  # dropped by the stop: never runs
    started = time.monotonic()
    assert not worker.stop(timeout_s=0.05)  # the job still holds the thread
    assert time.monotonic() - started < 1.0
    worker.release.release()
    assert worker.stop(timeout_s=TIMEOUT_S)
    assert worker.results.get(timeout=TIMEOUT_S) == ("result", "long", "LONG")  # the job in flight completes
    assert worker.started.empty() and not worker.busy and worker.busy_for_s() is None


class RecordingDecoder:
    def __init__(self) -> None:
        self.calls: list[tuple[np.ndarray, str, dict]] = []
        self.start_notes = ["tree shape chosen"]

    def decode(self, image: np.ndarray, instruction: str, **times: float):
        self.calls.append((image, instruction, times))
        return "action"


@pytest.mark.parametrize("frame_times", [False, True])
def test_inference_worker_converts_the_frame_and_passes_times_when_asked(frame_times: bool) -> None:
    decoder, results = RecordingDecoder(), queue.Queue()
    worker = InferenceWorker(decoder, lambda request, result: results.put(result),
                             lambda request, error, trace: results.put(error), frame_times=frame_times)
    assert worker.start_notes == ["tree shape chosen"]
    rgb = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    msg = rgb_to_image(rgb, encoding="bgr8")
    msg.header.stamp.sec, msg.header.stamp.nanosec = 12, 500_000_000
    try:
        worker.submit(InferenceRequest(msg, "pick", received_s=time.monotonic()))
        assert results.get(timeout=TIMEOUT_S) == "action"
    finally:
        assert worker.stop(timeout_s=TIMEOUT_S)
    [(image, instruction, times)] = decoder.calls
    np.testing.assert_array_equal(image, rgb)  # bgr8 on the wire, rgb to the decoder
    assert instruction == "pick"
    if frame_times:
        assert times["time_s"] == pytest.approx(12.5) and 0.0 <= times["frame_age_s"] < TIMEOUT_S
    else:
        assert times == {}


def test_inference_worker_reports_an_unconvertible_frame_and_lets_go_of_the_decoder() -> None:
    errors = queue.Queue()
    worker = InferenceWorker(RecordingDecoder(), lambda *args: None,
                             lambda request, error, trace: errors.put(error))
    msg = rgb_to_image(np.zeros((4, 6, 3), np.uint8))
    msg.encoding = "16UC1"  # depth: refused before the decoder sees it
    worker.submit(InferenceRequest(msg, "pick", received_s=time.monotonic()))
    assert "not a colour image" in str(errors.get(timeout=TIMEOUT_S))
    assert worker.stop(timeout_s=TIMEOUT_S)
    assert worker.decoder is None  # the model can be freed once the worker is stopped
