"""Decoding in a child process (inference.isolation "process"): the same results as decoding in a
thread, the same mailbox semantics, failures reported, nothing left running.

Real spawned child processes over a real tiny pair saved to disk, and the real node over rclpy.
"""
from __future__ import annotations

import dataclasses
import multiprocessing
import os
import queue
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.parameter import Parameter
from specvla_ros.msg import EndEffectorDelta

from specvla_ros.core.config import DecoderConfig
from specvla_ros.core.errors import ConfigError, InputError
from specvla_ros.core.temporal_draft import TemporalDraftConfig
from specvla_ros.ros.image_conversion import rgb_to_image
from specvla_ros.ros.node import SpecVLANode
from specvla_ros.ros.process_worker import DecoderSpec, DecoderStartError, ProcessWorker
from specvla_ros.ros.worker import InferenceRequest
from test.models import make_pair, random_image
from test.ros.test_node import LIVE, Rig

# Temporal drafting on: its history lives in the child across calls, and must match in-thread decoding.
pytestmark = pytest.mark.slow  # see pytest.ini: make test-fast leaves these out

CONFIG = DecoderConfig(relax_bins=0, temporal=TemporalDraftConfig(enabled=True))
TASK = "pick up the red cube"


class Collector:
    """The worker's callbacks: every (tag, result or error, traceback) in arrival order."""

    def __init__(self) -> None:
        self.replies: queue.Queue = queue.Queue()

    def on_result(self, request, result) -> None:
        self.replies.put((request.image.header.frame_id, result, ""))

    def on_error(self, request, error, trace) -> None:
        self.replies.put((request.image.header.frame_id, error, trace))

    def take(self, count: int, timeout_s: float = 20.0) -> list:
        return [self.replies.get(timeout=timeout_s) for _ in range(count)]


def request(tag: str, rng: np.random.Generator, task: str = TASK, stamp_s: float = 0.0) -> InferenceRequest:
    """A frame as the node receives it, tagged (header.frame_id) to match its reply."""
    msg = rgb_to_image(random_image(rng))
    msg.header.frame_id = tag
    msg.header.stamp.sec, msg.header.stamp.nanosec = int(stamp_s), round(stamp_s % 1 * 1e9)
    return InferenceRequest(msg, task, time.monotonic())


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("process_worker")
    target, head = make_pair(0)
    return target.save(folder / "target"), head.save(folder / "draft")


@pytest.fixture(scope="module")
def spec(checkpoints) -> DecoderSpec:
    return DecoderSpec(str(checkpoints[0]), str(checkpoints[1]), CONFIG)


@pytest.fixture(scope="module")
def served(spec):
    """One decoder process for the module (each start costs seconds: torch imports in the child)."""
    collector = Collector()
    worker = ProcessWorker(spec, collector.on_result, collector.on_error)
    yield worker, collector
    assert worker.stop(timeout_s=5.0)


def test_results_equal_in_thread_decoding(served, spec) -> None:
    worker, collector = served
    rng = np.random.default_rng(7)
    reference = spec.load()  # the same checkpoint and config, decoded on this thread
    requests = [request(str(i), rng, stamp_s=1.0 + 0.1 * i) for i in range(5)]  # young frames: no history reset
    expected = [r.decode_call(frame_times=True).run(reference) for r in requests]
    for index, r in enumerate(requests):  # one at a time: nothing dropped, the history grows in order
        worker.submit(dataclasses.replace(r, received_s=time.monotonic()))  # young, as the reference's
        [(tag, result, _)] = collector.take(1)
        assert tag == str(index)
        want = expected[index]
        assert result.token_ids == want.token_ids
        assert result.bins == want.bins
        np.testing.assert_array_equal(result.action, want.action)
        assert result.stats.accepted_per_step == want.stats.accepted_per_step
        assert result.stats.temporal_candidates == want.stats.temporal_candidates
    # The child kept the temporal history across calls, as the in-thread decoder did.
    assert [r.stats.temporal_candidates for r in expected][1:] != [0] * 4


def test_newest_request_wins_and_drops_are_counted(served) -> None:
    worker, collector = served
    rng = np.random.default_rng(8)
    before = (worker.counters.submitted, worker.counters.dropped, worker.counters.completed)
    worker.submit(request("first", rng))
    deadline = time.monotonic() + 5.0
    while not worker.busy and time.monotonic() < deadline:
        time.sleep(0.0005)
    assert worker.busy
    for tag in ("second", "third", "newest"):  # arrive while the child decodes "first"
        worker.submit(request(tag, rng))
    assert [tag for tag, _, _ in collector.take(2)] == ["first", "newest"]
    assert collector.replies.empty()
    after = (worker.counters.submitted, worker.counters.dropped, worker.counters.completed)
    assert tuple(a - b for a, b in zip(after, before, strict=True)) == (4, 2, 2)


def test_decoder_error_in_child_is_reported_and_serving_goes_on(served) -> None:
    worker, collector = served
    failed = worker.counters.failed
    worker.submit(request("bad", np.random.default_rng(9), task=""))  # refused by the decoder
    [(tag, error, trace)] = collector.take(1)
    assert tag == "bad" and isinstance(error, InputError) and "instruction is empty" in str(error)
    assert "backbone.py" in trace  # the child's traceback reaches the parent's log
    assert worker.counters.failed == failed + 1
    worker.submit(request("good", np.random.default_rng(9)))
    [(tag, result, _)] = collector.take(1)
    assert tag == "good" and len(result.token_ids) == 7


def test_stop_mid_decode_leaves_no_child(spec) -> None:
    collector = Collector()
    worker = ProcessWorker(spec, collector.on_result, collector.on_error)
    pid = worker.pid
    worker.submit(request("in flight", np.random.default_rng(10)))
    started = time.monotonic()
    assert worker.stop(timeout_s=0.5)
    assert time.monotonic() - started < 3.0
    assert not worker.alive and not Path(f"/proc/{pid}").exists()
    assert pid not in [child.pid for child in multiprocessing.active_children()]
    time.sleep(0.05)
    assert all(not isinstance(reply, Exception) for _, reply, _ in list(collector.replies.queue))  # quiet stop


def test_start_timeout_fails_with_typed_error_and_kills_the_child(spec) -> None:
    children = {child.pid for child in multiprocessing.active_children()}
    with pytest.raises(DecoderStartError, match="did not report ready.*inference.start_timeout_s"):
        ProcessWorker(spec, print, print, start_timeout_s=0.01)
    assert {child.pid for child in multiprocessing.active_children()} <= children


def test_missing_model_fails_at_node_start_up(ros_context, tmp_path) -> None:
    children = {child.pid for child in multiprocessing.active_children()}
    overrides = [Parameter("model.path", value=str(tmp_path / "no-such-model")),
                 Parameter("inference.isolation", value="process")]
    with pytest.raises(DecoderStartError, match="could not load the model.*config.json not found"):
        SpecVLANode(context=ros_context, parameter_overrides=overrides)
    assert {child.pid for child in multiprocessing.active_children()} <= children


def test_decoder_object_and_process_isolation_is_refused(ros_context) -> None:
    overrides = [Parameter("inference.isolation", value="process")]
    with pytest.raises(ConfigError, match="pass no decoder, or use inference.isolation 'thread'"):
        SpecVLANode(decoder=object(), context=ros_context, parameter_overrides=overrides)


def test_node_decodes_in_a_child_and_survives_its_death(ros_context, checkpoints) -> None:
    # A 1 s action timeout: on a loaded machine the child's first decodes take hundreds of ms.
    parameters = {**LIVE, "action_timeout_s": 1.0, "model.path": str(checkpoints[0]),
                  "model.draft_path": str(checkpoints[1]), "inference.isolation": "process", "model.compile": "off"}
    rig = Rig(ros_context, None, **parameters)
    try:
        worker = rig.node._worker
        assert isinstance(worker, ProcessWorker) and worker.pid != os.getpid()
        rig.send_task(TASK)
        deadline = time.monotonic() + 15.0
        while EndEffectorDelta.SOURCE_MODEL not in rig.sources() and time.monotonic() < deadline:
            rig.spin(0.5, frame_hz=10)
        rig.spin(1.1, frame_hz=10)  # a diagnostics message after the first model command
        assert rig.stats and EndEffectorDelta.SOURCE_MODEL in rig.sources()
        values = {kv.key: kv.value for kv in rig.last_status().values}
        assert values["decoder_process"].startswith("running (pid")

        os.kill(worker.pid, signal.SIGKILL)
        killed = time.monotonic()
        rig.spin(2.5, frame_hz=10)
        late = rig.sources(since=killed + parameters["action_timeout_s"] + 0.1)
        assert late and set(late) == {EndEffectorDelta.SOURCE_ZERO}  # the timer runs on, with safe zeros
        status = rig.last_status()
        assert status.level == DiagnosticStatus.ERROR and "SIGKILL" in status.message
        assert worker.counters.failed >= 1  # frames after the death fail, counted
        assert rig.destroy_node_under_test() < 3.0
        assert not worker.alive
    finally:
        rig.close()


def test_isolation_parameter_is_checked() -> None:
    from specvla_ros.ros.parameters import SPECS, check_update

    defaults = {spec.name: spec.default for spec in SPECS}
    assert defaults["inference.isolation"] == "thread"  # unchanged behaviour unless asked
    assert "thread, process" in check_update({"inference.isolation": "fork"}, defaults)
    assert check_update({"inference.isolation": "process"}, defaults) is None
