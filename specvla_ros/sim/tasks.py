"""Language-conditioned tabletop tasks: what the instruction says and how success is decided.

A task *family* ("pick", "push", "place") is sampled per episode into a concrete `TaskSpec`
(which cube, which plate, which direction), so the same scene with distractors needs the
instruction to be solved. Success tests read the world through the small `WorldView` protocol,
which keeps this module free of MuJoCo and easy to test.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Literal, Protocol

import numpy as np

from specvla_ros.sim.errors import SimError
from specvla_ros.sim.scene import SceneConfig, cube_name, plate_name

TaskKind = Literal["pick", "push", "place"]
Direction = Literal["left", "right"]

# Success thresholds (metres). Lift: cube bottom clearly off the table. Push: a deliberate shove,
# not a nudge. Place: cube centre over the plate and resting on it.
LIFT_HEIGHT_M = 0.05
PUSH_DISTANCE_M = 0.08
PUSH_MAX_LATERAL_M = 0.06
REST_TOLERANCE_M = 0.01

# Which world direction "left"/"right" mean: the camera looks along +y, so image left is -x.
DIRECTION_SIGN: dict[str, float] = {"left": -1.0, "right": 1.0}


class WorldView(Protocol):
    """Read-only privileged world state, as the environment exposes it to success tests."""

    def object_pos(self, name: str) -> np.ndarray: ...

    def initial_object_pos(self, name: str) -> np.ndarray: ...

    def touching_gripper(self, name: str) -> bool: ...


@dataclass(frozen=True)
class TaskSpec:
    """One concrete task instance. `instruction` is the plain-English string a policy receives."""

    kind: TaskKind
    cube: str
    plate: str | None = None
    direction: Direction | None = None
    max_steps: int = 100

    def __post_init__(self) -> None:
        if self.kind == "place" and self.plate is None:
            raise SimError("a 'place' task needs a plate colour")
        if self.kind == "push" and self.direction not in DIRECTION_SIGN:
            raise SimError(f"a 'push' task needs direction 'left' or 'right', got {self.direction!r}")

    @property
    def family(self) -> str:
        return self.kind

    @property
    def instruction(self) -> str:
        if self.kind == "pick":
            return f"pick up the {self.cube} cube"
        if self.kind == "push":
            return f"push the {self.cube} cube to the {self.direction}"
        return f"put the {self.cube} cube on the {self.plate} plate"

    def success(self, world: WorldView, scene: SceneConfig) -> bool:
        """The unambiguous success test, evaluated after every control step."""
        cube = world.object_pos(cube_name(self.cube))
        start = world.initial_object_pos(cube_name(self.cube))
        if self.kind == "pick":
            return bool(cube[2] - start[2] >= LIFT_HEIGHT_M)
        if self.kind == "push":
            sign = DIRECTION_SIGN[str(self.direction)]
            moved = sign * (cube[0] - start[0])
            on_table = cube[2] <= start[2] + REST_TOLERANCE_M
            return bool(moved >= PUSH_DISTANCE_M and abs(cube[1] - start[1]) <= PUSH_MAX_LATERAL_M and on_table)
        plate = world.object_pos(plate_name(str(self.plate)))
        over_plate = np.linalg.norm(cube[:2] - plate[:2]) <= scene.plate_radius - 0.5 * scene.cube_half_size
        resting_z = plate[2] + scene.plate_half_height + scene.cube_half_size
        resting = abs(cube[2] - resting_z) <= REST_TOLERANCE_M
        return bool(over_plate and resting and not world.touching_gripper(cube_name(self.cube)))

    def layout_ok(self, cubes: dict[str, np.ndarray], plates: dict[str, np.ndarray], scene: SceneConfig) -> bool:
        """Task-specific constraints on a sampled layout (xy positions), e.g. a clear push lane."""
        if self.kind != "push":
            return True
        sign = DIRECTION_SIGN[str(self.direction)]
        start = cubes[self.cube]
        # Room to push within the object area, and nothing else in the lane (incl. behind the cube,
        # where the gripper comes down).
        if abs(start[0] + sign * (PUSH_DISTANCE_M + 0.04)) > 0.26:
            return False
        lane_lo, lane_hi = sorted((start[0] - sign * 0.09, start[0] + sign * 0.16))
        others = [p for c, p in cubes.items() if c != self.cube]
        clearance = [(p, 0.07) for p in others] + [(p, scene.plate_radius + 0.04) for p in plates.values()]
        for pos, radius in clearance:
            if lane_lo - radius < pos[0] < lane_hi + radius and abs(pos[1] - start[1]) < radius:
                return False
        return True


@dataclass(frozen=True)
class TaskFamily:
    """A named family of tasks; `sample` draws the concrete colours/direction for an episode."""

    name: str
    description: str
    max_steps: int
    sample: Callable[[np.random.Generator, SceneConfig, int], TaskSpec]


def _pick(rng: np.random.Generator, scene: SceneConfig, max_steps: int) -> TaskSpec:
    return TaskSpec("pick", cube=str(rng.choice(scene.cube_colors)), max_steps=max_steps)


def _push(rng: np.random.Generator, scene: SceneConfig, max_steps: int) -> TaskSpec:
    direction = "left" if rng.random() < 0.5 else "right"
    return TaskSpec("push", cube=str(rng.choice(scene.cube_colors)), direction=direction, max_steps=max_steps)


def _place(rng: np.random.Generator, scene: SceneConfig, max_steps: int) -> TaskSpec:
    cube = str(rng.choice(scene.cube_colors))
    return TaskSpec("place", cube=cube, plate=str(rng.choice(scene.plate_colors)), max_steps=max_steps)


TASKS: dict[str, TaskFamily] = {
    "pick": TaskFamily("pick", "pick up the named cube (lift it 5 cm)", 80, _pick),
    "push": TaskFamily("push", "push the named cube 8 cm to the image left/right", 100, _push),
    "place": TaskFamily("place", "put the named cube on the named plate and let go", 150, _place),
}

_PATTERNS: list[tuple[re.Pattern[str], TaskKind]] = [
    (re.compile(r"^pick up the (\w+) cube$"), "pick"),
    (re.compile(r"^push the (\w+) cube to the (left|right)$"), "push"),
    (re.compile(r"^put the (\w+) cube on the (\w+) plate$"), "place"),
]


def parse_instruction(text: str, scene: SceneConfig | None = None) -> TaskSpec:
    """Turn an instruction string back into a TaskSpec (case/whitespace/final period ignored).

    Lets a caller that only has language (e.g. a ROS task topic) drive the simulator.
    """
    scene = scene or SceneConfig()
    norm = " ".join(text.lower().strip().rstrip(".").split())
    for pattern, kind in _PATTERNS:
        match = pattern.match(norm)
        if not match:
            continue
        cube = match.group(1)
        if cube not in scene.cube_colors:
            raise SimError(f"no {cube} cube in this scene; cubes: {', '.join(scene.cube_colors)}")
        max_steps = TASKS[kind].max_steps
        if kind == "pick":
            return TaskSpec("pick", cube=cube, max_steps=max_steps)
        if kind == "push":
            return TaskSpec("push", cube=cube, direction=match.group(2), max_steps=max_steps)  # type: ignore[arg-type]
        plate = match.group(2)
        if plate not in scene.plate_colors:
            raise SimError(f"no {plate} plate in this scene; plates: {', '.join(scene.plate_colors)}")
        return TaskSpec("place", cube=cube, plate=plate, max_steps=max_steps)
    raise SimError(
        f"cannot understand instruction {text!r}; use one of: 'pick up the red cube', "
        "'push the blue cube to the left', 'put the red cube on the green plate'"
    )


def resolve_task(task: str | TaskSpec, rng: np.random.Generator, scene: SceneConfig) -> TaskSpec:
    """A TaskSpec as is, a family name sampled with `rng`, or an instruction string parsed."""
    if isinstance(task, TaskSpec):
        return task
    if task in TASKS:
        family = TASKS[task]
        return family.sample(rng, scene, family.max_steps)
    if " " in task:
        return parse_instruction(task, scene)
    raise SimError(f"unknown task {task!r}; known families: {', '.join(TASKS)} (or an instruction string)")
