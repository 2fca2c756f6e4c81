"""Auxiliary training targets from the simulator's privileged state: where things are, per frame.

Why: behaviour cloning alone gives the vision tower one weak signal (a 7-token action) from which to
learn to find the named cube and the gripper; on this CPU that took tens of thousands of steps and was
not enough. Regressing *where* the task's objects are relative to the gripper (an auxiliary loss,
training only; the standard remedy in visuomotor learning) teaches localisation directly. The
demonstrations already hold the state (`state.*` arrays), so this costs nothing to collect.

Targets, in decimetres so they are near unit scale:
  task cube minus gripper (x, y, z), gripper position (x, y, z),
  destination minus gripper (x, y): the plate for "place", the cube itself otherwise,
  finger opening (0..1).
"""
from __future__ import annotations

import numpy as np

STATE_TARGET_NAMES = ("cube_dx", "cube_dy", "cube_dz", "ee_x", "ee_y", "ee_z", "dest_dx", "dest_dy", "opening")
DECIMETRES = 10.0


def state_targets(states: dict[str, np.ndarray], instruction: str) -> np.ndarray:
    """(T, 9) float32 targets for one episode's states (`Episode.states`) and its instruction."""
    from specvla_ros.sim.scene import cube_name, plate_name  # MuJoCo-free modules
    from specvla_ros.sim.tasks import parse_instruction

    task = parse_instruction(instruction)
    ee = states["ee_pos"]
    cube = states[f"{cube_name(task.cube)}_pos"]
    destination = states[f"{plate_name(task.plate)}_pos"] if task.plate is not None else cube
    columns = [(cube - ee) * DECIMETRES, ee * DECIMETRES, (destination - ee)[:, :2] * DECIMETRES,
               states["gripper"][:, :1]]
    return np.concatenate(columns, axis=1).astype(np.float32)
