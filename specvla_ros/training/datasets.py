"""Observations for training: (image, instruction[, action]) from simulation demonstrations.

One place that knows on-disk formats, so trainers only see arrays.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from specvla_ros.core.errors import InputError
from specvla_ros.sim.demos import load_episode


@dataclass
class DemoFrames:
    """Step-aligned frames of many episodes: images[i] was seen with instructions[i], actions[i] taken."""

    images: np.ndarray          # (N, H, W, 3) uint8
    instructions: list[str]
    actions: np.ndarray         # (N, 7) float32, metres / radians per step, gripper 0..1
    episode_index: np.ndarray   # (N,) which episode each frame came from

    def __len__(self) -> int:
        return len(self.instructions)


def load_demo_folder(folder: str | Path, max_episodes: int | None = None) -> DemoFrames:
    """Every `*.npz` episode in `folder` (as written by `python -m specvla_ros.sim.demos`)."""
    paths = sorted(Path(folder).glob("*.npz"))[:max_episodes]
    if not paths:
        raise InputError(f"no demonstrations (*.npz) in {folder}: generate them with "
                         "`python -m specvla_ros.sim.demos --out DIR`")
    images, instructions, actions, owners = [], [], [], []
    for index, path in enumerate(paths):
        episode = load_episode(path)
        images.append(episode.images)
        actions.append(episode.actions)
        instructions += [episode.instruction] * len(episode)
        owners.append(np.full(len(episode), index))
    return DemoFrames(np.concatenate(images), instructions, np.concatenate(actions).astype(np.float32),
                      np.concatenate(owners))


def action_norm_stats(actions: np.ndarray, name: str, gripper_dim: int = 6) -> dict:
    """OpenVLA-style statistics: 1st/99th percentiles per dimension; the gripper stays raw (mask false)."""
    q01 = np.quantile(actions, 0.01, axis=0)
    q99 = np.quantile(actions, 0.99, axis=0)
    mask = [dim != gripper_dim for dim in range(actions.shape[1])]
    return {name: {"action": {"q01": q01.tolist(), "q99": q99.tolist(), "mask": mask}}}


def normalize_actions(actions: np.ndarray, stats: dict) -> np.ndarray:
    """Inverse of NormStats.unnormalize, clipped to [-1, 1]."""
    (entry,) = stats.values()
    q01, q99 = np.asarray(entry["action"]["q01"]), np.asarray(entry["action"]["q99"])
    mask = np.asarray(entry["action"]["mask"], dtype=bool)
    span = np.where(q99 - q01 > 1e-8, q99 - q01, 1.0)
    normalized = np.where(mask, 2.0 * (actions - q01) / span - 1.0, actions)
    return np.clip(normalized, -1.0, 1.0)
