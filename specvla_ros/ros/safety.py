"""What the control timer may publish: watchdog, clamping, enable / dry-run interlocks.

Kept free of rclpy so the rules can be read (and tested) on their own. The node asks
`CommandGate.next_command()` once per control tick and publishes exactly what it returns.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np


class Source(IntEnum):
    """Mirrors EndEffectorDelta.SOURCE_* constants."""

    MODEL = 0
    ZERO = 1
    HOLD = 2


@dataclass
class SafetyLimits:
    """Per-dimension clamp of the un-normalized action, plus Cartesian speed caps for twists.

    action_low/high: (dx, dy, dz [m], droll, dpitch, dyaw [rad], gripper) per control step.
    """

    action_low: tuple[float, ...] = (-0.05, -0.05, -0.05, -0.25, -0.25, -0.25, 0.0)
    action_high: tuple[float, ...] = (0.05, 0.05, 0.05, 0.25, 0.25, 0.25, 1.0)
    max_linear_speed_mps: float = 0.25
    max_angular_speed_radps: float = 1.0


@dataclass
class GateSettings:
    action_timeout_s: float = 0.5
    stale_action_policy: str = "zero"  # "zero" | "hold"
    dry_run: bool = True
    zero_commands_on_disable: int = 3
    limits: SafetyLimits = field(default_factory=SafetyLimits)


@dataclass(frozen=True)
class TimedAction:
    """A decoded action and when the camera frame behind it arrived (monotonic seconds)."""

    action: np.ndarray          # (7,) un-normalized
    normalized: np.ndarray      # (7,)
    bins: tuple[int, ...]
    frame_received_s: float
    image_stamp_ns: int


@dataclass(frozen=True)
class Command:
    """One command to publish: clamped action (7,), where it came from, and whether clamping bit."""

    action: np.ndarray
    source: Source
    clamped: bool
    basis: TimedAction | None


def clamp_action(action: np.ndarray, limits: SafetyLimits) -> tuple[np.ndarray, bool]:
    """Clamp per dimension; report whether anything changed (NaN stays NaN: callers refuse it)."""
    clamped = np.clip(action, limits.action_low, limits.action_high)
    return clamped, bool(np.any(clamped != action))


def is_finite_action(action: np.ndarray) -> bool:
    return action.shape == (7,) and bool(np.all(np.isfinite(action)))


class CommandGate:
    """Decides, per control tick, what (if anything) goes out on the command topics.

    Rules, in order:
    - in dry-run: `zero_commands_on_disable` zero commands right after dry_run was switched on while
      commands flowed (the arm may be moving), then nothing;
    - while disabled or without a valid task: `zero_commands_on_disable` zero commands right after
      disabling or losing the task, then nothing (nothing at all before the first task);
    - enabled with a task but no action decoded for it yet: zero motion;
    - a model action younger than `action_timeout_s` (age from the camera frame's arrival) goes out
      clamped; an older one is replaced by zero motion (gripper kept) or held, by policy;
    - a non-finite action never reaches this gate (the worker drops it), and is refused here too.
    Whatever produced a command (model, hold, zero), it is clamped to the limits in force when it
    leaves, and a command that is still not finite is never returned.
    """

    def __init__(self, settings: GateSettings, enabled: bool) -> None:
        self.settings = settings
        self._enabled = enabled
        self._zeros_owed = 0
        self._latest: TimedAction | None = None
        self._last_gripper = 1.0  # open: the safe default before any action arrived

    @property
    def enabled(self) -> bool:
        return self._enabled

    @property
    def live(self) -> bool:
        """Commands may flow: enabled and not in dry-run (the arm may be moving)."""
        return self._enabled and not self.settings.dry_run

    def update_settings(self, settings: GateSettings) -> None:
        """New live parameters; switching dry_run on while live owes the zero commands."""
        if settings.dry_run != self.settings.dry_run:
            self._zeros_owed = settings.zero_commands_on_disable if settings.dry_run and self.live else 0
        self.settings = settings

    def stop_commands(self) -> list[Command]:
        """Disable now and return every zero command owed (shutdown: published at once, not per tick)."""
        self.set_enabled(False)
        commands = []
        while self._zeros_owed > 0:
            self._zeros_owed -= 1
            commands.append(self._checked(self._zero()))
        return [command for command in commands if command is not None]

    def set_enabled(self, enabled: bool) -> None:
        if self.live and not enabled:
            self._zeros_owed = self.settings.zero_commands_on_disable
        if enabled:
            self._zeros_owed = 0
        self._enabled = enabled

    def offer(self, action: TimedAction) -> bool:
        """Hand in a freshly decoded action; refuse (False) anything non-finite."""
        if not is_finite_action(action.action):
            return False
        self._latest = action
        return True

    def invalidate(self) -> None:
        """Forget the latest action (the task changed or became invalid); stop with zeros."""
        if self._latest is not None and self.live:
            self._zeros_owed = self.settings.zero_commands_on_disable
        self._latest = None

    def next_command(self, now_s: float, task_known: bool) -> Command | None:
        return self._checked(self._choose(now_s, task_known))

    def _choose(self, now_s: float, task_known: bool) -> Command | None:
        if self.settings.dry_run or not (self._enabled and task_known):
            if self._zeros_owed > 0:
                self._zeros_owed -= 1
                return self._zero()
            return None
        latest = self._latest
        if latest is None:
            return self._zero()
        if now_s - latest.frame_received_s <= self.settings.action_timeout_s:
            return self._from_model(latest, Source.MODEL)
        if self.settings.stale_action_policy == "hold":
            return self._from_model(latest, Source.HOLD)
        return self._zero()

    def _checked(self, command: Command | None) -> Command | None:
        """The command clamped to the current limits; None if it is (still) not finite."""
        if command is None:
            return None
        action, clamped = clamp_action(command.action, self.settings.limits)
        if not is_finite_action(action):
            return None
        if command.source == Source.ZERO and np.any(action[:6] != 0.0):
            return None  # limits without 0 in them (refused by the parameter checks) cannot carry a stop
        if command.source != Source.ZERO:
            self._last_gripper = float(action[6])
        return Command(action=action, source=command.source, clamped=command.clamped or clamped,
                       basis=command.basis)

    def _from_model(self, timed: TimedAction, source: Source) -> Command:
        return Command(action=timed.action, source=source, clamped=False, basis=timed)

    def _zero(self) -> Command:
        action = np.zeros(7)
        action[6] = self._last_gripper
        return Command(action=action, source=Source.ZERO, clamped=False, basis=None)


def to_velocity(action: np.ndarray, period_s: float, limits: SafetyLimits) -> tuple[np.ndarray, np.ndarray]:
    """Per-step deltas -> (linear m/s, angular rad/s), each norm-clamped to the speed caps.

    Norm clamping keeps the direction of motion; per-axis clipping would bend it.
    """
    linear = np.asarray(action[0:3], dtype=float) / period_s
    angular = np.asarray(action[3:6], dtype=float) / period_s
    return (_cap_norm(linear, limits.max_linear_speed_mps),
            _cap_norm(angular, limits.max_angular_speed_radps))


def _cap_norm(vector: np.ndarray, cap: float) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    if norm <= cap or norm == 0.0 or math.isnan(norm):
        return vector
    return vector * (cap / norm)
