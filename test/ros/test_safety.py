"""CommandGate rules: dry-run, enable/disable, watchdog, clamping, non-finite refusal."""
from __future__ import annotations

import numpy as np
import pytest

from specvla_ros.ros.safety import (
    CommandGate,
    GateSettings,
    SafetyLimits,
    Source,
    TimedAction,
    clamp_action,
    to_velocity,
)


def _action(values, received_s=0.0) -> TimedAction:
    values = np.asarray(values, dtype=float)
    return TimedAction(action=values, normalized=np.zeros(7), bins=(0,) * 7, frame_received_s=received_s,
                       image_stamp_ns=0)


def _gate(**overrides) -> CommandGate:
    settings = GateSettings(dry_run=False, action_timeout_s=0.5, zero_commands_on_disable=2)
    for key, value in overrides.items():
        setattr(settings, key, value)
    return CommandGate(settings, enabled=True)


def test_nothing_in_dry_run_or_without_task() -> None:
    gate = _gate(dry_run=True)
    gate.offer(_action([0.01] * 6 + [1.0]))
    assert gate.next_command(0.1, task_known=True) is None
    gate = _gate()
    assert gate.next_command(0.1, task_known=False) is None


def test_fresh_action_goes_out_then_zero_when_stale() -> None:
    gate = _gate()
    gate.offer(_action([0.01, 0, 0, 0, 0, 0, 0.2], received_s=10.0))
    fresh = gate.next_command(10.4, task_known=True)
    assert fresh.source == Source.MODEL and fresh.action[0] == pytest.approx(0.01)
    stale = gate.next_command(10.6, task_known=True)
    assert stale.source == Source.ZERO
    np.testing.assert_array_equal(stale.action[:6], 0.0)
    assert stale.action[6] == pytest.approx(0.2)  # gripper kept where the model left it


def test_hold_policy_repeats_last_action() -> None:
    gate = _gate(stale_action_policy="hold")
    gate.offer(_action([0.01] * 6 + [1.0], received_s=0.0))
    assert gate.next_command(5.0, task_known=True).source == Source.HOLD


def test_disable_sends_zeros_then_silence() -> None:
    gate = _gate()
    gate.offer(_action([0.01] * 6 + [1.0], received_s=0.0))
    gate.set_enabled(False)
    sources = [gate.next_command(0.1, task_known=True) for _ in range(4)]
    assert [c.source for c in sources[:2]] == [Source.ZERO, Source.ZERO]
    assert sources[2:] == [None, None]
    gate.set_enabled(True)
    assert gate.next_command(0.1, task_known=True).source == Source.MODEL


def test_invalidated_task_stops_with_zeros() -> None:
    gate = _gate()
    gate.offer(_action([0.01] * 6 + [1.0], received_s=0.0))
    gate.invalidate()
    assert gate.next_command(0.1, task_known=False).source == Source.ZERO
    assert gate.next_command(0.1, task_known=True).source == Source.ZERO  # no action for the new task yet


def test_non_finite_actions_are_refused() -> None:
    gate = _gate()
    assert not gate.offer(_action([np.nan] + [0.0] * 6))
    assert not gate.offer(_action([np.inf] + [0.0] * 6))
    assert gate.next_command(0.0, task_known=True).source == Source.ZERO


def test_clamp_per_dimension() -> None:
    limits = SafetyLimits()
    clamped, changed = clamp_action(np.array([1.0, -1.0, 0.0, 5.0, 0.0, 0.0, 3.0]), limits)
    np.testing.assert_allclose(clamped, [0.05, -0.05, 0.0, 0.25, 0.0, 0.0, 1.0])
    assert changed
    _, changed = clamp_action(np.array([0.01, 0, 0, 0, 0, 0, 0.5]), limits)
    assert not changed


def test_twist_caps_norm_and_keeps_direction() -> None:
    limits = SafetyLimits(max_linear_speed_mps=0.1, max_angular_speed_radps=0.5)
    linear, angular = to_velocity(np.array([0.03, 0.04, 0.0, 0.0, 0.0, 0.01, 1.0]), 0.1, limits)
    assert np.linalg.norm(linear) == pytest.approx(0.1)
    np.testing.assert_allclose(linear / np.linalg.norm(linear), [0.6, 0.8, 0.0])
    np.testing.assert_allclose(angular, [0.0, 0.0, 0.1])  # under the cap: unchanged


# ----- issue 22: every command checked against the bounds in force, whatever produced it -----------
def _with_limits(gate: CommandGate, **limits) -> None:
    settings = gate.settings
    gate.update_settings(GateSettings(action_timeout_s=settings.action_timeout_s,
                                      stale_action_policy=settings.stale_action_policy, dry_run=settings.dry_run,
                                      zero_commands_on_disable=settings.zero_commands_on_disable,
                                      limits=SafetyLimits(**limits)))


def test_zero_and_hold_commands_obey_bounds_changed_after_the_action() -> None:
    gate = _gate(stale_action_policy="hold")
    gate.offer(_action([0.04, 0, 0, 0, 0, 0, 1.0], received_s=0.0))
    assert gate.next_command(0.1, task_known=True).action[6] == pytest.approx(1.0)
    _with_limits(gate, action_low=(-0.01,) * 6 + (0.0,), action_high=(0.01,) * 6 + (0.3,))
    held = gate.next_command(5.0, task_known=True)
    assert held.source == Source.HOLD and held.clamped
    np.testing.assert_allclose(held.action, [0.01, 0, 0, 0, 0, 0, 0.3])
    gate.set_enabled(False)  # the disable zeros carry the gripper, inside the new bounds too
    _with_limits(gate, action_low=(-0.01,) * 6 + (0.0,), action_high=(0.01,) * 6 + (0.2,))
    zero = gate.next_command(5.1, task_known=True)
    assert zero.source == Source.ZERO and zero.action[6] == pytest.approx(0.2)


def test_a_zero_that_bounds_without_zero_would_turn_into_motion_is_not_sent() -> None:
    gate = _gate()
    gate.settings.limits = SafetyLimits(action_low=(0.01,) * 6 + (0.0,), action_high=(0.05,) * 6 + (1.0,))
    assert gate.next_command(0.0, task_known=True) is None  # refused (parameters never allow such bounds)


def test_nan_limits_never_produce_a_command() -> None:
    gate = _gate()
    gate.offer(_action([0.01] * 6 + [1.0]))
    gate.settings.limits = SafetyLimits(action_low=(np.nan,) * 7)
    assert gate.next_command(0.1, task_known=True) is None


def test_dry_run_switched_on_while_live_sends_the_zeros_first() -> None:
    gate = _gate(zero_commands_on_disable=3)
    gate.offer(_action([0.01] * 6 + [0.5], received_s=0.0))
    assert gate.next_command(0.1, task_known=True).source == Source.MODEL
    gate.update_settings(GateSettings(dry_run=True, action_timeout_s=0.5, zero_commands_on_disable=3))
    sources = [gate.next_command(0.1, task_known=True) for _ in range(5)]
    assert [c.source for c in sources[:3]] == [Source.ZERO] * 3 and sources[3:] == [None, None]
    assert sources[0].action[6] == pytest.approx(0.5)


def test_a_dry_run_node_never_publishes_zeros_on_disable_or_task_change() -> None:
    gate = _gate(dry_run=True)
    gate.offer(_action([0.01] * 6 + [1.0]))
    gate.set_enabled(False)
    gate.invalidate()
    assert [gate.next_command(0.1, task_known=True) for _ in range(4)] == [None] * 4


def test_stop_commands_are_the_zeros_owed_at_once() -> None:
    gate = _gate(zero_commands_on_disable=2)
    gate.offer(_action([0.01] * 6 + [0.7]))
    assert gate.next_command(0.1, task_known=True).source == Source.MODEL
    stops = gate.stop_commands()
    assert [c.source for c in stops] == [Source.ZERO] * 2 and stops[0].action[6] == pytest.approx(0.7)
    assert gate.next_command(0.1, task_known=True) is None and not gate.enabled
    assert _gate(dry_run=True).stop_commands() == []
