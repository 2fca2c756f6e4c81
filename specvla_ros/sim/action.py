"""The 7-D end-effector delta action and the checks that keep the simulator from exploding.

Layout: (dx, dy, dz, droll, dpitch, dyaw, gripper). Translation in metres per control step,
rotation in radians per step, gripper absolute in [0, 1] with 1 = open, 0 = closed — the same
convention as OpenVLA/LIBERO-style deltas. Non-finite actions are refused outright (zero motion,
gripper unchanged) rather than partially used: a NaN anywhere means the producer is broken.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from specvla_ros.sim.errors import SimError

ACTION_DIM = 7
ACTION_NAMES = ("dx", "dy", "dz", "droll", "dpitch", "dyaw", "gripper")


@dataclass(frozen=True)
class ActionLimits:
    """Per-step clamps. 2 cm and 0.1 rad per 0.1 s step = 0.2 m/s and 1 rad/s."""

    max_translation_m: float = 0.02
    max_rotation_rad: float = 0.1


@dataclass(frozen=True)
class SanitizedAction:
    """The action the simulator will apply, and what had to be done to get it."""

    action: np.ndarray  # float64 (7,)
    refused: bool  # non-finite input: replaced by zero motion, previous gripper command kept
    clamped: bool  # some component was outside its limit and was clipped


def sanitize_action(raw: object, limits: ActionLimits, previous_gripper: float) -> SanitizedAction:
    """Validate and clamp a raw action. Raises SimError only for a wrong shape (a caller bug)."""
    try:
        action = np.asarray(raw, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise SimError(f"action must be 7 numbers {ACTION_NAMES}, got {raw!r}") from exc
    if action.shape != (ACTION_DIM,):
        raise SimError(f"action must have shape (7,) {ACTION_NAMES}, got shape {action.shape}")
    if not np.all(np.isfinite(action)):
        safe = np.zeros(ACTION_DIM)
        safe[6] = previous_gripper
        return SanitizedAction(safe, refused=True, clamped=False)
    bounds = np.array([limits.max_translation_m] * 3 + [limits.max_rotation_rad] * 3)
    clipped = action.copy()
    clipped[:6] = np.clip(action[:6], -bounds, bounds)
    clipped[6] = np.clip(action[6], 0.0, 1.0)
    return SanitizedAction(clipped, refused=False, clamped=bool(np.any(clipped != action)))
