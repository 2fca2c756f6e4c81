"""`specvla libero-eval`: success rate on LIBERO tasks, with the policy running in specvla_node.

    specvla libero-eval --suite libero_spatial --task 0 --episodes 5 --out runs/libero

Episode i of a task loads its fixed initial state FIRST+i (LIBERO ships 50 per task), so two
decoders evaluated with the same arguments face the same scenes. Writes OUT/results.json and
OUT/results.md with the tabletop harness's report code (success rate with 95% Wilson CI, episode
length, decode latency, acceptance length). Needs the LIBERO venv (`make setup-libero`).

Here, beside the bridge, because it runs LIBERO through ROS: specvla_ros.libero stays free of rclpy.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

from specvla_ros.libero.suites import EPISODES_PER_TASK


def _task_list(env, requested: list[str]) -> list[int]:
    if [t.lower() for t in requested] == ["all"]:
        return list(range(env.n_tasks))
    return [env.task_index(t) for t in requested]


def run(args: argparse.Namespace) -> int:
    from specvla_ros.libero.conventions import pick_unnorm_key
    from specvla_ros.libero.env import LiberoConfig, LiberoEnv, import_libero
    from specvla_ros.libero.errors import LiberoSetupError, LiberoUsageError

    try:
        import_libero()  # fail before loading a model when the extra is missing
    except LiberoSetupError as exc:
        raise SystemExit(f"specvla libero-eval: {exc}") from None
    if args.episodes < 1 or args.first_episode < 0 or args.first_episode + args.episodes > EPISODES_PER_TASK:
        raise SystemExit(f"specvla libero-eval: episodes FIRST..FIRST+N-1 must lie in 0..{EPISODES_PER_TASK - 1}")

    from specvla_ros.core.config import DecoderConfig, relax_setting
    from specvla_ros.core.decoder import build_decoder
    from specvla_ros.core.loading import load_backbone, load_draft
    from specvla_ros.models import model_pair
    from specvla_ros.ros.libero_bridge import run_libero_episodes
    from specvla_ros.sim.harness import report_and_print

    started = time.perf_counter()
    pair = model_pair(args.model, args.draft, log=lambda line: print(
        f"{line}; trained on the tabletop, not LIBERO: expect 0% success (this checks the pipeline; pass --model "
        "for a LIBERO checkpoint)", file=sys.stderr))
    args.model, args.draft = pair.target_path, pair.draft_path
    relax = relax_setting(args.relax_bins)
    center_crop = {"auto": None, "on": True, "off": False}[args.center_crop]
    backbone = load_backbone(args.model, args.device, args.dtype, center_crop=center_crop)
    config = DecoderConfig(mode=args.mode, relax_bins=relax,
                           unnorm_key=pick_unnorm_key(list(backbone.norm_stats), args.suite, args.unnorm_key))
    if config.uses_draft_head and args.draft is None:
        raise SystemExit("specvla libero-eval: speculative decoding needs --draft (or use --mode autoregressive)")
    head = load_draft(args.draft, backbone) if config.uses_draft_head else None
    decoder = build_decoder(backbone, head, config)
    label = f"{args.mode} r={list(config.relax_bins) if isinstance(relax, tuple) else relax}"

    with LiberoEnv(LiberoConfig(suite=args.suite, max_steps=args.max_steps)) as env:
        try:
            tasks = _task_list(env, args.task)
        except LiberoUsageError as exc:
            raise SystemExit(f"specvla libero-eval: {exc}") from None
        plan = [(task, args.first_episode + i) for task in tasks for i in range(args.episodes)]

        def log(record) -> None:
            print(f"{record.task} init state {record.seed}: {'success' if record.success else 'failure'} "
                  f"after {record.steps} steps", file=sys.stderr)

        run_result = run_libero_episodes(
            decoder, env, plan,
            node_parameters={"decoder.mode": args.mode, "decoder.relax_bins": list(args.relax_bins)},
            bridge_parameters={"step_timeout_s": args.step_timeout}, on_episode=log)
        instructions = {f"{args.suite}/{t}": env.instruction(t) for t in tasks}
        meta = {
            "policy": label, "model": str(args.model), "draft": str(args.draft) if head is not None else None,
            "benchmark": "LIBERO", "suite": args.suite, "tasks": instructions, "through_ros": True,
            "episodes_per_task": args.episodes, "first_episode": args.first_episode,
            "max_steps": env.config.step_limit, "settle_steps": env.config.settle_steps,
            "center_crop": args.center_crop, "unnorm_key": config.unnorm_key, "device": args.device,
            "mujoco_gl": os.environ.get("MUJOCO_GL"),
            "frames_published": run_result.frames_published, "commands_applied": run_result.commands_applied,
            "step_timeouts": run_result.timeouts, "sim_step_ms_mean": run_result.sim_step_ms_mean,
            "wall_s": round(time.perf_counter() - started, 2),
        }
    report_and_print(run_result.records, meta, args.out)
    return 0
