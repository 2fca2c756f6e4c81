"""Expert demonstrations on disk: one compressed .npz per episode, deterministic by seed.

    specvla sim-demos --tasks pick push place --episodes 20 --out data/sim_demos

Each file holds, for T steps, the observation *before* each action and the action taken:
  images (T, H, W, 3) uint8, actions (T, 7) float32, proprio (T, 7) float32,
  state.<key> (T, ...) float32 for every privileged state entry (object poses, gripper),
  plus instruction, task, seed, success (0-d arrays). `manifest.json` lists all episodes.

With `--policy CHECKPOINT`, a tiny VLA drives the robot (the expert takes over a step with
probability `--expert-share`) and the expert's action for each visited state is recorded: DAgger
data, to train on beside the plain demonstrations (`specvla train-vla --demos DEMOS CORRECTIONS`).
`--relabel DIR... --out NEW` rewrites recorded actions with the current expert, from the stored states.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from specvla_ros.sim.env import EnvConfig, TabletopEnv
from specvla_ros.sim.expert import ExpertConfig, ScriptedExpert
from specvla_ros.sim.tasks import TASKS, parse_instruction


@dataclass
class Episode:
    """One demonstration, step-aligned: images[t] was seen, actions[t] was taken."""

    instruction: str
    task: str
    seed: int
    success: bool
    images: np.ndarray
    actions: np.ndarray
    proprio: np.ndarray
    states: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.actions.shape[0])


Actor = Callable[[np.ndarray, str], np.ndarray]  # (image, instruction) -> 7-D action, e.g. a learned policy


def record_episode(env: TabletopEnv, expert: ScriptedExpert, seed: int, task: str, actor: Actor | None = None,
                   expert_share: float = 1.0) -> Episode:
    """Roll out (seed, task) with rendering on, keeping every step; the recorded action is the expert's.

    With an `actor`, each step is *executed* by the actor with probability 1 - `expert_share` and by the
    expert otherwise, while the expert's action for the visited state is still what gets recorded
    (DAgger): the data then covers the states a learned policy actually reaches, labelled with how
    to recover from them.
    """
    obs = env.reset(seed, task)
    expert.reset(env.task, seed=seed)
    coin = np.random.default_rng([seed, 7])
    images, actions, proprio = [], [], []
    states: dict[str, list[np.ndarray]] = {k: [] for k in obs.state}
    while True:
        image = obs.image if obs.image is not None else env.render()
        action = expert.act(obs.state)
        images.append(image)
        actions.append(action)
        proprio.append(obs.proprio)
        for key, value in obs.state.items():
            states[key].append(value)
        if actor is not None and coin.random() >= expert_share:
            action = actor(image, obs.instruction)
        result = env.step(action)
        obs = result.observation
        if result.done:
            break
    return Episode(
        instruction=obs.instruction,
        task=task,
        seed=seed,
        success=result.success,
        images=np.stack(images).astype(np.uint8),
        actions=np.stack(actions).astype(np.float32),
        proprio=np.stack(proprio).astype(np.float32),
        states={k: np.stack(v).astype(np.float32) for k, v in states.items()},
    )


def save_episode(episode: Episode, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f"state.{k}": v for k, v in episode.states.items()}
    np.savez_compressed(
        path,
        images=episode.images,
        actions=episode.actions,
        proprio=episode.proprio,
        instruction=np.array(episode.instruction),
        task=np.array(episode.task),
        seed=np.array(episode.seed),
        success=np.array(episode.success),
        **arrays,
    )
    return path


def load_episode(path: str | Path) -> Episode:
    with np.load(path, allow_pickle=False) as data:
        return Episode(
            instruction=str(data["instruction"]),
            task=str(data["task"]),
            seed=int(data["seed"]),
            success=bool(data["success"]),
            images=data["images"],
            actions=data["actions"],
            proprio=data["proprio"],
            states={k.removeprefix("state."): data[k] for k in data.files if k.startswith("state.")},
        )


def _manifest_entry(path: Path, episode: Episode) -> dict:
    return {"file": path.name, "task": episode.task, "seed": episode.seed, "instruction": episode.instruction,
            "steps": len(episode), "success": episode.success}


def _write_manifest(out_dir: Path, entries: list[dict]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "manifest.json").write_text(json.dumps(entries, indent=2) + "\n")


def relabel_episode(episode: Episode, expert: ScriptedExpert) -> Episode:
    """The same visited states with `expert`'s action for each, recomputed from the stored states.

    The expert's phase only depends on the states it has seen, so stepping it through the recording
    in order gives the labels it would have recorded live. Use it after changing the expert, instead
    of re-simulating (a policy-driven DAgger run could not be repeated anyway).
    """
    if not episode.states:
        raise ValueError(f"episode {episode.task}/{episode.seed} stores no privileged state; cannot relabel it")
    expert.reset(parse_instruction(episode.instruction, expert.scene), seed=episode.seed)
    actions = [expert.act({k: v[t] for k, v in episode.states.items()}) for t in range(len(episode))]
    return replace(episode, actions=np.stack(actions).astype(np.float32))


def relabel_demos(sources: Sequence[str | Path], out_dir: str | Path,
                  expert_config: ExpertConfig | None = None) -> list[Path]:
    """Relabel every episode in `sources` (folders of .npz) into `out_dir`, with a fresh manifest."""
    out_dir = Path(out_dir)
    expert = ScriptedExpert(config=expert_config)
    written, manifest = [], []
    for source in sources:
        for path in sorted(Path(source).glob("*.npz")):
            episode = relabel_episode(load_episode(path), expert)
            written.append(save_episode(episode, out_dir / path.name))
            manifest.append(_manifest_entry(written[-1], episode))
    _write_manifest(out_dir, manifest)
    return written


def generate_demos(
    out_dir: str | Path,
    tasks: Sequence[str] = tuple(TASKS),
    episodes_per_task: int = 10,
    seed: int = 0,
    env_config: EnvConfig | None = None,
    expert_config: ExpertConfig | None = None,
    keep_failures: bool = False,
    actor: Actor | None = None,
    expert_share: float = 1.0,
) -> list[Path]:
    """Write episodes `{task}_{seed:06d}.npz` (seeds seed..seed+N-1 per task) and manifest.json.

    With an `actor` (see `record_episode`), every episode is kept: the failed ones are the point.
    """
    out_dir = Path(out_dir)
    config = replace(env_config or EnvConfig(), render=True)
    written: list[Path] = []
    manifest = []
    with TabletopEnv(config) as env:
        expert = ScriptedExpert(config.scene, config.limits, expert_config)
        for task in tasks:
            for episode_seed in range(seed, seed + episodes_per_task):
                episode = record_episode(env, expert, episode_seed, task, actor, expert_share)
                if not episode.success and not keep_failures and actor is None:
                    continue
                path = save_episode(episode, out_dir / f"{task}_{episode_seed:06d}.npz")
                written.append(path)
                manifest.append(_manifest_entry(path, episode))
    _write_manifest(out_dir, manifest)
    return written
