"""Shared fixtures for the simulator tests: headless GL, and environments that are always closed."""

import os

os.environ.setdefault("MUJOCO_GL", "osmesa")  # before anything imports mujoco

from typing import Iterator  # noqa: E402

import pytest  # noqa: E402

from specvla_ros.sim.env import EnvConfig, TabletopEnv  # noqa: E402
from specvla_ros.sim.scene import CameraConfig, SceneConfig  # noqa: E402


@pytest.fixture
def fast_env() -> Iterator[TabletopEnv]:
    """No rendering: physics only, for behaviour tests."""
    env = TabletopEnv(EnvConfig(render=False))
    yield env
    env.close()


@pytest.fixture
def small_render_config() -> EnvConfig:
    return EnvConfig(scene=SceneConfig(camera=CameraConfig(height=64, width=80)))
