"""Closed-loop success-rate harness: N seeded episodes per task for one policy, in process.

`specvla sim-eval` runs it (specvla_ros/cli/sim.py). `evaluate` rolls the episodes out and
`report_and_print` writes OUT/results.json, OUT/results.md (and, with GIF episodes, OUT/gifs/).
Episode i of every task uses seed `seed + i`, so two policies evaluated with the same arguments
face the same scenes. A policy is any callable of sim/policy.py's `Policy` protocol.
"""

from __future__ import annotations

import platform
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from specvla_ros.sim.env import TabletopEnv
from specvla_ros.sim.metrics import EpisodeRecord, build_report, write_report
from specvla_ros.sim.policy import Policy, policy_needs_image, reset_policy, to_policy_step
from specvla_ros.sim.video import caption_frame, save_gif


@dataclass
class EpisodeRun:
    record: EpisodeRecord
    frames: list[np.ndarray]  # empty unless frames were requested


def run_episode(env: TabletopEnv, policy: Policy, seed: int, task: str, record_frames: bool = False) -> EpisodeRun:
    """Roll out one episode; the policy sees the image and the instruction only."""
    obs = env.reset(seed, task)
    reset_policy(policy)
    needs_image = policy_needs_image(policy)
    cam = env.config.scene.camera
    blank = np.zeros((cam.height, cam.width, 3), np.uint8)
    record = EpisodeRecord(task=task, seed=seed, instruction=obs.instruction, success=False, steps=0)
    frames: list[np.ndarray] = []
    while True:
        image = obs.image
        if image is None and (needs_image or record_frames):
            image = env.render()
        if record_frames and image is not None:
            frames.append(caption_frame(image, [obs.instruction, f"step {env.step_count}"]))
        t0 = time.perf_counter()
        out = to_policy_step(policy(image if image is not None else blank, obs.instruction))
        record.policy_ms.append(1000.0 * (time.perf_counter() - t0))
        if out.latency_ms is not None:
            record.latency_ms.append(out.latency_ms)
        if out.acceptance_length is not None:
            record.acceptance_length.append(out.acceptance_length)
        result = env.step(out.action)
        obs = result.observation
        record.refused_actions += int(result.info["action_refused"])
        record.clamped_actions += int(result.info["action_clamped"])
        if result.done:
            record.success, record.steps = result.success, env.step_count
            break
    if record_frames:
        final = obs.image if obs.image is not None else env.render()
        verdict = "success" if record.success else "failure"
        frames.append(caption_frame(final, [obs.instruction, f"step {env.step_count}: {verdict}"]))
    return EpisodeRun(record, frames)


def evaluate(
    policy: Policy,
    env: TabletopEnv,
    tasks: Sequence[str],
    episodes_per_task: int,
    seed: int = 0,
    gif_dir: Path | None = None,
    gif_episodes: int = 0,
    log: Callable[[str], None] | None = None,
) -> list[EpisodeRecord]:
    """Run `episodes_per_task` seeded episodes of each task; save the first `gif_episodes` as GIFs."""
    records: list[EpisodeRecord] = []
    for task in tasks:
        wins = 0
        for i in range(episodes_per_task):
            want_gif = gif_dir is not None and i < gif_episodes
            run = run_episode(env, policy, seed + i, task, record_frames=want_gif)
            records.append(run.record)
            wins += run.record.success
            if want_gif and gif_dir is not None:
                save_gif(run.frames, gif_dir / f"{task}_seed{seed + i}.gif", fps=env.config.control_hz)
        if log:
            log(f"{task}: {wins}/{episodes_per_task} successes")
    return records


def report_and_print(records: list[EpisodeRecord], meta: dict, out_dir: Path) -> None:
    """Stamp the metadata (time, machine), write results.json/.md, print the table."""
    meta = {**meta, "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": platform.processor() or platform.machine()}
    json_path, md_path = write_report(build_report(records, meta), out_dir)
    print(md_path.read_text())
    print(f"wrote {json_path} and {md_path}", file=sys.stderr)

