"""`specvla extract-features` and `specvla train-draft`: the two stages of a draft head, as commands.

    specvla extract-features --target DIR --data SRC --out FEATURES     # the target, once per frame
    specvla train-draft --features FEATURES --out DRAFT_DIR              # the head, from the cache
    specvla train-draft --target DIR --data SRC --out DRAFT_DIR          # both (cache in DRAFT_DIR/features)

Both run as they are in one process, or under torchrun on several (training/distributed.py). Their
arguments are defined in specvla_ros/cli/training.py.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path


def _model_dtype(dtype: str, device: str) -> str:
    return ("bfloat16" if device.startswith("cuda") else "float32") if dtype == "auto" else dtype


def _extract(args: argparse.Namespace, workers, target, out: Path, frames: int | None):
    from specvla_ros.training.datasets import load_observations
    from specvla_ros.training.extraction import ExtractionConfig, extract_features

    data = load_observations(args.data, args.camera_topic, args.task_topic, args.camera_key)
    config = ExtractionConfig(frames=frames, held_out=args.held_out, seed=args.seed, shard_frames=args.shard_frames,
                              dtype=_model_dtype(args.dtype, workers.device))
    source = f"{args.data.resolve()}" + (f" [{args.camera_key}]" if args.camera_key else "")
    return extract_features(target, data, out, config, workers, source=source,
                            target_path=str(args.target.resolve()))


def run_extract_features(args: argparse.Namespace) -> int:
    from specvla_ros.core.loading import load_backbone
    from specvla_ros.training.distributed import start_workers, stop_workers
    from specvla_ros.training.feature_cache import human_bytes

    workers = start_workers(args.device, args.dist_timeout_min)
    try:
        target = load_backbone(args.target, workers.device, _model_dtype(args.dtype, workers.device))
        result = _extract(args, workers, target, args.out, args.frames)
        if workers.is_main:
            print(f"wrote {args.out}: {result.frames} frames, {human_bytes(result.bytes)} (estimated "
                  f"{human_bytes(result.estimate_bytes)}); this run extracted {result.extracted} frames in "
                  f"{result.wall_s:.1f} s ({result.frames_per_s:.2f} frames/s on {workers.world_size} rank(s)), "
                  f"{result.skipped_shards} shard(s) were already finished", flush=True)
    finally:
        stop_workers(workers)
    return 0


def run_train_draft(args: argparse.Namespace) -> int:
    from specvla_ros.core.errors import ConfigError
    from specvla_ros.training.distributed import start_workers, stop_workers

    if args.data is None and args.features is None:
        raise ConfigError("train-draft needs --data (and --target) to extract features, or --features to train "
                          "from a cache made by extract-features")
    if args.data is not None and args.target is None:
        raise ConfigError("--data needs --target: the target labels the observations")
    workers = start_workers(args.device, args.dist_timeout_min)
    try:
        return _train_draft(args, workers)
    finally:
        stop_workers(workers)


def _train_draft(args: argparse.Namespace, workers) -> int:
    import platform

    import numpy as np
    from tqdm import tqdm

    from specvla_ros.core.draft_head import DraftHead
    from specvla_ros.core.errors import ConfigError
    from specvla_ros.core.loading import load_backbone
    from specvla_ros.training.cached_training import CachedDraftTrainer, DraftTrainConfig, held_out_acceptance
    from specvla_ros.training.checkpointing import TrainingState, load_training_state, save_training_state
    from specvla_ros.training.extraction import describe_result
    from specvla_ros.training.feature_cache import FeatureCache, check_target, read_plan
    from specvla_ros.training.report import write_report

    started = time.monotonic()
    features = args.features or args.out / "features"
    target_path = args.target
    if target_path is None:  # --features alone: the target the cache was extracted with
        plan = read_plan(features)
        if plan is None:
            raise ConfigError(f"{features} is not a feature cache (no plan.json): run extract-features first")
        target_path = Path(plan["target"])
    dtype = _model_dtype(args.dtype, workers.device)
    target = load_backbone(target_path, workers.device, dtype)
    if not args.resume and (args.num_heads < 1 or target.hidden_size % args.num_heads):
        raise ConfigError(f"--num-heads {args.num_heads} must divide the target's hidden size {target.hidden_size}")
    extraction = None
    if args.data is not None:
        extraction = describe_result(_extract(args, workers, target, features, args.frames))
    cache = FeatureCache(features)
    check_target(cache, target)
    head = (DraftHead.load(args.out, target) if args.resume
            else DraftHead.random(target, args.seed, args.num_heads, args.intermediate_size))
    config = DraftTrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed)
    trainer = CachedDraftTrainer(head, cache, config, workers)
    state = load_training_state(args.out, trainer.optimizer) if args.resume else TrainingState()
    images, instructions = cache.held_out()
    relax_values = sorted({0, args.relax_bins})
    train_s, first_step = 0.0, state.step

    def evaluate(step: int) -> None:
        row = {"step": step, **held_out_acceptance(target, head, images, instructions, relax_values, workers)}
        state.evaluations.append(row)
        if workers.is_main:
            recent = np.mean(state.losses[-50:]) if state.losses else float("nan")
            print(f"step {step}/{args.steps}: loss {recent:.3f}, held-out acceptance "
                  + ", ".join(f"{k.split('_')[-1]} {v:.2f}" for k, v in row.items() if k != "step"), flush=True)

    if workers.is_main:
        print(f"train-draft: {len(cache)} cached frames, {len(images)} held out, global batch {config.batch_size} "
              f"on {workers.world_size} rank(s) ({workers.device})", flush=True)
    if not state.evaluations and images:
        evaluate(0)
    progress = tqdm(total=args.steps, initial=state.step, desc="train-draft", unit="step",
                    disable=None if workers.is_main else True)
    while state.step < args.steps:
        chunk = min(args.eval_every - state.step % args.eval_every, args.steps - state.step)
        chunk_started = time.monotonic()
        for step in range(state.step, state.step + chunk):
            state.losses.append(trainer.step(step))
            progress.update(1)
        train_s += time.monotonic() - chunk_started
        state.step += chunk
        if images:
            evaluate(state.step)
        if workers.is_main:
            head.save(args.out)
            save_training_state(args.out, trainer.optimizer, state)
    progress.close()
    workers.barrier()
    if workers.is_main:
        report = {"command": "train-draft", "target": str(target_path), "features": str(features),
                  "data": str(args.data) if args.data else None, "train_frames": len(cache),
                  "held_out_frames": len(images), "steps": args.steps, "batch_size": config.batch_size,
                  "world_size": workers.world_size, "device": workers.device, "dtype": dtype,
                  "train_s": round(train_s, 2),
                  "steps_per_s": round((state.step - first_step) / train_s, 3) if train_s else None,
                  "extraction": extraction,
                  "wall_s": round(time.monotonic() - started, 1),
                  "machine": platform.processor() or platform.machine()}
        write_report(args.out, report, state.losses, state.evaluations, title="draft head: EAGLE loss")
        print(f"wrote {args.out} ({report['wall_s']} s)", flush=True)
    return 0
