"""The embedded default model pair (target VLA + draft head) the demo runs without arguments.

In order of preference:
  1. specvla_ros/models/tabletop/: the trained tabletop pair shipped with the package (model card in
     its README.md): a tiny VLA trained on the simulation's expert demonstrations and DAgger
     corrections, and a draft head trained against it;
  2. a stand-in built once in the user's cache: a seeded random tiny VLA and a draft head trained
     briefly against it (only if the package was installed without its models).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BUNDLED = Path(__file__).parent / "models" / "tabletop"
# Measured closed-loop success of the bundled target (model card); printed by the demo.
BUNDLED_SUCCESS = "56 of 60 evaluation episodes with AR decoding (pick 17/20, push 20/20, place 19/20)"
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
    if (BUNDLED / "draft" / "config.json").is_file():
        return EmbeddedModel(
            BUNDLED / "target", BUNDLED / "draft", f"bundled tabletop pair ({BUNDLED})",
            caveats=(f"the tiny VLA succeeds in {BUNDLED_SUCCESS}, in simulation only "
                     "(model card: specvla_ros/models/tabletop/README.md)",))
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
    from specvla_ros.core.draft_head import DraftHead
    from specvla_ros.core.tiny.config import TinyVLAConfig
    from specvla_ros.core.tiny.model import TinyVLA
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
