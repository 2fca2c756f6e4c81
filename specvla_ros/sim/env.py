"""`TabletopEnv`: reset(seed, task) -> Observation, step(7-D delta) -> StepResult, close().

Control: one `step` = `substeps` physics steps (default 50 x 2 ms = 0.1 s, i.e. 10 Hz). The
action's deltas move the gripper's Cartesian *target*; the target is ramped linearly over the
substeps so the servos track a smooth path instead of a 2 cm jump. Targets are clipped to the
workspace and kept within `max_target_lead_m` of the measured TCP (anti wind-up: a gripper pushed
against a cube does not store up a big correction that fires when the cube slips).
Deterministic: the same (seed, task) gives the same layout, states and images.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any

os.environ.setdefault("MUJOCO_GL", "osmesa")  # headless by default; must precede `import mujoco`

import mujoco  # noqa: E402
import numpy as np  # noqa: E402

from specvla_ros.sim.action import ActionLimits, sanitize_action  # noqa: E402
from specvla_ros.sim.errors import SimError  # noqa: E402
from specvla_ros.sim.layout import sample_layout  # noqa: E402
from specvla_ros.sim.scene import FINGER_NAMES, SceneConfig, build_mjcf, cube_name, plate_name  # noqa: E402
from specvla_ros.sim.tasks import TaskSpec, resolve_task  # noqa: E402

_ARM_JOINTS = ("ee_x", "ee_y", "ee_z", "ee_yaw")
_GRIPPER_BODIES = ("hand", *FINGER_NAMES)


@dataclass(frozen=True)
class EnvConfig:
    """Everything that shapes an episode except the seed and the task."""

    scene: SceneConfig = field(default_factory=SceneConfig)
    limits: ActionLimits = field(default_factory=ActionLimits)
    control_hz: float = 10.0
    render: bool = True  # put a camera image in every observation (off: image is None, ~10x faster)
    home_pos: tuple[float, float, float] = (0.0, 0.0, 0.20)
    home_jitter_m: float = 0.03  # random xy offset of the start pose, for demo diversity
    settle_s: float = 0.2  # physics time at reset so cubes come to rest before step 0
    max_target_lead_m: float = 0.04
    max_steps: int | None = None  # overrides the task's own step budget when set

    @property
    def substeps(self) -> int:
        return max(1, round(1.0 / (self.control_hz * self.scene.physics_dt)))


@dataclass
class Observation:
    """What a policy sees (image, instruction) plus proprioceptive and privileged state."""

    image: np.ndarray | None  # (H, W, 3) uint8, or None when rendering is off
    instruction: str
    state: dict[str, np.ndarray]

    @property
    def proprio(self) -> np.ndarray:
        """7 floats: TCP xyz (m), roll/pitch/yaw (rad), gripper opening (0 closed .. 1 open)."""
        s = self.state
        return np.concatenate([s["ee_pos"], s["ee_euler"], s["gripper"]]).astype(np.float32)


@dataclass
class StepResult:
    observation: Observation
    success: bool
    done: bool
    info: dict[str, Any]


class TabletopEnv:
    """The MuJoCo tabletop. Not thread-safe; one instance per thread. Call close() when done."""

    def __init__(self, config: EnvConfig | None = None) -> None:
        self.config = config or EnvConfig()
        scene = self.config.scene
        self.model = mujoco.MjModel.from_xml_string(build_mjcf(scene))
        self.data = mujoco.MjData(self.model)
        self._arm_qadr = np.array([self.model.joint(j).qposadr[0] for j in _ARM_JOINTS])
        self._finger_qadr = np.array([self.model.joint(f).qposadr[0] for f in FINGER_NAMES])
        self._arm_act = np.array([self.model.actuator(j).id for j in _ARM_JOINTS])
        self._finger_act = np.array([self.model.actuator(f).id for f in FINGER_NAMES])
        self._gripper_body_ids = {self.model.body(b).id for b in _GRIPPER_BODIES}
        self._objects = [cube_name(c) for c in scene.cube_colors] + [plate_name(c) for c in scene.plate_colors]
        self._renderer: mujoco.Renderer | None = None
        self._task: TaskSpec | None = None
        self._initial_pos: dict[str, np.ndarray] = {}
        self._target = np.zeros(4)  # x, y, z, yaw servo targets
        self._gripper_cmd = 1.0
        self._steps = 0

    # ------------------------------------------------------------------ episode API
    def reset(self, seed: int, task: str | TaskSpec = "pick") -> Observation:
        """Start an episode: sample the task (if a family name) and the layout from `seed`."""
        cfg, scene = self.config, self.config.scene
        rng = np.random.default_rng(seed)
        spec = resolve_task(task, rng, scene)
        if cfg.max_steps is not None:
            spec = replace(spec, max_steps=cfg.max_steps)
        layout = sample_layout(rng, scene, spec)
        home_xy = np.asarray(cfg.home_pos[:2]) + rng.uniform(-cfg.home_jitter_m, cfg.home_jitter_m, size=2)

        m, d = self.model, self.data
        mujoco.mj_resetData(m, d)
        for color, xy in layout.plate_xy.items():
            m.body(plate_name(color)).pos[:] = [xy[0], xy[1], scene.plate_half_height]
        for color, xy in layout.cube_xy.items():
            adr = m.joint(cube_name(color)).qposadr[0]
            yaw = layout.cube_yaw[color]
            d.qpos[adr : adr + 7] = [xy[0], xy[1], scene.cube_half_size, np.cos(yaw / 2), 0, 0, np.sin(yaw / 2)]
        self._target = np.array([home_xy[0], home_xy[1], cfg.home_pos[2], 0.0])
        d.qpos[self._arm_qadr] = self._target
        d.qpos[self._finger_qadr] = scene.finger_max_opening
        self._gripper_cmd = 1.0
        self._apply_ctrl(self._target)
        mujoco.mj_forward(m, d)
        for _ in range(round(cfg.settle_s / scene.physics_dt)):
            mujoco.mj_step(m, d)

        self._task = spec
        self._steps = 0
        self._initial_pos = {name: self.object_pos(name) for name in self._objects}
        return self._observe()

    def step(self, action: object) -> StepResult:
        """Apply one 7-D delta action for one control period and report success/done."""
        if self._task is None:
            raise SimError("call reset(seed, task) before step()")
        cfg, scene = self.config, self.config.scene
        sanitized = sanitize_action(action, cfg.limits, self._gripper_cmd)
        a = sanitized.action
        low, high = np.asarray(scene.workspace_low), np.asarray(scene.workspace_high)
        tcp = self.data.qpos[self._arm_qadr[:3]]
        new_pos = np.clip(self._target[:3] + a[:3], low, high)
        new_pos = np.clip(new_pos, tcp - cfg.max_target_lead_m, tcp + cfg.max_target_lead_m)
        # Roll/pitch are fixed by the gantry's mechanics: a[3:5] are accepted and ignored.
        new_yaw = float(np.clip(self._target[3] + a[5], -scene.yaw_limit_rad, scene.yaw_limit_rad))
        new_target = np.append(np.clip(new_pos, low, high), new_yaw)
        self._gripper_cmd = float(a[6])

        warnings_before = int(self.data.warning[mujoco.mjtWarning.mjWARN_BADQACC].number)
        start, n = self._target.copy(), cfg.substeps
        for i in range(n):
            self._apply_ctrl(start + (i + 1) / n * (new_target - start))
            mujoco.mj_step(self.model, self.data)
        self._target = new_target
        self._steps += 1

        physics_error = int(self.data.warning[mujoco.mjtWarning.mjWARN_BADQACC].number) > warnings_before
        success = (not physics_error) and self._task.success(self, scene)
        truncated = self._steps >= self._task.max_steps
        info = {
            "step": self._steps,
            "action_refused": sanitized.refused,
            "action_clamped": sanitized.clamped,
            "applied_action": a,
            "truncated": truncated and not success,
            "physics_error": physics_error,
        }
        return StepResult(self._observe(), success, bool(success or truncated or physics_error), info)

    def render(self) -> np.ndarray:
        """RGB uint8 (H, W, 3) from the fixed front camera."""
        cam = self.config.scene.camera
        if self._renderer is None:
            try:
                self._renderer = mujoco.Renderer(self.model, height=cam.height, width=cam.width)
            except mujoco.FatalError as exc:
                raise SimError(
                    f"cannot create an OpenGL context (MUJOCO_GL={os.environ.get('MUJOCO_GL')!r}): on a "
                    "headless machine install libosmesa6 and set MUJOCO_GL=osmesa (or egl) before anything "
                    "imports mujoco, or use EnvConfig(render=False)"
                ) from exc
        self._renderer.update_scene(self.data, camera="front")
        return self._renderer.render()

    def close(self) -> None:
        """Free the GL context. Explicit: MuJoCo's renderer errors if left to the garbage collector."""
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def __enter__(self) -> TabletopEnv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ state access
    @property
    def task(self) -> TaskSpec:
        if self._task is None:
            raise SimError("no task yet: call reset(seed, task) first")
        return self._task

    @property
    def step_count(self) -> int:
        return self._steps

    def object_pos(self, name: str) -> np.ndarray:
        """World position (m) of a cube or plate body by name, e.g. 'red_cube'."""
        return self.data.body(name).xpos.copy()

    def object_quat(self, name: str) -> np.ndarray:
        """World orientation (w, x, y, z) of a body."""
        return self.data.body(name).xquat.copy()

    def initial_object_pos(self, name: str) -> np.ndarray:
        return self._initial_pos[name].copy()

    def touching_gripper(self, name: str) -> bool:
        """True if any contact joins the body `name` and a gripper body (hand or finger)."""
        body_id = self.model.body(name).id
        ncon = self.data.ncon
        b1 = self.model.geom_bodyid[self.data.contact.geom1[:ncon]]
        b2 = self.model.geom_bodyid[self.data.contact.geom2[:ncon]]
        grip1 = np.isin(b1, list(self._gripper_body_ids))
        grip2 = np.isin(b2, list(self._gripper_body_ids))
        return bool(np.any((b1 == body_id) & grip2) or np.any((b2 == body_id) & grip1))

    def state(self) -> dict[str, np.ndarray]:
        """Proprioception (ee_pos, ee_euler, gripper, gripper_command) and object poses."""
        scene = self.config.scene
        q = self.data.qpos
        opening = float(np.mean(q[self._finger_qadr])) / scene.finger_max_opening
        state = {
            "ee_pos": q[self._arm_qadr[:3]].copy(),
            "ee_euler": np.array([0.0, 0.0, q[self._arm_qadr[3]]]),
            "gripper": np.array([np.clip(opening, 0.0, 1.0)]),
            "gripper_command": np.array([self._gripper_cmd]),
        }
        for name in self._objects:
            state[f"{name}_pos"] = self.object_pos(name)
            if name.endswith("_cube"):
                state[f"{name}_quat"] = self.object_quat(name)
        return state

    # ------------------------------------------------------------------ internals
    def _apply_ctrl(self, arm_target: np.ndarray) -> None:
        self.data.ctrl[self._arm_act] = arm_target
        self.data.ctrl[self._finger_act] = self._gripper_cmd * self.config.scene.finger_max_opening

    def _observe(self) -> Observation:
        image = self.render() if self.config.render else None
        return Observation(image=image, instruction=self.task.instruction, state=self.state())
