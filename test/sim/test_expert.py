"""The scripted expert solves every task family (physics only, no rendering: 20 seeded episodes per family in ~3 s)."""

import numpy as np
import pytest

from specvla_ros.sim.expert import ScriptedExpert, grasp_yaw
from specvla_ros.sim.tasks import TASKS

EPISODES = 20


@pytest.mark.parametrize("family", list(TASKS))
def test_expert_succeeds_at_least_90_percent(fast_env, family: str) -> None:
    expert = ScriptedExpert(fast_env.config.scene, fast_env.config.limits)
    limits = fast_env.config.limits
    successes = 0
    for seed in range(EPISODES):
        obs = fast_env.reset(seed, family)
        expert.reset(fast_env.task)
        while True:
            action = expert.act(obs.state)
            assert np.all(np.abs(action[:3]) <= limits.max_translation_m + 1e-12)
            assert np.all(np.abs(action[3:6]) <= limits.max_rotation_rad + 1e-12)
            result = fast_env.step(action)
            assert not result.info["action_clamped"]
            obs = result.observation
            if result.done:
                break
        successes += result.success
    assert successes >= 0.9 * EPISODES


@pytest.mark.parametrize("cube_yaw", [-0.7, -0.3, 0.0, 0.4, 0.78, 1.2, 3.0])
def test_grasp_yaw_lines_up_with_a_face_within_45_degrees(cube_yaw: float) -> None:
    yaw = grasp_yaw(cube_yaw)
    assert -np.pi / 4 <= yaw <= np.pi / 4
    assert np.isclose(np.cos(4 * (yaw - cube_yaw)), 1.0)
