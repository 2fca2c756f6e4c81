"""The embedded default model pair (target VLA + draft head) the demo runs without arguments.

In order of preference:
  1. specvla_ros/models/tabletop/: a trained pair that solves the simulated tabletop tasks (issue #6;
     not trained yet);
  2. specvla_ros/models/tabletop-run2/: the best pair trained so far, shipped and clearly labelled: a
     behaviour-cloned tiny VLA that does not solve the tasks yet, and a draft head trained against it,
     so decoding, acceptance lengths and latencies are those of a trained pair (docs/training.md);
  3. a stand-in built once in the user's cache: a seeded random tiny VLA and a draft head trained
     briefly against it (only if the package was installed without its models).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BUNDLED = Path(__file__).parent / "models" / "tabletop"
PARTIAL = Path(__file__).parent / "models" / "tabletop-run2"
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
    if (PARTIAL / "draft" / "config.json").is_file():
        return EmbeddedModel(
            PARTIAL / "target", PARTIAL / "draft", f"partially trained tabletop pair ({PARTIAL})",
            caveats=("the tabletop VLA that solves the tasks is not trained yet (issue #6): this one was "
                     "behaviour-cloned for 10,500 steps on a CPU and succeeds in 0 of 15 evaluation episodes "
                     "(docs/training.md)",
                     "its draft head was trained against it, so acceptance lengths and latencies are those of "
                     "a trained pair"))
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
