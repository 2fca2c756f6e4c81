"""Random, non-overlapping object layouts for a reset, drawn from a seeded generator.

Rejection sampling keeps it obvious: draw every object, throw the draw away if anything is too
close or the task's own constraint (e.g. a clear push lane) fails. Deterministic for a given rng.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from specvla_ros.sim.errors import SimError
from specvla_ros.sim.scene import SceneConfig
from specvla_ros.sim.tasks import TaskSpec

# Where objects may start (xy, metres): inside the gripper workspace with a margin.
OBJECT_AREA_LOW = (-0.22, -0.10)
OBJECT_AREA_HIGH = (0.22, 0.16)
MIN_CUBE_GAP_M = 0.085  # centre distance between cubes: an open finger never lands on a neighbour
MIN_PLATE_GAP_M = 0.15


@dataclass(frozen=True)
class Layout:
    """Initial object poses: cube xy + yaw (radians), plate xy. Keyed by colour."""

    cube_xy: dict[str, np.ndarray]
    cube_yaw: dict[str, float]
    plate_xy: dict[str, np.ndarray]


def _far_enough(p: np.ndarray, others: list[np.ndarray], gap: float) -> bool:
    return all(np.linalg.norm(p - q) >= gap for q in others)


def sample_layout(rng: np.random.Generator, scene: SceneConfig, task: TaskSpec, max_tries: int = 1000) -> Layout:
    """Draw a layout that satisfies spacing and `task.layout_ok`; raise SimError if none is found."""
    low, high = np.asarray(OBJECT_AREA_LOW), np.asarray(OBJECT_AREA_HIGH)
    cube_plate_gap = scene.plate_radius + 1.5 * scene.cube_half_size + 0.01
    for _ in range(max_tries):
        plates: dict[str, np.ndarray] = {}
        cubes: dict[str, np.ndarray] = {}
        ok = True
        for color in scene.plate_colors:
            p = rng.uniform(low, high)
            ok = ok and _far_enough(p, list(plates.values()), MIN_PLATE_GAP_M)
            plates[color] = p
        for color in scene.cube_colors:
            p = rng.uniform(low, high)
            ok = ok and _far_enough(p, list(cubes.values()), MIN_CUBE_GAP_M)
            ok = ok and _far_enough(p, list(plates.values()), cube_plate_gap)
            cubes[color] = p
        yaws = {c: float(rng.uniform(-np.pi / 4, np.pi / 4)) for c in scene.cube_colors}
        if ok and task.layout_ok(cubes, plates, scene):
            return Layout(cube_xy=cubes, cube_yaw=yaws, plate_xy=plates)
    raise SimError(f"no valid layout for {task.instruction!r} in {max_tries} tries; use fewer objects")
