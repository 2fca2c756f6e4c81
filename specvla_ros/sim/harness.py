"""Closed-loop success-rate harness: N seeded episodes per task for one policy, in process.

    python -m specvla_ros.sim.harness --policy expert --episodes 50 --tasks pick push place --out DIR

Writes DIR/results.json, DIR/results.md and (with --gif-episodes) DIR/gifs/*.gif. Episode i of
every task uses seed `--seed + i`, so two policies evaluated with the same arguments face the
same scenes. New policies plug in through `POLICIES` (a name -> builder(args, env) table).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from specvla_ros.sim.env import EnvConfig, TabletopEnv
from specvla_ros.sim.expert import ExpertPolicy
from specvla_ros.sim.metrics import EpisodeRecord, build_report, write_report
from specvla_ros.sim.policy import Policy, policy_needs_image, reset_policy, to_policy_step
from specvla_ros.sim.scene import CameraConfig, SceneConfig
from specvla_ros.sim.tasks import TASKS
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


# ---------------------------------------------------------------------- CLI
PolicyBuilder = Callable[[argparse.Namespace, TabletopEnv], Policy]


def _build_expert(args: argparse.Namespace, env: TabletopEnv) -> Policy:
    return ExpertPolicy(env)


# To add a policy: write `_build_x(args, env)` (import heavy modules inside it), register it
# here, and add any options it needs (e.g. --model) in `_parser`.
POLICIES: dict[str, PolicyBuilder] = {"expert": _build_expert}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m specvla_ros.sim.harness",
        description="Evaluate a policy in the MuJoCo tabletop: success rate with 95% Wilson CI, "
        "episode length, decode latency and acceptance length, as JSON + markdown.",
    )
    p.add_argument("--policy", choices=sorted(POLICIES), default="expert", help="which policy to evaluate")
    p.add_argument("--episodes", type=int, default=10, help="episodes per task (seeds SEED..SEED+N-1)")
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS), help="task families")
    p.add_argument("--seed", type=int, default=0, help="seed of the first episode")
    p.add_argument("--out", type=Path, required=True, help="output folder for results.json/.md and GIFs")
    p.add_argument("--gif-episodes", type=int, default=0, help="save the first N episodes per task as GIFs")
    p.add_argument("--image-size", type=int, nargs=2, default=(224, 224), metavar=("H", "W"))
    p.add_argument("--max-steps", type=int, default=None, help="override each task's step budget")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    camera = replace(CameraConfig(), height=args.image_size[0], width=args.image_size[1])
    # Observations carry no image; run_episode renders only for policies that want images (and
    # for GIF episodes), so the privileged expert runs at physics speed.
    config = EnvConfig(scene=SceneConfig(camera=camera), render=False, max_steps=args.max_steps)
    started = time.perf_counter()
    with TabletopEnv(config) as env:
        policy = POLICIES[args.policy](args, env)
        records = evaluate(
            policy, env, args.tasks, args.episodes, seed=args.seed,
            gif_dir=args.out / "gifs", gif_episodes=args.gif_episodes,
            log=lambda msg: print(msg, file=sys.stderr),
        )
    meta = {
        "policy": args.policy,
        "episodes_per_task": args.episodes,
        "tasks": args.tasks,
        "seed": args.seed,
        "image_size": list(args.image_size),
        "control_hz": config.control_hz,
        "wall_s": round(time.perf_counter() - started, 2),
    }
    report_and_print(records, meta, args.out)
    return 0


def report_and_print(records: list[EpisodeRecord], meta: dict, out_dir: Path) -> None:
    """Stamp the metadata (time, machine), write results.json/.md, print the table."""
    meta = {**meta, "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": platform.processor() or platform.machine()}
    json_path, md_path = write_report(build_report(records, meta), out_dir)
    print(md_path.read_text())
    print(f"wrote {json_path} and {md_path}", file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
