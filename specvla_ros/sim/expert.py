"""Scripted expert: solves every task family from privileged state with a small phase machine.

Each phase names a goal (TCP xyz, yaw, gripper) computed from live object poses; the action is
the clipped error to that goal, so the expert is closed-loop (it follows a cube that slid) and
its actions always respect the per-step limits a learned policy also has to live with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from specvla_ros.sim.action import ActionLimits
from specvla_ros.sim.errors import SimError
from specvla_ros.sim.scene import SceneConfig, cube_name, plate_name
from specvla_ros.sim.tasks import DIRECTION_SIGN, TaskSpec

OPEN, CLOSED = 1.0, 0.0


@dataclass(frozen=True)
class ExpertConfig:
    """Heights (m above the table), tolerances and timings of the scripted motions."""

    hover_z: float = 0.10  # above an object, before descending
    carry_z: float = 0.13  # carrying a cube over the others
    grasp_offset_z: float = 0.01  # TCP above the cube centre: pads clear a nearby plate
    push_z: float = 0.024
    push_standoff_m: float = 0.06  # TCP distance behind the cube centre before pushing
    push_overshoot_m: float = 0.12  # push the cube this far (success needs 0.08)
    push_lane_m: float = 0.015  # TCP this close to the cube's line (y) at push height: push it
    xy_tolerance_m: float = 0.006
    descend_abort_xy_m: float = 0.02  # below the hover height, TCP this far off the cube (xy): climb back
    lower_xy_m: float = 0.015  # carried cube this close to the plate centre (xy): set it down
    z_tolerance_m: float = 0.006
    yaw_tolerance_rad: float = 0.05
    grasp_xy_m: float = 0.02  # cube centre within this of the TCP (xy) counts as between the fingers
    grasp_z_m: float = 0.03  # ... and the TCP at most this far above the cube centre
    close_steps: int = 4  # most control steps to wait for the fingers to close (0.4 s at 10 Hz)
    release_steps: int = 3
    action_noise: float = 0.0  # std of Gaussian noise on translation, as a fraction of the limit


def _yaw_of(quat: np.ndarray) -> float:
    w, x, y, z = quat
    return float(np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z)))


def grasp_yaw(cube_yaw: float) -> float:
    """Gripper yaw that lines the fingers up with the cube's faces (cube is symmetric every 90°)."""
    return float((cube_yaw + np.pi / 4) % (np.pi / 2) - np.pi / 4)


class ScriptedExpert:
    """Phase machine per task kind. Call reset() per episode, then act(state) per step."""

    def __init__(
        self,
        scene: SceneConfig | None = None,
        limits: ActionLimits | None = None,
        config: ExpertConfig | None = None,
        seed: int = 0,
    ) -> None:
        self.scene = scene or SceneConfig()
        self.limits = limits or ActionLimits()
        self.config = config or ExpertConfig()
        self._rng = np.random.default_rng(seed)
        self._task: TaskSpec | None = None
        self.phase = "approach"
        self._phase_steps = 0
        self._push_start_x = 0.0

    def reset(self, task: TaskSpec, seed: int | None = None) -> None:
        self._task = task
        self.phase = "approach"
        self._phase_steps = 0
        if seed is not None:
            self._rng = np.random.default_rng(seed)

    def act(self, state: dict[str, np.ndarray]) -> np.ndarray:
        """One 7-D action (dx, dy, dz, droll, dpitch, dyaw, gripper) for the current state."""
        if self._task is None:
            raise SimError("call ScriptedExpert.reset(task) before act()")
        goal, yaw, grip = self._goal(state)
        return self._toward(state, goal, yaw, grip)

    # ------------------------------------------------------------------ phase logic
    def _advance(self, phase: str) -> None:
        self.phase, self._phase_steps = phase, 0

    def _holding(self, state: dict[str, np.ndarray], cube: np.ndarray) -> bool:
        """The cube sits between partly closed fingers: read from the state, not from the phase.

        Phases say what the expert *did*; under DAgger a policy drives some steps, so the grasp is
        re-read every step and the label follows what the robot actually holds.
        """
        c = self.config
        offset = state["ee_pos"] - cube
        opening = float(state["gripper"][0])
        return bool(
            np.linalg.norm(offset[:2]) < c.grasp_xy_m
            and -0.01 < offset[2] < c.grasp_z_m
            and 0.15 < opening < 0.9
        )

    def _grasp_point(self, cube: np.ndarray, above: float = 0.0) -> np.ndarray:
        """Where the TCP closes on the cube (`grasp_offset_z` above its centre), or `above` that."""
        return np.array([cube[0], cube[1], cube[2] + self.config.grasp_offset_z + above])

    def _grasp_phase(self, state: dict[str, np.ndarray], cube: np.ndarray, yaw_off: float) -> str:
        """Which reach/transport phase this state calls for, read from the state alone.

        Only the timed phases (close, release, retreat) carry over from step to step. Everything else
        is a function of where the robot is and what it holds, so a state visited by a policy under
        DAgger gets the same label as the same state reached by the expert: a phase memory there
        labelled one frame "climb back to hover" or "go down" depending on the path taken, and the
        trained policy stopped between the two.
        """
        task, c = self._task, self.config
        assert task is not None
        if self._holding(state, cube):
            if task.kind == "pick":
                return "lift"
            plate = state[f"{plate_name(str(task.plate))}_pos"]
            if np.linalg.norm(cube[:2] - plate[:2]) < c.lower_xy_m:
                return "lower"
            return "carry" if state["ee_pos"][2] > c.carry_z - 0.03 else "lift"
        return self._reach_phase(state, cube, self._grasp_point(cube, c.hover_z)[2], yaw_off)

    def _reach_phase(self, state: dict[str, np.ndarray], target: np.ndarray, hover_z: float, yaw_off: float) -> str:
        """Approach `target` (xy) at `hover_z`, or descend onto it: over it and turned right, or
        already below the hover height close beside it (then correct on the way down, no climb back)."""
        c = self.config
        xy_off = float(np.linalg.norm(target[:2] - state["ee_pos"][:2]))
        below_hover = state["ee_pos"][2] < hover_z - c.z_tolerance_m
        over = xy_off < c.xy_tolerance_m and yaw_off < 2 * c.yaw_tolerance_rad
        if over or (below_hover and xy_off < c.descend_abort_xy_m):
            return "descend"
        return "approach"

    def _ready_to_close(self, state: dict[str, np.ndarray], cube: np.ndarray, xy_off: float, yaw_off: float) -> bool:
        """Open fingers around the cube: centred and turned to it, the TCP between its centre and the grasp height."""
        c = self.config
        ee_z = float(state["ee_pos"][2])
        at_height = cube[2] - 0.005 < ee_z < self._grasp_point(cube)[2] + c.z_tolerance_m
        fingers_open = float(state["gripper"][0]) > 0.9
        return xy_off < c.xy_tolerance_m and yaw_off < 2 * c.yaw_tolerance_rad and at_height and fingers_open

    def _goal(self, state: dict[str, np.ndarray]) -> tuple[np.ndarray, float, float]:
        task, c = self._task, self.config
        assert task is not None
        self._phase_steps += 1
        cube = state[f"{cube_name(task.cube)}_pos"]
        if task.kind == "push":
            return self._push_goal(state, cube)
        cube_yaw = grasp_yaw(_yaw_of(state[f"{cube_name(task.cube)}_quat"]))
        ee_yaw = float(state["ee_euler"][2])
        xy_off = float(np.linalg.norm(cube[:2] - state["ee_pos"][:2]))
        yaw_off = abs(cube_yaw - ee_yaw)
        if self.phase == "close":
            # Lift once the fingers rest on the cube (they close within a control step): a fixed wait
            # would label the same still image "stay" on some frames and "lift" on others.
            settled = self._phase_steps > 1 and self._holding(state, cube)
            if not settled and self._phase_steps < c.close_steps:
                return state["ee_pos"].copy(), ee_yaw, CLOSED
        # Release is a short timed opening; after it the expert backs off, unless the fingers hold the
        # cube again (a policy closed them under DAgger), which puts it back to carrying.
        backing_off = self.phase == "release" or (self.phase == "retreat" and not self._holding(state, cube))
        if not backing_off:
            phase = self._grasp_phase(state, cube, yaw_off)
            if phase != self.phase:
                self._advance(phase)
        if self.phase == "approach":
            return self._grasp_point(cube, c.hover_z), cube_yaw, OPEN
        if self.phase == "descend":
            if self._ready_to_close(state, cube, xy_off, yaw_off):
                self._advance("close")
                return state["ee_pos"].copy(), ee_yaw, CLOSED
            return self._grasp_point(cube), cube_yaw, OPEN
        if self.phase == "lift":  # a pick task stays here until the success test fires
            return np.array([state["ee_pos"][0], state["ee_pos"][1], c.carry_z]), ee_yaw, CLOSED
        return self._place_goal(state, cube, ee_yaw)

    def _place_goal(
        self, state: dict[str, np.ndarray], cube: np.ndarray, ee_yaw: float
    ) -> tuple[np.ndarray, float, float]:
        task, c, scene = self._task, self.config, self.scene
        assert task is not None and task.plate is not None
        plate = state[f"{plate_name(task.plate)}_pos"]
        # Steer by the cube's position (it may hang off-centre in the fingers, and lower in them
        # than where the TCP is): the goals below place the cube, the TCP follows at its offset.
        in_fingers = state["ee_pos"] - cube
        if self.phase == "carry":
            goal = np.array([plate[0] + in_fingers[0], plate[1] + in_fingers[1], c.carry_z])
            return goal, ee_yaw, CLOSED
        if self.phase == "lower":
            rest_z = plate[2] + scene.plate_half_height + scene.cube_half_size + 0.006
            goal = np.array([plate[0], plate[1], rest_z]) + in_fingers
            if abs(goal[2] - state["ee_pos"][2]) < c.z_tolerance_m:
                self._advance("release")
            return goal, ee_yaw, CLOSED
        if self.phase == "release":
            if self._phase_steps >= c.release_steps:
                self._advance("retreat")
            return state["ee_pos"].copy(), ee_yaw, OPEN
        up = np.array([state["ee_pos"][0], state["ee_pos"][1], c.carry_z])
        return up, ee_yaw, OPEN

    def _in_push_lane(self, state: dict[str, np.ndarray], cube: np.ndarray, sign: float) -> bool:
        """Down at push height, behind the cube (no further than the standoff) and in line with it."""
        c = self.config
        ee = state["ee_pos"]
        behind_by = sign * (cube[0] - ee[0])
        return bool(
            ee[2] < c.push_z + c.z_tolerance_m
            and abs(ee[1] - cube[1]) < c.push_lane_m
            and 0.0 < behind_by < c.push_standoff_m + c.xy_tolerance_m
        )

    def _push_goal(self, state: dict[str, np.ndarray], cube: np.ndarray) -> tuple[np.ndarray, float, float]:
        task, c = self._task, self.config
        assert task is not None
        sign = DIRECTION_SIGN[str(task.direction)]
        behind = np.array([cube[0] - sign * c.push_standoff_m, cube[1], c.push_z])
        if self._in_push_lane(state, cube, sign):
            phase = "push"
        else:
            phase = self._reach_phase(state, behind, c.push_z + c.hover_z, abs(float(state["ee_euler"][2])))
        if phase != self.phase:
            self._advance(phase)
            if phase == "push":
                self._push_start_x = float(cube[0])
        if self.phase == "approach":
            return behind + [0.0, 0.0, c.hover_z], 0.0, CLOSED
        if self.phase == "descend":
            return behind, 0.0, CLOSED
        # Push: aim 2 cm past the contact point, tracking the cube's y so an off-centre push is
        # corrected, until the cube has travelled `push_overshoot_m` from where the push began.
        done = sign * (cube[0] - self._push_start_x) >= c.push_overshoot_m
        contact_x = cube[0] - sign * (self.scene.cube_half_size + 0.012)
        goal_x = state["ee_pos"][0] if done else contact_x + sign * 0.02
        return np.array([goal_x, cube[1], c.push_z]), 0.0, CLOSED

    # ------------------------------------------------------------------ action
    def _toward(self, state: dict[str, np.ndarray], goal: np.ndarray, yaw: float, grip: float) -> np.ndarray:
        lim = self.limits
        delta = np.clip(goal - state["ee_pos"], -lim.max_translation_m, lim.max_translation_m)
        if self.config.action_noise > 0:
            noise = self._rng.normal(0.0, self.config.action_noise * lim.max_translation_m, size=3)
            delta = np.clip(delta + noise, -lim.max_translation_m, lim.max_translation_m)
        dyaw = float(np.clip(yaw - state["ee_euler"][2], -lim.max_rotation_rad, lim.max_rotation_rad))
        return np.array([*delta, 0.0, 0.0, dyaw, grip])


class ExpertPolicy:
    """The scripted expert behind the harness's `Policy` interface.

    It ignores the image and reads privileged state from the environment it is bound to, so the
    harness can evaluate it like any learned policy (and skip rendering: `needs_image = False`).
    """

    needs_image = False

    def __init__(self, env: Any, config: ExpertConfig | None = None) -> None:
        self.env = env
        self.expert = ScriptedExpert(env.config.scene, env.config.limits, config)

    def reset(self) -> None:
        self.expert.reset(self.env.task)

    def __call__(self, image: np.ndarray, instruction: str) -> np.ndarray:
        return self.expert.act(self.env.state())
