"""Bag-test fixtures: generated bags, a real tiny model pair (and its checkpoints), a ROS context."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from test.models import INSTRUCTIONS, make_pair, observations
from test.ros.conftest import ros_context  # noqa: F401  (the same private rclpy context fixture)

T0_NS = 1_700_000_000_000_000_000  # a plausible wall-clock stamp: header stamps are never zero here
PERIOD_NS = 50_000_000


def frames(count: int = 8, seed: int = 3, task_every: int = 4) -> list[tuple[int, np.ndarray, str]]:
    """(stamp_ns, RGB, instruction): the task changes every `task_every` frames."""
    images = [image for image, _ in observations(seed, count)]
    return [(T0_NS + i * PERIOD_NS, image, INSTRUCTIONS[(i // task_every) % len(INSTRUCTIONS)])
            for i, image in enumerate(images)]


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """One intra-op thread for these tests: tiny matrices gain nothing from more, and on a shared CPU
    (CI beside other jobs) OpenMP threads waiting on each other made one decode 100x slower."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def pair():
    """An untrained tiny target + draft head: drafts are often a few bins off, so r > 0 changes actions."""
    return make_pair(0)


@pytest.fixture(scope="session")
def checkpoints(pair, tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("checkpoints")
    target, head = pair
    return target.save(folder / "target"), head.save(folder / "draft")
