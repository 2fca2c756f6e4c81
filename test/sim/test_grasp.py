"""The grasp is physical: friction between finger pads and cube, no welds, no attachment tricks."""

import numpy as np

from specvla_ros.sim.env import TabletopEnv
from specvla_ros.sim.expert import ScriptedExpert
from specvla_ros.sim.tasks import TaskSpec


def _descend_and_close(env: TabletopEnv, seed: int, color: str = "red") -> None:
    """Let the expert position the open gripper around the cube and close it."""
    expert = ScriptedExpert(env.config.scene, env.config.limits)
    obs = env.reset(seed, TaskSpec("pick", cube=color))
    expert.reset(env.task)
    while expert.phase != "lift":
        obs = env.step(expert.act(obs.state)).observation
        assert env.step_count < 60, "expert never reached the cube"


def _finger_contacts(env: TabletopEnv, body: str) -> set[str]:
    m, d = env.model, env.data
    target = m.body(body).id
    touching = set()
    for i in range(d.ncon):
        b1, b2 = m.geom_bodyid[d.contact.geom1[i]], m.geom_bodyid[d.contact.geom2[i]]
        if target in (b1, b2):
            touching.add(m.body(b2 if b1 == target else b1).name)
    return touching


def test_scene_has_no_weld_or_attachment_constraints(fast_env) -> None:
    assert fast_env.model.neq == 0


def test_closed_gripper_lifts_cube_with_it(fast_env) -> None:
    _descend_and_close(fast_env, seed=4)
    assert {"finger_left", "finger_right"} <= _finger_contacts(fast_env, "red_cube")
    cube_start = fast_env.object_pos("red_cube")[2]
    ee_start = fast_env.state()["ee_pos"][2]
    for _ in range(6):
        state = fast_env.step(np.array([0, 0, 0.02, 0, 0, 0, 0.0])).observation.state
    lifted_ee = state["ee_pos"][2] - ee_start
    lifted_cube = state["red_cube_pos"][2] - cube_start
    assert lifted_ee > 0.09
    assert abs(lifted_cube - lifted_ee) < 0.01  # the cube rose with the gripper, not slipped
    assert "table" not in _finger_contacts(fast_env, "red_cube")
    # Carry it sideways too: friction holds it through accelerations.
    for _ in range(5):
        state = fast_env.step(np.array([0.02, 0, 0, 0, 0, 0, 0.0])).observation.state
    assert np.linalg.norm(state["red_cube_pos"][:2] - state["ee_pos"][:2]) < 0.015
    # And opening the fingers drops it back onto the table.
    for _ in range(10):
        state = fast_env.step(np.array([0, 0, 0, 0, 0, 0, 1.0])).observation.state
    assert state["red_cube_pos"][2] < 0.03


def test_open_gripper_does_not_lift_cube(fast_env) -> None:
    _descend_and_close(fast_env, seed=4)
    for _ in range(3):  # reopen, then rise
        fast_env.step(np.array([0, 0, 0, 0, 0, 0, 1.0]))
    cube_start = fast_env.object_pos("red_cube")[2]
    for _ in range(6):
        fast_env.step(np.array([0, 0, 0.02, 0, 0, 0, 1.0]))
    assert abs(fast_env.object_pos("red_cube")[2] - cube_start) < 0.005
