"""decoder.tree.auto: choose the draft tree for this machine, or none, from measured costs.

A tree pays only when the target forwards it saves cost more than the draft steps and the wider
verifies it adds, and that balance is the hardware's (Sequoia's point): on a small CPU target a
draft step costs about a target step, on OpenVLA-7B on a GPU a small fraction of one. So:

- acceptance statistics per tree shape (verify steps per action, measured by the decode benchmark
  on real frames of this model: `tree_calibration.json` beside the draft head) say how many steps
  each shape needs;
- at start-up, each candidate's step is timed on this machine through the decoder's own functions
  (eager or compiled, as the node will run them): trees have fixed shapes, so a step costs the same
  whatever gets accepted;
- the shape with the least predicted time per action wins, and only if it beats autoregressive
  decoding timed the same way; otherwise no tree is used. Values the user set explicitly restrict
  the candidates.

Without a calibration file the configured shape is the only candidate, checked against AR under
the most favourable acceptance (every drafted token accepted): a tree that loses even then is
never used.
"""
from __future__ import annotations

import json
import logging
import math
import statistics
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from specvla_ros.core.action_tokenizer import N_ACTION_DIMS
from specvla_ros.core.backbone import Backbone
from specvla_ros.core.compilation import CompileMode
from specvla_ros.core.config import PAPER_TREE, DecoderConfig, TreeConfig
from specvla_ros.core.decoder import AutoregressiveDecoder, SpeculativeDecoder, build_decoder
from specvla_ros.core.draft_head import DraftHead
from specvla_ros.core.errors import CheckpointError

log = logging.getLogger(__name__)

CALIBRATION_FILE = "tree_calibration.json"
MAX_CANDIDATES = 3    # each candidate compiles its own step graphs at start-up (about 20 s each on a 2-core CPU)
TIMING_DECODES = 12  # frames each candidate is timed on, interleaved


@dataclass(frozen=True)
class ShapeStats:
    """Acceptance of one tree shape on real frames: target forwards per action after the prefill."""

    top_k: int
    depth: int
    total_tokens: int
    chain: bool
    steps_per_action: float

    @property
    def tree(self) -> TreeConfig:
        return TreeConfig(top_k=self.top_k, depth=self.depth, total_tokens=self.total_tokens, chain=self.chain)


@dataclass(frozen=True)
class TreeChoice:
    """tree None: no draft-head tree beats autoregressive decoding here. predicted_ms: decode time
    per action after the prefill, per candidate (and 'autoregressive'). decoder: the one built,
    compiled and warmed up for the choice (the autoregressive one when tree is None)."""

    tree: TreeConfig | None
    predicted_ms: dict[str, float]
    calibrated: bool
    decoder: SpeculativeDecoder | AutoregressiveDecoder


def shape_label(tree: TreeConfig) -> str:
    return f"chain depth {tree.depth}" if tree.chain else f"top_k {tree.top_k} depth {tree.depth} total {tree.total_tokens}"


def read_calibration(path: str | Path) -> list[ShapeStats]:
    """The shapes a calibration file lists (see write_calibration); a CheckpointError if unreadable."""
    path = Path(path)
    try:
        meta = json.loads(path.read_text())
        return [ShapeStats(**shape) for shape in meta["shapes"]]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as bad:
        raise CheckpointError(f"{path} is not a tree calibration file ({bad}): re-run "
                              "bench/decode_benchmark.py --calibrate") from None


def write_calibration(path: str | Path, shapes: list[ShapeStats], source: str) -> Path:
    path = Path(path)
    path.write_text(json.dumps({"source": source, "shapes": [asdict(shape) for shape in shapes]}, indent=2) + "\n")
    return path


def _step_ms(decoder: SpeculativeDecoder | AutoregressiveDecoder, image: np.ndarray, instruction: str) -> float:
    """One decode's time per step after the prefill (draft + verify, or one AR token)."""
    stats = decoder.decode(image, instruction).stats
    steps = len(stats.accepted_per_step) or (N_ACTION_DIMS - 1)
    return (stats.draft_ms + stats.verify_ms) / steps


def _interleaved_step_ms(decoders: list[SpeculativeDecoder | AutoregressiveDecoder], frames: list[np.ndarray],
                         instruction: str) -> list[float]:
    """Median step time of each decoder, all timed in turn on the same frames (a machine's load
    changes by the second: side by side, not one after the other)."""
    times: list[list[float]] = [[] for _ in decoders]
    for image in frames:
        for index, decoder in enumerate(decoders):
            times[index].append(_step_ms(decoder, image, instruction))
    for decoder in decoders:
        decoder.reset()
    return [statistics.median(values) for values in times]


def choose_tree(backbone: Backbone, head: DraftHead, config: DecoderConfig, calibration: list[ShapeStats] | None,
                compile_mode: CompileMode, fixed: dict[str, int] | None = None,
                instruction: str = "pick up the object") -> TreeChoice:
    """Time AR and each candidate shape on this machine; return the fastest (None = AR)."""
    fixed = fixed or {}
    frames = [np.random.default_rng(seed).integers(0, 256, (224, 224, 3), dtype=np.uint8)
              for seed in range(TIMING_DECODES)]
    if calibration:
        candidates = [shape for shape in calibration
                      if all(getattr(shape, name) == value for name, value in fixed.items())]
        candidates = sorted(candidates, key=lambda shape: shape.steps_per_action)[:MAX_CANDIDATES]
    else:  # the configured shape (the authors' values where free), at its best: every draft accepted
        shape = {**PAPER_TREE, **fixed}
        best_case = math.ceil((N_ACTION_DIMS - 1) / (shape["depth"] + 1))
        candidates = [ShapeStats(shape["top_k"], shape["depth"], shape["total_tokens"], config.tree.chain,
                                 float(best_case))]

    ar = AutoregressiveDecoder(backbone, replace(config, mode="autoregressive"))
    decoders: list[SpeculativeDecoder | AutoregressiveDecoder] = [ar]
    trees = []
    for shape in candidates:
        trees.append(replace(shape.tree, restrict_to_action_tokens=config.tree.restrict_to_action_tokens))
        decoders.append(build_decoder(backbone, head, replace(config, tree=trees[-1])))
    for decoder in decoders:
        decoder.compile(compile_mode)
        decoder.warm_up()
    step_ms = _interleaved_step_ms(decoders, frames, instruction)
    predicted = {"autoregressive": (N_ACTION_DIMS - 1) * step_ms[0]}
    best: TreeConfig | None = None
    chosen: SpeculativeDecoder | AutoregressiveDecoder = ar
    for tree, shape, decoder, ms in zip(trees, candidates, decoders[1:], step_ms[1:], strict=True):
        label = shape_label(tree)
        predicted[label] = shape.steps_per_action * ms
        if predicted[label] < min(predicted[name] for name in predicted if name != label):
            best, chosen = tree, decoder
    return TreeChoice(tree=best, predicted_ms=predicted, calibrated=bool(calibration), decoder=chosen)


def describe(choice: TreeChoice) -> str:
    """One log line: what was chosen and the predictions it rests on."""
    numbers = ", ".join(f"{label} {ms:.2f}" for label, ms in sorted(choice.predicted_ms.items(), key=lambda x: x[1]))
    basis = "calibrated acceptance" if choice.calibrated else "no calibration file: best-case acceptance"
    if choice.tree is None:
        return (f"decoder.tree.auto: no draft tree beats autoregressive decoding on this machine; decoding "
                f"autoregressively (predicted ms per action after the prefill, {basis}: {numbers})")
    return f"decoder.tree.auto: {shape_label(choice.tree)} (predicted ms per action after the prefill, {basis}: {numbers})"


def tuned_decoder(backbone: Backbone, head: DraftHead, config: DecoderConfig, calibration: list[ShapeStats] | None,
                  compile_mode: CompileMode) -> tuple[SpeculativeDecoder | AutoregressiveDecoder, TreeChoice]:
    """config.tree.auto applied: the decoder to run, compiled and warmed up. No tree chosen: no draft
    head at all, so autoregressive decoding, or temporal drafts alone when they are on."""
    choice = choose_tree(backbone, head, config, calibration, compile_mode, fixed=config.tree.fixed)
    if choice.tree is not None or not config.temporal.enabled:
        return choice.decoder, choice
    temporal_only = replace(config, temporal=replace(config.temporal, draft_head=False))
    decoder = build_decoder(backbone, None, temporal_only)
    decoder.compile(compile_mode)
    decoder.warm_up()
    return decoder, choice
