"""LIBERO's conventions, as pure functions: step limits, gripper sign, action clamp, camera image.

No LIBERO import here (numpy and Pillow only), so these run and are tested in the main venv.

Facts (from OpenVLA's `experiments/robot/libero/run_libero_eval.py`, the evaluation Spec-VLA reuses;
step limits are in `suites.py`):
- Actions are robosuite OSC_POSE inputs: 6 deltas in [-1, 1] (robosuite scales them to at most
  5 cm and 0.5 rad per 20 Hz control step), then the gripper with **-1 = open, +1 = close**.
- The agentview camera renders upside down: rotate 180° (flip both axes). OpenVLA renders 256 px,
  JPEG-encodes and decodes (its training images were stored as JPEG), then Lanczos-resizes to 224.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from specvla_ros.libero.errors import LiberoUsageError
from specvla_ros.libero.suites import CONTROL_HZ, MAX_STEPS, NUM_STEPS_WAIT, SUITES  # noqa: F401 (re-exported)

ROBOSUITE_GRIPPER_OPEN = -1.0
ROBOSUITE_GRIPPER_CLOSE = 1.0
ACTION_DIM = 7


def gripper_to_robosuite(gripper: float, binarize: bool = True) -> float:
    """Our gripper command (0 = closed .. 1 = open) -> robosuite's (-1 = open, +1 = close).

    Linear map 1 - 2g, then (binarize) its sign, as OpenVLA does: 1 -> -1 (open), 0 -> +1 (close).
    Exactly 0.5 maps to 0, which robosuite's Panda gripper reads as "keep the fingers where they are".
    """
    value = float(np.clip(1.0 - 2.0 * float(gripper), -1.0, 1.0))
    return float(np.sign(value)) if binarize else value


def gripper_from_robosuite(command: float) -> float:
    """robosuite's gripper command (-1 = open, +1 = close) -> ours (0 = closed .. 1 = open)."""
    return float(np.clip((1.0 - float(command)) / 2.0, 0.0, 1.0))


@dataclass(frozen=True)
class OscAction:
    """A 7-D action ready for robosuite, and what had to be done to the policy's action."""

    action: np.ndarray  # (7,) float64: 6 OSC_POSE deltas in [-1, 1], robosuite gripper command
    refused: bool       # non-finite input: zero motion, previous gripper command kept
    clamped: bool       # a delta lay outside [-1, 1] and was clipped


def to_osc_action(action: object, previous_gripper: float = ROBOSUITE_GRIPPER_OPEN,
                  binarize_gripper: bool = True) -> OscAction:
    """Our 7-D EndEffectorDelta layout (6 deltas in LIBERO's units, gripper 0..1) -> robosuite's.

    `previous_gripper` is the last robosuite gripper command, kept when the action is refused.
    A wrong shape is a caller bug and raises LiberoUsageError.
    """
    a = np.asarray(action, dtype=np.float64).reshape(-1)
    if a.shape != (ACTION_DIM,):
        raise LiberoUsageError(f"a LIBERO action has {ACTION_DIM} values (6 deltas + gripper), "
                               f"got shape {np.shape(action)}")
    if not np.all(np.isfinite(a)):
        return OscAction(np.append(np.zeros(6), previous_gripper), refused=True, clamped=False)
    deltas = np.clip(a[:6], -1.0, 1.0)
    clamped = bool(np.any(deltas != a[:6]))
    return OscAction(np.append(deltas, gripper_to_robosuite(a[6], binarize_gripper)), refused=False, clamped=clamped)


def upright(image: np.ndarray) -> np.ndarray:
    """Rotate a LIBERO camera image 180° (both axes flipped): MuJoCo's offscreen image is upside down."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise LiberoUsageError(f"expected an (H, W, 3) image, got shape {image.shape}")
    return np.ascontiguousarray(image[::-1, ::-1])


def policy_image(raw: np.ndarray, size: int = 224, jpeg_quality: int | None = 95) -> np.ndarray:
    """The image a LIBERO-trained VLA expects: upright, JPEG round trip, Lanczos resize to size x size.

    jpeg_quality None skips the round trip. 95 is TensorFlow's `encode_jpeg` default, which OpenVLA's
    evaluation uses; Pillow's Lanczos filter antialiases when shrinking, like TF's `lanczos3`.
    Returns uint8 (size, size, 3), C-contiguous.
    """
    image = Image.fromarray(upright(np.asarray(raw, dtype=np.uint8)))
    if jpeg_quality is not None:
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=jpeg_quality)
        buffer.seek(0)
        image = Image.open(buffer).convert("RGB")
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.LANCZOS)
    return np.ascontiguousarray(np.asarray(image, dtype=np.uint8))


def max_steps(suite: str) -> int:
    """The paper's (OpenVLA's) step limit for `suite`."""
    if suite not in MAX_STEPS:
        raise LiberoUsageError(f"unknown LIBERO suite '{suite}'; known: {', '.join(SUITES)}")
    return MAX_STEPS[suite]


def pick_unnorm_key(norm_stats_keys: list[str], suite: str, requested: str = "") -> str | None:
    """The action-statistics key OpenVLA's LIBERO evaluation would use.

    An explicit key wins; a checkpoint with one key needs none (None); else the suite's name, or
    its `_no_noops` variant (how the OpenVLA LIBERO fine-tunes name theirs). None lets the decoder
    raise its own error listing the keys.
    """
    if requested:
        return requested
    if len(norm_stats_keys) == 1:
        return None
    for key in (suite, f"{suite}_no_noops"):
        if key in norm_stats_keys:
            return key
    return None
