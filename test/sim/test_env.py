"""TabletopEnv contract: observations, determinism, action limits and refusal, workspace bounds."""

import numpy as np
import pytest

from specvla_ros.sim.env import EnvConfig, TabletopEnv
from specvla_ros.sim.errors import SimError

OPEN = 1.0


def test_default_image_is_224_rgb_uint8() -> None:
    with TabletopEnv(EnvConfig()) as env:
        obs = env.reset(0, "pick")
        assert obs.image is not None
        assert obs.image.shape == (224, 224, 3) and obs.image.dtype == np.uint8
        assert obs.image.std() > 5  # a real picture, not a blank buffer
        result = env.step(np.zeros(7))
        assert result.observation.image.shape == (224, 224, 3)


def test_image_size_is_configurable(small_render_config) -> None:
    with TabletopEnv(small_render_config) as env:
        assert env.reset(0, "push").image.shape == (64, 80, 3)


def test_observation_carries_instruction_and_state(fast_env) -> None:
    obs = fast_env.reset(1, "place")
    assert obs.image is None
    assert obs.instruction == fast_env.task.instruction
    assert obs.proprio.shape == (7,) and obs.proprio.dtype == np.float32
    for key in ("ee_pos", "ee_euler", "gripper", "red_cube_pos", "green_plate_pos"):
        assert key in obs.state
    assert obs.state["gripper"][0] == pytest.approx(1.0, abs=0.02)  # starts open


def test_control_rate_is_ten_hz() -> None:
    cfg = EnvConfig()
    assert cfg.control_hz == 10.0
    assert cfg.substeps * cfg.scene.physics_dt == pytest.approx(0.1)


def _rollout(env: TabletopEnv, seed: int, actions: np.ndarray) -> list[np.ndarray]:
    obs = env.reset(seed, "pick")
    frames = [obs.image]
    for a in actions:
        frames.append(env.step(a).observation.image)
    return [np.concatenate([env.state()[k].ravel() for k in sorted(env.state())])] + frames


def test_same_seed_same_episode(small_render_config) -> None:
    rng = np.random.default_rng(7)
    actions = rng.uniform(-0.02, 0.02, size=(8, 7))
    actions[:, 6] = rng.uniform(0, 1, size=8)
    with TabletopEnv(small_render_config) as env_a, TabletopEnv(small_render_config) as env_b:
        run_a = _rollout(env_a, 3, actions)
        run_b = _rollout(env_b, 3, actions)
        run_c = _rollout(env_a, 3, actions)  # same instance, reset again
    for a, b, c in zip(run_a, run_b, run_c, strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)


def test_different_seeds_give_different_layouts(fast_env) -> None:
    fast_env.reset(0, "pick")
    first = fast_env.object_pos("red_cube")
    fast_env.reset(1, "pick")
    assert not np.allclose(first, fast_env.object_pos("red_cube"))


def test_step_before_reset_is_an_error() -> None:
    with TabletopEnv(EnvConfig(render=False)) as env, pytest.raises(SimError, match="reset"):
        env.step(np.zeros(7))


@pytest.mark.parametrize("bad", [np.zeros(6), np.zeros((2, 7)), "left"])
def test_wrong_action_shape_is_an_error(fast_env, bad) -> None:
    fast_env.reset(0, "pick")
    with pytest.raises(SimError, match="7"):
        fast_env.step(bad)


@pytest.mark.parametrize("poison", [np.nan, np.inf, -np.inf])
def test_non_finite_action_is_refused_as_zero_motion(fast_env, poison) -> None:
    fast_env.reset(0, "pick")
    fast_env.step(np.array([0, 0, 0, 0, 0, 0, 0.0]))  # close the gripper first
    before = fast_env.state()
    action = np.array([0.02, 0.02, 0.02, 0, 0, 0.1, 1.0])
    action[2] = poison
    result = fast_env.step(action)
    after = result.observation.state
    assert result.info["action_refused"] and not result.info["action_clamped"]
    np.testing.assert_allclose(after["ee_pos"], before["ee_pos"], atol=2e-3)
    assert after["gripper_command"][0] == 0.0  # previous gripper command kept, not the poisoned one
    assert np.all(result.info["applied_action"][:6] == 0)


def test_huge_action_is_clamped_to_per_step_limits(fast_env) -> None:
    obs = fast_env.reset(0, "pick")
    result = fast_env.step(np.array([5.0, -5.0, 5.0, 3.0, -3.0, 9.0, 7.0]))
    assert result.info["action_clamped"] and not result.info["action_refused"]
    np.testing.assert_allclose(result.info["applied_action"], [0.02, -0.02, 0.02, 0.1, -0.1, 0.1, 1.0])
    moved = result.observation.state["ee_pos"] - obs.state["ee_pos"]
    assert np.all(np.abs(moved) <= 0.02 + 1e-3)
    assert abs(result.observation.state["ee_euler"][2] - obs.state["ee_euler"][2]) <= 0.1 + 5e-3


def test_roll_and_pitch_are_held_fixed(fast_env) -> None:
    fast_env.reset(0, "pick")
    for _ in range(5):
        result = fast_env.step(np.array([0, 0, 0, 0.1, 0.1, 0, OPEN]))
    np.testing.assert_allclose(result.observation.state["ee_euler"][:2], 0.0)


def test_workspace_bounds_keep_gripper_over_the_table(fast_env) -> None:
    scene = fast_env.config.scene
    fast_env.reset(0, "pick")
    for action in ([0.02, 0.02, -0.02], [-0.02, -0.02, 0.02]):
        for _ in range(40):
            state = fast_env.step(np.array([*action, 0, 0, 0, OPEN])).observation.state
        assert np.all(state["ee_pos"] >= np.asarray(scene.workspace_low) - 2e-3)
        assert np.all(state["ee_pos"] <= np.asarray(scene.workspace_high) + 2e-3)


def test_random_garbage_actions_never_explode(fast_env) -> None:
    rng = np.random.default_rng(0)
    fast_env.reset(2, "place")
    for _ in range(60):
        action = rng.normal(0, 10, size=7)
        if rng.random() < 0.2:
            action[rng.integers(7)] = rng.choice([np.nan, np.inf, -np.inf])
        result = fast_env.step(action)
        assert not result.info["physics_error"]
    state = fast_env.state()
    assert all(np.all(np.isfinite(v)) for v in state.values())
    assert np.all(np.abs(fast_env.data.qvel) < 50)
    for color in fast_env.config.scene.cube_colors:
        assert state[f"{color}_cube_pos"][2] > -0.01  # nothing fell through the table


def test_episode_ends_at_step_budget() -> None:
    with TabletopEnv(EnvConfig(render=False, max_steps=3)) as env:
        env.reset(0, "pick")
        results = [env.step(np.zeros(7)) for _ in range(3)]
    assert [r.done for r in results] == [False, False, True]
    assert results[-1].info["truncated"] and not results[-1].success
