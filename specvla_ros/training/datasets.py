"""Observations for training: (image, instruction[, action]) from demonstrations, image folders or bags.

One place that knows on-disk formats, so trainers only see arrays. Sources:
  * simulation demonstrations: a folder of `*.npz` episodes (images, instruction and actions);
  * an image folder: `manifest.json` (a list of {"image": path, "instruction": text}) or
    `manifest.csv` (columns image, instruction), paths relative to the folder;
  * a rosbag2 bag (sqlite3 or MCAP): camera frames, each paired with the latest task string;
  * a local LeRobot dataset (meta/info.json): one camera's frames and their task strings, decoded
    on demand (training/lerobot_dataset.py).
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from specvla_ros.core.errors import InputError
from specvla_ros.training.state_targets import state_targets

if TYPE_CHECKING:
    from specvla_ros.training.lerobot_dataset import LeRobotFrames


@dataclass
class DemoFrames:
    """Step-aligned frames of many episodes: images[i] was seen with instructions[i], actions[i] taken."""

    images: np.ndarray          # (N, H, W, 3) uint8
    instructions: list[str]
    actions: np.ndarray         # (N, 7) float32, metres / radians per step, gripper 0..1
    episode_index: np.ndarray   # (N,) which episode each frame came from
    state_targets: np.ndarray | None = None  # (N, 9) auxiliary targets (training/state_targets.py), demos only

    def __len__(self) -> int:
        return len(self.instructions)


def load_demo_folder(folder: str | Path | Sequence[str | Path], max_episodes: int | None = None) -> DemoFrames:
    """Every `*.npz` episode in `folder` (or in each of several folders), as written by
    `specvla sim-demos`."""
    from specvla_ros.sim.demos import load_episode  # imports MuJoCo: only when demonstrations are read

    folders = [folder] if isinstance(folder, (str, Path)) else list(folder)
    paths = [path for each in folders for path in sorted(Path(each).glob("*.npz"))][:max_episodes]
    if not paths:
        raise InputError(f"no demonstrations (*.npz) in {', '.join(map(str, folders))}: generate them with "
                         "`specvla sim-demos --out DIR`")
    images, instructions, actions, owners, targets = [], [], [], [], []
    for index, path in enumerate(paths):
        episode = load_episode(path)
        images.append(episode.images)
        actions.append(episode.actions)
        instructions += [episode.instruction] * len(episode)
        owners.append(np.full(len(episode), index))
        targets.append(state_targets(episode.states, episode.instruction))
    return DemoFrames(np.concatenate(images), instructions, np.concatenate(actions).astype(np.float32),
                      np.concatenate(owners), np.concatenate(targets))


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


@dataclass
class Observations:
    """Unlabelled observations (what a draft head trains on): images[i] was seen with instructions[i]."""

    images: Sequence[np.ndarray]  # each (H, W, 3) uint8 RGB; sizes may differ
    instructions: list[str]

    def __len__(self) -> int:
        return len(self.instructions)


def load_image_folder(folder: str | Path) -> Observations:
    """Images listed in `folder/manifest.json` or `folder/manifest.csv`, each with its instruction."""
    from PIL import Image, UnidentifiedImageError

    folder = Path(folder)
    rows = _manifest_rows(folder)
    images, instructions = [], []
    for number, row in enumerate(rows, start=1):
        image_path, instruction = row.get("image"), row.get("instruction")
        if not image_path or not isinstance(instruction, str) or not instruction.strip():
            raise InputError(f"manifest row {number} in {folder} needs a non-empty 'image' and 'instruction', "
                             f"got {row!r}")
        try:
            with Image.open(folder / image_path) as image:
                images.append(np.array(image.convert("RGB")))
        except (OSError, UnidentifiedImageError) as bad:
            raise InputError(f"manifest row {number}: cannot read image {folder / image_path} ({bad})") from None
        instructions.append(instruction)
    if not images:
        raise InputError(f"the manifest in {folder} lists no images")
    return Observations(images, instructions)


def _manifest_rows(folder: Path) -> list[dict]:
    if (folder / "manifest.json").is_file():
        try:
            rows = json.loads((folder / "manifest.json").read_text())
        except json.JSONDecodeError as bad:
            raise InputError(f"{folder / 'manifest.json'} is not valid JSON ({bad})") from None
        if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
            raise InputError(f"{folder / 'manifest.json'} must be a list of {{\"image\": ..., \"instruction\": ...}}")
        return rows
    with open(folder / "manifest.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def is_bag(path: Path) -> bool:
    return (path.is_dir() and (path / "metadata.yaml").is_file()) or path.suffix in (".mcap", ".db3")


def read_images(data: DemoFrames | Observations | LeRobotFrames, indices: Sequence[int]) -> list[np.ndarray]:
    """Images of frames `indices`, in that order; a lazy source decodes them together (one pass per file)."""
    if hasattr(data, "images_at"):
        return data.images_at(indices)
    return [data.images[int(i)] for i in indices]


def load_observations(source: str | Path, camera_topic: str = "/camera/image_raw",
                      task_topic: str = "/vla/instruction", camera_key: str | None = None
                      ) -> DemoFrames | Observations | LeRobotFrames:
    """Observations from any supported source (see the module docstring), chosen by what `source` holds.
    camera_key picks a LeRobot dataset's camera (default: its first)."""
    from specvla_ros.training.lerobot_dataset import LeRobotFrames, is_lerobot_dataset

    source = Path(source)
    if not source.exists():
        raise InputError(f"{source} does not exist: give a demonstrations folder, an image folder with a "
                         "manifest, a rosbag2 bag or a LeRobot dataset folder")
    if is_lerobot_dataset(source):
        return LeRobotFrames(source, camera_key)
    if is_bag(source):
        from specvla_ros.bags import read_observations

        frames = list(read_observations(source, camera_topic, task_topic))
        if not frames:
            raise InputError(f"{source} holds no {camera_topic} frames after a {task_topic} message")
        return Observations([image for _, image, _ in frames], [text for _, _, text in frames])
    if source.is_dir() and any(source.glob("*.npz")):
        return load_demo_folder(source)  # demo folders hold a manifest.json too: check first
    if source.is_dir() and ((source / "manifest.json").is_file() or (source / "manifest.csv").is_file()):
        return load_image_folder(source)
    raise InputError(f"{source} is not a demonstrations folder (*.npz), an image folder (manifest.json or "
                     "manifest.csv), a rosbag2 bag (metadata.yaml, *.mcap, *.db3) or a LeRobot dataset "
                     "(meta/info.json)")
