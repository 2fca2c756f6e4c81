"""The `Policy` protocol the harness evaluates, the adapter that reads what a policy returns, and
`DecoderPolicy`, which makes a decoder a policy.

A policy is any callable `policy(image, instruction)` that returns either the 7 action numbers
or a richer object. Optional extras, all duck-typed so nothing here imports `specvla_ros.core`:
  * `policy.reset()`            called at the start of every episode (clear temporal state);
  * `policy.needs_image`        False lets the harness skip rendering (privileged experts);
  * a returned object with `.action` and `.stats.total_ms` / `.stats.mean_acceptance_length`
    (the decoder's `ActionResult`), or with `.latency_ms` / `.acceptance_length` attributes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from specvla_ros.sim.errors import SimError


@dataclass(frozen=True)
class PolicyStep:
    """One policy decision: the action plus optional decode statistics for the report."""

    action: np.ndarray  # (7,) float64
    latency_ms: float | None = None  # decode latency reported by the policy itself
    acceptance_length: float | None = None  # mean accepted tokens per target forward (Spec-VLA)


@runtime_checkable
class Policy(Protocol):
    def __call__(self, image: np.ndarray, instruction: str) -> object: ...


class Decoder(Protocol):
    """What DecoderPolicy needs of specvla_ros.core's decoders (not imported: the simulator runs without torch)."""

    def decode(self, image: np.ndarray, instruction: str) -> object: ...

    def reset(self) -> None: ...


class DecoderPolicy:
    """A decoder as a harness policy; `reset()` (called at every episode start) clears its temporal history."""

    def __init__(self, decoder: Decoder) -> None:
        self.decoder = decoder

    def __call__(self, image: np.ndarray, instruction: str) -> object:
        return self.decoder.decode(image, instruction)

    def reset(self) -> None:
        self.decoder.reset()


def _optional_float(value: object) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None


def to_policy_step(output: object) -> PolicyStep:
    """Normalise a policy's return value (array, PolicyStep, ActionResult-like) to a PolicyStep."""
    if isinstance(output, PolicyStep):
        return output
    action = getattr(output, "action", None)
    if action is None:
        return PolicyStep(action=_as_action(output))
    stats = getattr(output, "stats", None)
    latency = getattr(stats, "total_ms", None) if stats is not None else getattr(output, "latency_ms", None)
    acceptance = (
        getattr(stats, "mean_acceptance_length", None)
        if stats is not None
        else getattr(output, "acceptance_length", None)
    )
    return PolicyStep(_as_action(action), _optional_float(latency), _optional_float(acceptance))


def _as_action(value: object) -> np.ndarray:
    # Leave NaN/inf alone: refusing them is the environment's job, and it reports it.
    try:
        action = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise SimError(f"policy returned {type(value).__name__}, expected 7 numbers or an object with .action") from exc
    if action.shape != (7,):
        raise SimError(f"policy returned an action of shape {action.shape}, expected (7,)")
    return action


def reset_policy(policy: object) -> None:
    """Call `policy.reset()` if the policy has one (new episode)."""
    reset = getattr(policy, "reset", None)
    if callable(reset):
        reset()


def policy_needs_image(policy: object) -> bool:
    return bool(getattr(policy, "needs_image", True))
