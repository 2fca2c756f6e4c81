"""specvla_node as a managed node, driven through the standard lifecycle services by a client node.

Real rclpy, real DDS on loopback, the real tiny VLA: a "manager" node calls /specvla_node/change_state
and /specvla_node/get_state (lifecycle_msgs) as `ros2 lifecycle set` or launch_ros would.
"""
from __future__ import annotations

import threading
import time

import pytest
from diagnostic_msgs.msg import DiagnosticStatus
from lifecycle_msgs.msg import Transition, TransitionEvent
from lifecycle_msgs.srv import ChangeState, GetAvailableTransitions, GetState
from rclpy.lifecycle import TransitionCallbackReturn
from specvla_ros.msg import EndEffectorDelta

from specvla_ros.models import BUNDLED
from test.ros.conftest import spin_until
from test.ros.test_node import LIVE, Rig

MODEL, ZERO = EndEffectorDelta.SOURCE_MODEL, EndEffectorDelta.SOURCE_ZERO
TASK = "pick up the red cube"
MANUAL = {**LIVE, "autostart": False, "zero_commands_on_disable": 3}


class Manager:
    """The lifecycle services of /specvla_node, called from the rig's tester node."""

    def __init__(self, rig: Rig) -> None:
        self.rig = rig
        tester = rig.tester
        self._change = tester.create_client(ChangeState, "/specvla_node/change_state")
        self._get = tester.create_client(GetState, "/specvla_node/get_state")
        self._transitions = tester.create_client(GetAvailableTransitions, "/specvla_node/get_available_transitions")
        self.events: list[tuple[str, str]] = []
        tester.create_subscription(TransitionEvent, "/specvla_node/transition_event",
                                   lambda e: self.events.append((e.start_state.label, e.goal_state.label)), 10)
        for client in (self._change, self._get, self._transitions):
            assert client.wait_for_service(timeout_sec=10.0), f"{client.srv_name} not offered"
        # A request sent before DDS has matched both directions of a service can be lost: ask for the
        # state until an answer comes back, so that every later call's answer arrives.
        for _ in range(20):
            future = self._get.call_async(GetState.Request())
            rig.executor.spin_until_future_complete(future, timeout_sec=1.0)
            if future.done():
                break
            self._get.remove_pending_request(future)
        assert future.done(), "get_state never answered"

    def _call(self, client, request):
        future = client.call_async(request)
        self.rig.executor.spin_until_future_complete(future, timeout_sec=120.0)  # configure loads a model
        assert future.done(), f"{client.srv_name} did not answer"
        return future.result()

    def change(self, transition_id: int) -> bool:
        return self._call(self._change, ChangeState.Request(transition=Transition(id=transition_id))).success

    def state(self) -> str:
        return self._call(self._get, GetState.Request()).current_state.label

    def available(self) -> set[str]:
        reply = self._call(self._transitions, GetAvailableTransitions.Request())
        return {item.transition.label for item in reply.available_transitions}


def lifecycle_values(rig: Rig, since: int = 0) -> list[str]:
    return [kv.value for status in rig.diagnostics[since:] for kv in status.values if kv.key == "lifecycle_state"]


def spin_until_model_commands(rig: Rig, since: float = 0.0, timeout_s: float = 30.0) -> bool:
    """Feed frames at 10 Hz until a model command stamped after `since` arrives (a loaded machine decodes slowly)."""
    deadline = time.monotonic() + timeout_s
    while MODEL not in rig.sources(since=since) and time.monotonic() < deadline:
        rig.spin(0.3, frame_hz=10)
    return MODEL in rig.sources(since=since)


def inference_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "specvla_inference" and t.is_alive()]


@pytest.mark.slow
def test_transitions_over_the_standard_services(make_rig, spec_decoder) -> None:
    rig = make_rig(spec_decoder, **MANUAL)
    manager = Manager(rig)
    assert manager.state() == "unconfigured"
    assert manager.available() == {"configure", "shutdown"}
    rig.send_task(TASK)
    rig.spin(1.2, frame_hz=10)
    assert rig.commands == [] and not rig.stats  # no model, no topics yet
    assert lifecycle_values(rig)[-1] == "unconfigured" and rig.last_status().level == DiagnosticStatus.OK

    # configure: the model is checked and the worker starts; nothing decodes or publishes while inactive.
    assert manager.change(Transition.TRANSITION_CONFIGURE)
    assert manager.state() == "inactive" and len(inference_threads()) == 1
    seen = len(rig.diagnostics)
    rig.spin(1.2, frame_hz=10)
    assert rig.commands == [] and not rig.stats
    assert lifecycle_values(rig, seen)[-1] == "inactive"

    # activate: decoding and commands (dry_run false, start_enabled true in MANUAL).
    assert manager.change(Transition.TRANSITION_ACTIVATE)
    assert spin_until_model_commands(rig) and rig.stats and manager.state() == "active"
    assert spin_until(rig.executor, lambda: lifecycle_values(rig)[-1] == "active", 3.0)  # the next 1 Hz status

    # deactivate: the zero commands owed, then silence; the model stays loaded.
    assert manager.change(Transition.TRANSITION_DEACTIVATE)
    rig.spin(1.0, frame_hz=10)  # what was on its way has arrived
    settled, stats_settled = len(rig.commands), len(rig.stats)
    assert [m.source for _, m in rig.commands[-4:]] == [MODEL] + [ZERO] * 3
    rig.spin(1.0, frame_hz=10)
    assert len(rig.commands) == settled and len(rig.stats) == stats_settled  # silence, no decoding
    assert manager.state() == "inactive" and len(inference_threads()) == 1

    # activate again: commands resume.
    assert manager.change(Transition.TRANSITION_ACTIVATE)
    assert spin_until_model_commands(rig, since=time.monotonic())

    # deactivate + cleanup: the worker joined, the model dropped; configure again loads it again.
    assert manager.change(Transition.TRANSITION_DEACTIVATE)
    assert manager.change(Transition.TRANSITION_CLEANUP)
    assert manager.state() == "unconfigured" and not inference_threads() and rig.node._worker is None
    assert manager.change(Transition.TRANSITION_CONFIGURE) and manager.change(Transition.TRANSITION_ACTIVATE)
    rig.send_task(TASK)  # a fresh configure forgets the task: the latched one arrives again, or a new one
    assert spin_until_model_commands(rig, since=time.monotonic())

    # shutdown from active: zeros, then finalized, nothing left running.
    assert manager.change(Transition.TRANSITION_ACTIVE_SHUTDOWN)
    assert manager.state() == "finalized" and not inference_threads()
    rig.spin(0.5)
    assert [m.source for _, m in rig.commands[-4:]] == [MODEL] + [ZERO] * 3
    assert ("configuring", "inactive") in manager.events and ("shuttingdown", "finalized") in manager.events


def test_a_transition_not_allowed_is_refused_and_changes_nothing(make_rig, spec_decoder) -> None:
    rig = make_rig(spec_decoder, **MANUAL)
    manager = Manager(rig)
    assert not manager.change(Transition.TRANSITION_ACTIVATE)  # not from unconfigured
    assert manager.state() == "unconfigured"
    assert manager.change(Transition.TRANSITION_CONFIGURE)
    assert not manager.change(Transition.TRANSITION_CONFIGURE)  # already configured
    assert manager.state() == "inactive"


@pytest.mark.slow
def test_a_failed_configure_says_why_and_the_node_stays_unconfigured(make_rig) -> None:
    rig = make_rig(None, **{**MANUAL, "model.path": "/nonexistent/checkpoint"})
    manager = Manager(rig)
    assert not manager.change(Transition.TRANSITION_CONFIGURE)
    assert manager.state() == "unconfigured" and not inference_threads()
    rig.spin(1.2)
    status = rig.last_status()
    assert status.level == DiagnosticStatus.ERROR
    assert "transition_failed: configure failed" in status.message and "/nonexistent/checkpoint" in status.message


def test_autostart_walks_a_plain_start_to_active(make_rig, spec_decoder) -> None:
    rig = make_rig(spec_decoder, **LIVE)  # autostart defaults to true: today's one-line start
    assert Manager(rig).state() == "active"
    rig.send_task(TASK)
    assert spin_until_model_commands(rig)


@pytest.mark.slow
def test_cleanup_and_shutdown_end_the_decoder_process(make_rig) -> None:
    parameters = {**MANUAL, "model.path": str(BUNDLED / "target"), "model.draft_path": str(BUNDLED / "draft"),
                  "model.compile": "off", "inference.isolation": "process",
                  "inference.shutdown_timeout_s": 30.0}  # room for a loaded machine: a clean exit, not a kill
    rig = make_rig(None, **parameters)
    manager = Manager(rig)
    assert manager.change(Transition.TRANSITION_CONFIGURE) and manager.change(Transition.TRANSITION_ACTIVATE)
    process = rig.node._worker._process
    assert process.is_alive()
    rig.send_task(TASK)
    assert spin_until_model_commands(rig)
    assert manager.change(Transition.TRANSITION_DEACTIVATE) and manager.change(Transition.TRANSITION_CLEANUP)
    assert not process.is_alive() and process.exitcode == 0  # asked to stop, not killed
    assert manager.change(Transition.TRANSITION_CONFIGURE)
    second = rig.node._worker._process
    assert second.pid != process.pid and second.is_alive()
    assert manager.change(Transition.TRANSITION_INACTIVE_SHUTDOWN)
    assert not second.is_alive() and manager.state() == "finalized"


@pytest.mark.parametrize("state", ["unconfigured", "inactive", "active"])
def test_shutdown_reaches_finalized_from_every_primary_state(make_rig, spec_decoder, state) -> None:
    rig = make_rig(spec_decoder, **MANUAL)
    steps = {"unconfigured": [], "inactive": ["configure"], "active": ["configure", "activate"]}[state]
    for step in steps:
        assert getattr(rig.node, f"trigger_{step}")() == TransitionCallbackReturn.SUCCESS
    assert rig.node.lifecycle_state == state
    assert rig.node.shutdown() is True
    assert rig.node.lifecycle_state == "finalized" and not inference_threads()
