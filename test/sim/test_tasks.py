"""Task registry, instructions, success tests and layouts."""

import numpy as np
import pytest

from specvla_ros.sim.errors import SimError
from specvla_ros.sim.layout import MIN_CUBE_GAP_M, sample_layout
from specvla_ros.sim.scene import SceneConfig
from specvla_ros.sim.tasks import TASKS, TaskSpec, parse_instruction, resolve_task

SCENE = SceneConfig()


class FakeWorld:
    """A WorldView with hand-set positions."""

    def __init__(self, pos: dict, start: dict, touching: bool = False) -> None:
        self.pos, self.start, self.touching = pos, start, touching

    def object_pos(self, name: str) -> np.ndarray:
        return np.asarray(self.pos[name], float)

    def initial_object_pos(self, name: str) -> np.ndarray:
        return np.asarray(self.start[name], float)

    def touching_gripper(self, name: str) -> bool:
        return self.touching


def test_registry_has_three_families_with_step_budgets() -> None:
    assert set(TASKS) == {"pick", "push", "place"}
    assert all(f.max_steps > 0 for f in TASKS.values())


@pytest.mark.parametrize(
    "spec, text",
    [
        (TaskSpec("pick", cube="red"), "pick up the red cube"),
        (TaskSpec("push", cube="blue", direction="left"), "push the blue cube to the left"),
        (TaskSpec("place", cube="yellow", plate="green"), "put the yellow cube on the green plate"),
    ],
)
def test_instruction_round_trips_through_the_parser(spec: TaskSpec, text: str) -> None:
    assert spec.instruction == text
    parsed = parse_instruction(f"  {text.capitalize()}. ")
    parsed_fields = (parsed.kind, parsed.cube, parsed.plate, parsed.direction)
    assert parsed_fields == (spec.kind, spec.cube, spec.plate, spec.direction)
    assert resolve_task(text, np.random.default_rng(0), SCENE).instruction == text


@pytest.mark.parametrize("text", ["pick up the pink cube", "put the red cube on the red plate", "dance"])
def test_unknown_instructions_are_refused_with_help(text: str) -> None:
    with pytest.raises(SimError):
        parse_instruction(text)


def test_unknown_task_name_lists_known_ones() -> None:
    with pytest.raises(SimError, match="pick"):
        resolve_task("stack", np.random.default_rng(0), SCENE)


def test_families_sample_every_colour_so_the_instruction_matters() -> None:
    rng = np.random.default_rng(0)
    for name in TASKS:
        specs = [resolve_task(name, rng, SCENE) for _ in range(60)]
        assert {s.cube for s in specs} == set(SCENE.cube_colors)
    assert {resolve_task("push", rng, SCENE).direction for _ in range(30)} == {"left", "right"}


def test_pick_success_needs_a_real_lift() -> None:
    spec = TaskSpec("pick", cube="red")
    start = {"red_cube": [0, 0, 0.02]}
    assert not spec.success(FakeWorld({"red_cube": [0, 0, 0.06]}, start), SCENE)
    assert spec.success(FakeWorld({"red_cube": [0, 0, 0.071]}, start), SCENE)


def test_push_success_needs_direction_distance_and_table_contact() -> None:
    spec = TaskSpec("push", cube="red", direction="left")
    start = {"red_cube": [0.1, 0, 0.02]}
    assert spec.success(FakeWorld({"red_cube": [0.01, 0.01, 0.02]}, start), SCENE)
    assert not spec.success(FakeWorld({"red_cube": [0.19, 0, 0.02]}, start), SCENE)  # wrong way
    assert not spec.success(FakeWorld({"red_cube": [0.05, 0, 0.02]}, start), SCENE)  # too short
    assert not spec.success(FakeWorld({"red_cube": [0.0, 0, 0.10]}, start), SCENE)  # carried, not pushed


def test_place_success_needs_cube_resting_on_the_named_plate_and_released() -> None:
    spec = TaskSpec("place", cube="red", plate="green")
    plate_top = 2 * SCENE.plate_half_height
    on = {"red_cube": [0.1, 0.1, plate_top + 0.02], "green_plate": [0.1, 0.11, SCENE.plate_half_height]}
    start = {"red_cube": [0, 0, 0.02]}
    assert spec.success(FakeWorld(on, start), SCENE)
    assert not spec.success(FakeWorld(on, start, touching=True), SCENE)  # still held
    off = dict(on, red_cube=[0.2, 0.1, 0.02])
    assert not spec.success(FakeWorld(off, start), SCENE)
    hovering = dict(on, red_cube=[0.1, 0.1, plate_top + 0.05])
    assert not spec.success(FakeWorld(hovering, start), SCENE)


@pytest.mark.parametrize("family", list(TASKS))
def test_layouts_are_spread_out_with_distractors(family: str) -> None:
    for seed in range(40):
        rng = np.random.default_rng(seed)
        spec = resolve_task(family, rng, SCENE)
        layout = sample_layout(rng, SCENE, spec)
        cubes = list(layout.cube_xy.values())
        assert len(cubes) == 3 and len(layout.plate_xy) == 2  # target plus distractors
        for i in range(len(cubes)):
            for j in range(i):
                assert np.linalg.norm(cubes[i] - cubes[j]) >= MIN_CUBE_GAP_M
        assert spec.layout_ok(layout.cube_xy, layout.plate_xy, SCENE)
