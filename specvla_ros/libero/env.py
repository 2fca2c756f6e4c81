"""`LiberoEnv`: one LIBERO suite behind the tabletop's interface (reset(seed, task), step(action)).

So the bridge, the metrics and the reports treat LIBERO like `specvla_ros.sim.TabletopEnv`:
- `reset(seed, task)`: `task` is the suite's task index (or its name or instruction), `seed` the
  episode, i.e. which of the task's fixed initial states (50 per task) to load. Then the
  settle steps run (no-op actions while the placed objects fall), as in OpenVLA's evaluation.
- `step(action)`: our 7-D layout, 6 deltas in LIBERO's OSC_POSE units and the gripper 0..1
  (1 = open), converted to robosuite's (-1 = open) by `conventions.to_osc_action`.
- Success is LIBERO's own goal check; an episode also ends at the suite's step limit.

LIBERO is imported lazily (it needs `make setup-libero`): importing this module is cheap everywhere.
"""
from __future__ import annotations

import importlib.util
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from specvla_ros.libero import conventions as conv
from specvla_ros.libero.errors import LiberoSetupError, LiberoUsageError
from specvla_ros.libero.install import CONFIG_FILE, default_config_dir
from specvla_ros.sim.env import Observation, StepResult

SETUP_HINT = ("run `make setup-libero` once, then use the LIBERO venv's tools, e.g. "
              "`.venv-libero/bin/specvla libero-eval ...` (docs/libero.md)")
PANDA_FINGER_TRAVEL_M = 0.04  # each Panda finger joint moves 0..0.04 m


def config_file() -> Path:
    """The config.yaml LIBERO will read: $LIBERO_CONFIG_PATH, else this venv's, else LIBERO's ~/.libero."""
    if "LIBERO_CONFIG_PATH" in os.environ:
        return Path(os.environ["LIBERO_CONFIG_PATH"]).expanduser() / CONFIG_FILE
    own = default_config_dir() / CONFIG_FILE
    return own if own.is_file() else Path("~/.libero").expanduser() / CONFIG_FILE


def is_available() -> bool:
    """True when LIBERO, robosuite and a config are installed in this Python (nothing is imported)."""
    found = all(importlib.util.find_spec(name) is not None for name in ("libero", "robosuite"))
    return found and config_file().is_file()


def import_libero() -> SimpleNamespace:
    """Import LIBERO's benchmark and env classes, or raise LiberoSetupError saying what to do.

    Sets MUJOCO_GL (osmesa unless already set) and LIBERO_CONFIG_PATH first: both are read at import.
    """
    if importlib.util.find_spec("libero") is None or importlib.util.find_spec("robosuite") is None:
        raise LiberoSetupError(f"LIBERO is not installed in this Python ({sys.prefix}): {SETUP_HINT}")
    config = config_file()
    if not config.is_file():
        raise LiberoSetupError(f"no LIBERO config at {config} (without one LIBERO's first import asks questions on "
                               f"stdin): {SETUP_HINT}, or `specvla libero-install`")
    os.environ["LIBERO_CONFIG_PATH"] = str(config.parent)
    os.environ.setdefault("MUJOCO_GL", "osmesa")
    import mujoco

    if int(mujoco.__version__.split(".")[0]) >= 4:
        raise LiberoSetupError(f"robosuite 1.4 needs mujoco 3.x, this Python has mujoco {mujoco.__version__}: "
                               f"{SETUP_HINT}")
    try:
        from libero.libero import benchmark
        from libero.libero.envs import OffScreenRenderEnv
    except ImportError as exc:
        raise LiberoSetupError(f"LIBERO is incompletely installed ({exc}): {SETUP_HINT}") from exc
    return SimpleNamespace(benchmark=benchmark, OffScreenRenderEnv=OffScreenRenderEnv)


@dataclass(frozen=True)
class LiberoConfig:
    """One suite and how its episodes are run and seen. Defaults follow OpenVLA's LIBERO evaluation."""

    suite: str = "libero_spatial"
    render_size: int = 256              # OpenVLA renders 256 px and resizes, as its training data was
    image_size: int = 224               # what the policy gets (upright, square)
    jpeg_quality: int | None = 95       # JPEG round trip before resizing, as in training; None: off
    settle_steps: int = conv.NUM_STEPS_WAIT
    max_steps: int | None = None        # None: the suite's limit (conventions.MAX_STEPS)
    env_seed: int = 0                   # robosuite's seed, set before every reset so episodes are independent
    binarize_gripper: bool = True       # OpenVLA sends sign(gripper), robosuite reads sign anyway
    task_order_index: int = 0           # LIBERO's task order; 0 is the one papers report

    def __post_init__(self) -> None:
        conv.max_steps(self.suite)  # raises for an unknown suite
        if min(self.render_size, self.image_size) < 16:
            raise LiberoUsageError(f"render_size and image_size must be at least 16 px, got "
                                   f"{self.render_size} and {self.image_size}")
        if self.max_steps is not None and self.max_steps < 1:
            raise LiberoUsageError(f"max_steps must be at least 1 (or None for the suite's limit), "
                                   f"got {self.max_steps}")

    @property
    def step_limit(self) -> int:
        return self.max_steps if self.max_steps is not None else conv.max_steps(self.suite)


class LiberoEnv:
    """A LIBERO suite. Builds a task's robosuite env on first use (10-25 s on 2 CPUs); not thread-safe."""

    def __init__(self, config: LiberoConfig | None = None) -> None:
        self.config = config or LiberoConfig()
        self._libero = import_libero()
        benchmark_class = self._libero.benchmark.get_benchmark_dict()[self.config.suite]
        self._benchmark = benchmark_class(task_order_index=self.config.task_order_index)
        self._env: Any = None
        self._task_index: int | None = None
        self._init_states: Any = None
        self._raw: dict[str, np.ndarray] | None = None
        self._instruction = ""
        self._steps = 0
        self._robosuite_gripper = conv.ROBOSUITE_GRIPPER_OPEN

    # ------------------------------------------------------------------ tasks
    @property
    def n_tasks(self) -> int:
        return int(self._benchmark.n_tasks)

    def instruction(self, task: int | str) -> str:
        """The task's language instruction, as OpenVLA passes it to the model."""
        return str(self._benchmark.get_task(self.task_index(task)).language)

    def task_name(self, task: int | str) -> str:
        return str(self._benchmark.get_task(self.task_index(task)).name)

    def task_index(self, task: int | str) -> int:
        """Index of `task` in the suite: an int, a numeric string, a task name or its instruction."""
        if isinstance(task, (int, np.integer)) or (isinstance(task, str) and task.strip().isdigit()):
            index = int(task)
            if not 0 <= index < self.n_tasks:
                raise LiberoUsageError(f"{self.config.suite} has tasks 0..{self.n_tasks - 1}, got {index}")
            return index
        wanted = str(task).strip().lower().rstrip(".")
        for index in range(self.n_tasks):
            entry = self._benchmark.get_task(index)
            if wanted in (entry.name.lower(), entry.language.lower()):
                return index
        raise LiberoUsageError(f"no task '{task}' in {self.config.suite}; give an index 0..{self.n_tasks - 1}, "
                               "a task name or its instruction")

    def n_episodes(self, task: int | str) -> int:
        """How many fixed initial states (episodes) the task has."""
        return len(self._benchmark.get_task_init_states(self.task_index(task)))

    # ------------------------------------------------------------------ episode API
    def reset(self, seed: int, task: int | str = 0) -> Observation:
        """Start episode `seed` (the task's initial state number `seed`) of `task`, after the settle steps."""
        index = self.task_index(task)
        if index != self._task_index:
            self._build(index)
        if not 0 <= seed < len(self._init_states):
            last = len(self._init_states) - 1
            raise LiberoUsageError(f"task {index} of {self.config.suite} has initial states 0..{last}, "
                                   f"got episode {seed}")
        self._env.seed(self.config.env_seed)
        self._env.reset()
        self._raw = self._env.set_init_state(self._init_states[seed])
        self._robosuite_gripper = conv.ROBOSUITE_GRIPPER_OPEN
        wait = [0.0] * 6 + [conv.ROBOSUITE_GRIPPER_OPEN]
        for _ in range(self.config.settle_steps):
            self._raw, _, _, _ = self._env.step(wait)
        self._steps = 0
        return self._observe()

    def step(self, action: object) -> StepResult:
        """Apply one 7-D action (our layout) for one 20 Hz control step; report success and done."""
        if self._raw is None:
            raise LiberoUsageError("call reset(seed, task) before step()")
        osc = conv.to_osc_action(action, self._robosuite_gripper, self.config.binarize_gripper)
        self._robosuite_gripper = float(osc.action[6])
        self._raw, _, success, _ = self._env.step(osc.action.tolist())
        self._steps += 1
        success = bool(success)
        truncated = self._steps >= self.config.step_limit
        info = {
            "step": self._steps,
            "action_refused": osc.refused,
            "action_clamped": osc.clamped,
            "applied_action": osc.action,
            "truncated": truncated and not success,
            "physics_error": False,
        }
        return StepResult(self._observe(), success, success or truncated, info)

    def render(self) -> np.ndarray:
        """The current agentview image as the policy sees it (upright, image_size square)."""
        if self._raw is None:
            raise LiberoUsageError("call reset(seed, task) before render()")
        cfg = self.config
        return conv.policy_image(self._raw["agentview_image"], cfg.image_size, cfg.jpeg_quality)

    def close(self) -> None:
        """Free robosuite's env and its GL context."""
        if self._env is not None:
            self._env.close()
            self._env = None
            self._task_index = None
            self._raw = None

    def __enter__(self) -> LiberoEnv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ state access
    @property
    def step_count(self) -> int:
        return self._steps

    @property
    def task(self) -> int:
        if self._task_index is None:
            raise LiberoUsageError("no task yet: call reset(seed, task) first")
        return self._task_index

    def state(self) -> dict[str, np.ndarray]:
        """Proprioception: ee_pos (m), ee_quat (x, y, z, w), ee_euler (rad), gripper opening and command (0..1)."""
        if self._raw is None:
            raise LiberoUsageError("call reset(seed, task) before state()")
        raw = self._raw
        fingers = np.asarray(raw["robot0_gripper_qpos"], dtype=np.float64)
        opening = (fingers[0] - fingers[1]) / (2 * PANDA_FINGER_TRAVEL_M)
        quat = np.asarray(raw["robot0_eef_quat"], dtype=np.float64)
        return {
            "ee_pos": np.asarray(raw["robot0_eef_pos"], dtype=np.float64).copy(),
            "ee_quat": quat.copy(),
            "ee_euler": quat_to_euler(quat),
            "gripper": np.array([np.clip(opening, 0.0, 1.0)]),
            "gripper_qpos": fingers.copy(),
            "gripper_command": np.array([conv.gripper_from_robosuite(self._robosuite_gripper)]),
        }

    # ------------------------------------------------------------------ internals
    def _build(self, index: int) -> None:
        self.close()
        cfg, entry = self.config, self._benchmark.get_task(index)
        bddl = self._benchmark.get_task_bddl_file_path(index)
        self._env = self._libero.OffScreenRenderEnv(
            bddl_file_name=bddl, camera_heights=cfg.render_size, camera_widths=cfg.render_size,
            camera_names=["agentview"])  # one camera: the wrist camera would double the render time
        self._init_states = self._benchmark.get_task_init_states(index)
        self._task_index = index
        self._instruction = str(entry.language)

    def _observe(self) -> Observation:
        return Observation(image=self.render(), instruction=self._instruction, state=self.state())


def quat_to_euler(quat_xyzw: np.ndarray) -> np.ndarray:
    """(x, y, z, w) quaternion -> roll, pitch, yaw (rad), extrinsic x-y-z."""
    x, y, z, w = (float(v) for v in quat_xyzw)
    roll = math.atan2(2 * (w * x + y * z), 1 - 2 * (x * x + y * y))
    pitch = math.asin(max(-1.0, min(1.0, 2 * (w * y - z * x))))
    yaw = math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))
    return np.array([roll, pitch, yaw])
