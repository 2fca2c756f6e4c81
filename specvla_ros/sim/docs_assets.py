"""Regenerate the simulator images in docs/img (a still frame and an expert episode GIF).

    specvla sim-docs-images --out docs/img

The GIF strings one expert episode of each task family together, so the page shows all three.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from specvla_ros.sim.env import EnvConfig, TabletopEnv
from specvla_ros.sim.expert import ExpertPolicy
from specvla_ros.sim.harness import run_episode
from specvla_ros.sim.tasks import TASKS
from specvla_ros.sim.video import save_gif


def write_assets(out_dir: Path, seed: int = 3, every: int = 2) -> tuple[Path, Path]:
    """Write sim_frame.png (reset view, seed `seed`) and sim_episode.gif; return both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with TabletopEnv(EnvConfig(render=False)) as env:
        env.reset(seed, "place")
        frame_path = out_dir / "sim_frame.png"
        Image.fromarray(env.render()).save(frame_path, optimize=True)
        policy = ExpertPolicy(env)
        frames: list[np.ndarray] = []
        for task in TASKS:
            run = run_episode(env, policy, seed, task, record_frames=True)
            frames.extend(run.frames[::every])
            frames.extend([run.frames[-1]] * 5)  # hold the final state for a moment
    gif_path = save_gif(frames, out_dir / "sim_episode.gif", fps=env.config.control_hz / every, hold_last_s=0.0)
    return frame_path, gif_path
