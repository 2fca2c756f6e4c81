"""Can the model's output be trusted? Once at load (a warm-up decode), then for every decode.

A checkpoint with NaN weights loads without complaint, and argmax over NaN logits picks token 0:
a padding id that decodes to the lowest bin, i.e. a constant full-scale action. So:
- at load, a decode of a synthetic frame must read finite logits and give 7 action tokens and a
  finite action, else the node refuses to start (`ModelCheckError`, one line saying why);
- at run time, `verdict(result)` says whether a decoded action may be published: NaN/inf logits or
  action -> no (ERROR), a token outside the action range -> no (WARN). Either way the control loop
  falls back to the stale-action policy.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from specvla_ros.core.decoder import ActionResult
from specvla_ros.core.errors import CheckpointError
from specvla_ros.ros.incidents import Cause

WARMUP_TASK = "pick up the object"
WARMUP_SIZE = 224


class ModelCheckError(CheckpointError):
    """The model failed its start-up check: its outputs cannot drive a robot."""


@dataclass(frozen=True)
class Verdict:
    """Why a decoded action must not be published: the cause and a sentence for people."""

    cause: Cause
    message: str


def verdict(result: ActionResult) -> Verdict | None:
    """None when the action may be offered to the safety gate, else why not."""
    stats = result.stats
    if stats.nonfinite_logits:
        return Verdict(Cause.NONFINITE_OUTPUT, "the model produced NaN/inf logits (broken weights "
                                               "or numerics)")
    if not np.all(np.isfinite(np.asarray(result.action, dtype=float))):
        return Verdict(Cause.NONFINITE_OUTPUT, f"the model produced a non-finite action "
                                               f"{np.asarray(result.action).round(4).tolist()}")
    if stats.non_action_tokens:
        return Verdict(Cause.NON_ACTION_TOKENS, f"{stats.non_action_tokens} of the 7 tokens {list(result.token_ids)} "
                                                "are not action tokens (a text or padding id: the model is off "
                                                "its training distribution, or broken)")
    return None


def warmup_frame() -> np.ndarray:
    """A fixed synthetic camera frame: seeded noise over a mid-grey table, 224 x 224 RGB."""
    rng = np.random.default_rng(0)
    frame = np.full((WARMUP_SIZE, WARMUP_SIZE, 3), 128, dtype=np.int16)
    frame += rng.integers(-48, 49, size=frame.shape, dtype=np.int16)
    return frame.clip(0, 255).astype(np.uint8)


def check_model(decoder: Any, where: str) -> None:
    """Decode the warm-up frame; ModelCheckError saying what is wrong with `where` (a path) if it fails.

    Also warms the decoder up (first-call allocations); its temporal history, if any, is reset after.
    """
    try:
        result = decoder.decode(warmup_frame(), WARMUP_TASK)
    except Exception as error:  # noqa: BLE001 - any failure means the model cannot serve
        raise ModelCheckError(f"{where}: the start-up check decode failed: {type(error).__name__}: {error}") from None
    finally:
        reset = getattr(decoder, "reset", None)
        if callable(reset):
            reset()
    problem = verdict(result)
    if problem is None:
        return
    hint = ("set decoder.action_tokens_only true to restrict the model to action tokens, or "
            if problem.cause == Cause.NON_ACTION_TOKENS else "check the checkpoint, or ")
    raise ModelCheckError(f"{where} failed the start-up check on a synthetic frame: {problem.message}; {hint}"
                          "set model.startup_check false to start anyway")
