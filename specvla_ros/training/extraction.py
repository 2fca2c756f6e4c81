"""`extract-features`, the first stage: run the frozen target once over the data, keep its EAGLE pairs.

The plan (which frames, in which order, which are held out) depends only on the data, the seed and
the counts, so every rank computes the same plan on its own, and a resumed run (any world size) finds
the same shards. Shard s is written by rank s % world_size; a finished shard (sidecar present, file
complete) is never redone. Rank 0 writes plan.json, the probe and the held-out images first, and
index.json last, after a barrier. Layout: training/feature_cache.py.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from specvla_ros.core.action_tokenizer import N_ACTION_DIMS
from specvla_ros.core.backbone import Backbone
from specvla_ros.training.datasets import read_images
from specvla_ros.training.distributed import Workers
from specvla_ros.training.draft_trainer import collect_frame
from specvla_ros.training.feature_cache import (
    FORMAT,
    HELD_OUT_FILE,
    INDEX_FILE,
    PLAN_FILE,
    PROBE_FILE,
    VERSION,
    FeatureCacheError,
    Probe,
    frame_bytes,
    human_bytes,
    read_plan,
    read_probe,
    read_sidecar,
    same_features,
    shard_name,
    write_held_out,
    write_json_atomic,
    write_probe,
    write_shard,
)

# Plan entries that must agree between a run and the run it resumes.
PLAN_KEYS = ("frames", "held_out", "shard_frames", "dtype", "hidden_size", "vocab_size", "source")


@dataclass
class ExtractionConfig:
    """Which frames to extract and how to store them."""

    frames: int | None = None   # training frames; None: every frame not held out
    held_out: int = 40          # frames kept aside for held-out acceptance
    seed: int = 0               # picks the frames (the same rule train-draft always used)
    shard_frames: int = 64      # frames per shard file: the unit of resume and of work between ranks
    dtype: str = "float32"      # storage dtype of features and embeddings


@dataclass
class ExtractionResult:
    frames: int                 # frames in the cache
    extracted: int              # frames extracted by this run (all ranks)
    skipped_shards: int         # shards already finished by an earlier run
    wall_s: float
    estimate_bytes: int
    bytes: int

    @property
    def frames_per_s(self) -> float:
        return self.extracted / self.wall_s if self.wall_s > 0 else float("nan")


def plan_frames(count: int, config: ExtractionConfig) -> tuple[list[int], list[int]]:
    """(training frames, held-out frames) as source indices: a seeded random pick."""
    if count < 1:
        raise FeatureCacheError("the data holds no observations")
    wanted = count if config.frames is None else min(count, config.frames + config.held_out)
    picked = np.random.default_rng(config.seed).choice(count, size=wanted, replace=False)
    held = min(config.held_out, wanted - 1)
    return [int(i) for i in picked[held:]], [int(i) for i in picked[:held]]


def _check_resumable(existing: dict, plan: dict, out: Path) -> None:
    changed = [key for key in PLAN_KEYS if existing.get(key) != plan[key]]
    if changed:
        raise FeatureCacheError(f"{out} was started with other arguments or data ({', '.join(changed)} differ): "
                                "give the same arguments to finish it, or a new --out")


def _probe(target: Backbone, data, index: int, out: Path, plan_existed: bool) -> Probe:
    """The target's features on the plan's first frame; checked against the stored probe on resume."""
    image, instruction = read_images(data, [index])[0], data.instructions[index]
    features = collect_frame(target, image, instruction).features.float()
    if plan_existed and (out / PROBE_FILE).is_file():
        stored = read_probe(out, instruction)
        if not same_features(stored.features, features):
            raise FeatureCacheError(f"{out} was extracted with another target (its features on the probe frame "
                                    "differ): give the same --target to finish it, or a new --out")
    return Probe(image, instruction, features)


def _rows_per_frame(target: Backbone, data, train: list[int], image: np.ndarray, measured: int = 16) -> list[float]:
    """Feature rows of each planned frame, for the size estimate: a prefill per distinct instruction
    (the image part has a fixed length), the `measured` most frequent ones; the rest get their mean."""
    from collections import Counter

    counts = Counter(data.instructions[i] for i in train)
    rows = {text: target.prefill(image, text).prefix_len + N_ACTION_DIMS - 1
            for text, _ in counts.most_common(measured)}
    mean = sum(rows[text] * counts[text] for text in rows) / sum(counts[text] for text in rows)
    return [rows.get(data.instructions[i], mean) for i in train]


def extract_features(target: Backbone, data, out: Path, config: ExtractionConfig, workers: Workers,
                     source: str, target_path: str = "", on_shard: Callable[[int], None] | None = None,
                     progress: bool = True) -> ExtractionResult:
    """Extract (or finish extracting) the cache in `out`; every rank calls it, rank 0 writes the index."""
    from tqdm import tqdm

    started = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    train, held = plan_frames(len(data), config)
    shards = -(-len(train) // config.shard_frames)
    plan = {"format": FORMAT, "version": VERSION, "frames": train, "held_out": held,
            "shard_frames": config.shard_frames, "shards": shards, "dtype": config.dtype,
            "hidden_size": target.hidden_size, "vocab_size": target.vocab_size, "source": source,
            "seed": config.seed, "target": target_path, "held_out_instructions": [data.instructions[i] for i in held],
            "probe_instruction": data.instructions[train[0]]}
    existing = read_plan(out)
    if existing is not None:
        _check_resumable(existing, plan, out)
    probe = _probe(target, data, train[0], out, existing is not None)
    finished = {shard for shard in range(shards) if read_sidecar(out, shard) is not None}
    rows = _rows_per_frame(target, data, train, probe.image)
    estimate = int(sum(frame_bytes(r, target.hidden_size, config.dtype) for r in rows))
    needed = estimate * (shards - len(finished)) // max(shards, 1)
    free = shutil.disk_usage(out).free
    if workers.is_main:
        print(f"extract-features: {len(train)} frames ({len(held)} held out) in {shards} shards of "
              f"{config.shard_frames}, {workers.world_size} rank(s); about {human_bytes(estimate)} in {config.dtype} "
              f"({np.mean(rows):.0f} feature rows x {target.hidden_size} per frame); "
              f"{len(finished)} shard(s) already finished; {human_bytes(free)} free", flush=True)
    if needed > free:
        raise FeatureCacheError(f"{out}: the cache needs about {human_bytes(needed)} more and the disk has "
                                f"{human_bytes(free)} free: free space, extract fewer --frames, or store "
                                "--dtype bfloat16")
    if workers.is_main:
        if existing is None:
            write_json_atomic(out / PLAN_FILE, plan)
        if existing is None or not (out / PROBE_FILE).is_file():
            write_probe(out, probe)
        if existing is None or not (out / HELD_OUT_FILE).is_file():
            write_held_out(out, read_images(data, held))

    mine = [shard for shard in range(workers.rank, shards, workers.world_size) if shard not in finished]
    mine_frames = sum(len(train[s * config.shard_frames: (s + 1) * config.shard_frames]) for s in mine)
    bar = tqdm(total=mine_frames, desc=f"extract (rank {workers.rank})", unit="frame",
               disable=None if progress and workers.is_main else True)
    extracted = 0
    for shard in mine:
        indices = train[shard * config.shard_frames: (shard + 1) * config.shard_frames]
        images = read_images(data, indices)
        frames = []
        for index, image in zip(indices, images, strict=True):
            frames.append(collect_frame(target, image, data.instructions[index]))
            bar.update(1)
        write_shard(out, shard, frames, indices, config.dtype)
        extracted += len(frames)
        if on_shard is not None:
            on_shard(shard)
    bar.close()
    workers.barrier()
    sidecars = [read_sidecar(out, shard) for shard in range(shards)]
    if workers.is_main:
        missing = [shard_name(s) for s, sidecar in enumerate(sidecars) if sidecar is None]
        if missing:
            raise FeatureCacheError(f"{out}: shards {', '.join(missing[:5])} were not written: run again to finish")
        write_json_atomic(out / INDEX_FILE, {**plan, "shards": sidecars,
                                             "bytes": sum(s["bytes"] for s in sidecars)})
        for leftover in out.glob("*.tmp"):
            leftover.unlink()
    workers.barrier()  # index.json is there for every rank before anyone trains on it
    (extracted_all,) = workers.sum([float(extracted)])
    return ExtractionResult(frames=len(train), extracted=int(extracted_all), skipped_shards=len(finished),
                            wall_s=time.monotonic() - started, estimate_bytes=estimate,
                            bytes=sum(s["bytes"] for s in sidecars if s is not None))


def describe_result(result: ExtractionResult) -> dict:
    return {**asdict(result), "frames_per_s": round(result.frames_per_s, 3)}
