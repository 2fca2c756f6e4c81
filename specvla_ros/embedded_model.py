"""The embedded default model pair (target VLA + draft head) the demo runs without arguments.

A trained pair that solves the simulated tabletop tasks ships inside the package once it exists
(issue #6: specvla_ros/models/tabletop/). Until then this builds, once, a clearly labelled
stand-in: a seeded random tiny VLA and a draft head trained briefly against it, so decoding,
acceptance and latency are real while the actions are not meaningful.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BUNDLED = Path(__file__).parent / "models" / "tabletop"
STAND_IN_VERSION = "untrained-tabletop-v1"


@dataclass(frozen=True)
class EmbeddedModel:
    target_path: Path
    draft_path: Path
    description: str
    caveats: tuple[str, ...] = ()


def cache_dir() -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return root / "specvla_ros" / STAND_IN_VERSION


def embedded_model() -> EmbeddedModel:
    if (BUNDLED / "target" / "config.json").is_file():
        return EmbeddedModel(BUNDLED / "target", BUNDLED / "draft", f"bundled tabletop pair ({BUNDLED})")
    folder = cache_dir()
    if not (folder / "draft" / "config.json").is_file():
        _build_stand_in(folder)
    return EmbeddedModel(
        folder / "target", folder / "draft",
        f"untrained stand-in ({folder})",
        caveats=("the trained tabletop model is not bundled yet (issue #6): this target has random weights, "
                 "so its actions do not solve the tasks",
                 "its draft head was trained against it for a few seconds, so acceptance lengths and "
                 "latencies are real measurements of this pair"),
    )


def _build_stand_in(folder: Path, seed: int = 0) -> None:
    from specvla_ros.core.config import TinyVLAConfig
    from specvla_ros.core.draft_head import DraftHead
    from specvla_ros.core.tiny_vla import TinyVLA
    from specvla_ros.training.draft_trainer import collect_sequence, train_draft_head

    target = TinyVLA.random(TinyVLAConfig(), seed)
    head = DraftHead.random(target, seed + 1)
    rng = np.random.default_rng(seed)
    instructions = ["pick up the red cube", "push the blue cube to the left", "put the red cube on the green plate"]
    sequences = [collect_sequence(target, rng.integers(0, 256, (224, 224, 3), dtype=np.uint8), instructions[i % 3])
                 for i in range(12)]
    train_draft_head(head, sequences, steps=200, seed=seed)
    target.save(folder / "target")
    head.save(folder / "draft")
