"""Real tiny models shared by the tests: random targets and draft heads trained against them."""
from __future__ import annotations

import numpy as np

from specvla_ros.core.draft_head import DraftHead
from specvla_ros.core.tiny.config import TinyVLAConfig
from specvla_ros.core.tiny.model import TinyVLA
from specvla_ros.training.draft_trainer import collect_sequence, train_draft_head

SMALL = TinyVLAConfig(image_size=32, patch_size=16, vision_dim=32, hidden_size=32, intermediate_size=64,
                      num_layers=1, num_heads=4, num_kv_heads=2, vocab_size=528)
INSTRUCTIONS = ["pick up the red cube", "push the blue cube to the left", "Put the red cube on the green plate"]


def random_image(rng: np.random.Generator, size: tuple[int, int] = (24, 40)) -> np.ndarray:
    return rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)


def observations(seed: int, count: int) -> list[tuple[np.ndarray, str]]:
    rng = np.random.default_rng(seed)
    return [(random_image(rng), INSTRUCTIONS[i % len(INSTRUCTIONS)]) for i in range(count)]


def make_pair(seed: int, config: TinyVLAConfig = SMALL, train_steps: int = 0) -> tuple[TinyVLA, DraftHead]:
    """A random target and a draft head, optionally trained on the target's own outputs."""
    target = TinyVLA.random(config, seed)
    head = DraftHead.random(target, seed + 1000, num_heads=2)
    if train_steps:
        sequences = [collect_sequence(target, image, text) for image, text in observations(seed, 6)]
        train_draft_head(head, sequences, steps=train_steps, seed=seed)
    return target, head
