"""MuJoCo tabletop simulation (no rclpy): scene, tasks, scripted expert, success harness.

Public API (see docs/simulation.md):
    env = TabletopEnv(EnvConfig())
    obs = env.reset(seed=0, task="pick")       # or "push", "place", a TaskSpec, or an instruction
    result = env.step(np.zeros(7))             # (dx, dy, dz, droll, dpitch, dyaw, gripper)
    env.close()
"""

import os

# Headless rendering by default. MuJoCo picks its GL backend when it is first imported, so this
# must run before any `import mujoco`; set MUJOCO_GL yourself (egl, glfw) to override.
os.environ.setdefault("MUJOCO_GL", "osmesa")

from specvla_ros.sim.action import ACTION_DIM, ACTION_NAMES, ActionLimits  # noqa: E402
from specvla_ros.sim.env import EnvConfig, Observation, StepResult, TabletopEnv  # noqa: E402
from specvla_ros.sim.errors import SimError  # noqa: E402
from specvla_ros.sim.expert import ExpertConfig, ScriptedExpert  # noqa: E402
from specvla_ros.sim.scene import CameraConfig, SceneConfig  # noqa: E402
from specvla_ros.sim.tasks import TASKS, TaskSpec, parse_instruction  # noqa: E402

__all__ = [
    "ACTION_DIM",
    "ACTION_NAMES",
    "ActionLimits",
    "CameraConfig",
    "EnvConfig",
    "ExpertConfig",
    "Observation",
    "SceneConfig",
    "ScriptedExpert",
    "SimError",
    "StepResult",
    "TASKS",
    "TabletopEnv",
    "TaskSpec",
    "parse_instruction",
]
