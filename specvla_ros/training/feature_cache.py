"""The feature cache: the target's EAGLE training pairs, computed once and read by every training run.

    FEATURES/
      plan.json                what is extracted: target sizes, data source, the frames (source indices, in
                               order), the held-out frames, shard size, dtype; fixed by the first run
      probe.safetensors        one observation and the target's features on it: proves later that a
                               target is the one these features came from
      held_out.safetensors     the held-out observations (images; instructions are in plan.json)
      shard-00000.safetensors  plan frames [0, S): features (R, H), embeds (R - n, H), tokens (n, 7),
                               offsets (n + 1,), source_index (n,)
      shard-00000.json         written after its shard file is in place: the shard is finished
      index.json               written last (rank 0) once every shard is finished: what training reads

Frame i of a shard owns feature rows offsets[i]:offsets[i + 1] and embed rows offsets[i] - i :
offsets[i + 1] - i - 1 (one fewer: the input after the last feature is never needed). Files are
written under a temporary name and renamed, so a killed run leaves no half shard behind a sidecar.
safetensors and JSON only: no pickle.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from specvla_ros.core.errors import SpecVLAError
from specvla_ros.training.draft_trainer import TargetFrame

FORMAT = "specvla-draft-features"
VERSION = 1
PLAN_FILE, INDEX_FILE = "plan.json", "index.json"
PROBE_FILE, HELD_OUT_FILE = "probe.safetensors", "held_out.safetensors"
STORAGE_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class FeatureCacheError(SpecVLAError):
    """A feature cache that cannot be used: unfinished, from another target, or written by other arguments."""


def shard_name(shard: int) -> str:
    return f"shard-{shard:05d}"


def write_json_atomic(path: Path, value: dict) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(value, indent=1) + "\n")
    os.replace(temporary, path)


def save_tensors_atomic(tensors: dict[str, torch.Tensor], path: Path) -> int:
    """safetensors file under a temporary name, then renamed: a kill leaves no half file. -> bytes."""
    temporary = path.with_name(path.name + ".tmp")
    save_file({k: v.contiguous() for k, v in tensors.items()}, temporary)
    os.replace(temporary, path)
    return path.stat().st_size


def human_bytes(count: float) -> str:
    """1234567 -> '1.23 MB' (decimal units, as disks are sold)."""
    for unit in ("B", "kB", "MB", "GB"):
        if count < 1000:
            return f"{count:.3g} {unit}"
        count /= 1000
    return f"{count:.3g} TB"


def frame_bytes(rows: float, hidden_size: int, dtype: str) -> float:
    """Bytes one frame of `rows` feature rows takes on disk (features + embeds + tokens + offsets)."""
    itemsize = STORAGE_DTYPES[dtype].itemsize
    return (2 * rows - 1) * hidden_size * itemsize + (7 + 2) * 8


def write_shard(folder: Path, shard: int, frames: list[TargetFrame], source_index: list[int], dtype: str) -> dict:
    """Write one shard and then its sidecar; returns the sidecar (what index.json lists)."""
    storage = STORAGE_DTYPES[dtype]
    lengths = [frame.features.shape[0] for frame in frames]
    tensors = {
        "features": torch.cat([frame.features for frame in frames]).to(storage),
        "embeds": torch.cat([frame.embeds for frame in frames]).to(storage),
        "tokens": torch.stack([frame.tokens for frame in frames]).to(torch.int64),
        "offsets": torch.tensor(np.concatenate([[0], np.cumsum(lengths)]), dtype=torch.int64),
        "source_index": torch.tensor(source_index, dtype=torch.int64),
    }
    size = save_tensors_atomic(tensors, folder / f"{shard_name(shard)}.safetensors")
    sidecar = {"shard": shard, "file": f"{shard_name(shard)}.safetensors", "frames": len(frames),
               "rows": int(sum(lengths)), "bytes": size}
    write_json_atomic(folder / f"{shard_name(shard)}.json", sidecar)
    return sidecar


def read_sidecar(folder: Path, shard: int) -> dict | None:
    """The sidecar of a finished shard, or None (never written, or its shard file is missing or cut)."""
    path = folder / f"{shard_name(shard)}.json"
    try:
        sidecar = json.loads(path.read_text())
        if (folder / sidecar["file"]).stat().st_size == sidecar["bytes"]:
            return sidecar
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


@dataclass
class Probe:
    """One observation and the target's features on it (see `FeatureCache.check_target`)."""

    image: np.ndarray
    instruction: str
    features: torch.Tensor


def write_probe(folder: Path, probe: Probe) -> None:
    save_tensors_atomic({"image": torch.from_numpy(np.ascontiguousarray(probe.image)),
                         "features": probe.features.float()}, folder / PROBE_FILE)


def read_probe(folder: Path, instruction: str) -> Probe:
    tensors = _load(folder / PROBE_FILE)
    return Probe(tensors["image"].numpy(), instruction, tensors["features"])


def same_features(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Features of one target on one observation, allowing for another device or bfloat16 storage:
    every row within cosine 0.99 (bfloat16 storage: 0.99999; another random target of the same size:
    below 0.3, measured on the tiny pair). A light fine-tune of the same base may pass: the check
    catches a wrong checkpoint, it does not tell close fine-tunes apart."""
    if a.shape != b.shape:
        return False
    cosine = torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=-1)
    return bool(cosine.min() > 0.99)


def check_target(cache: "FeatureCache", target) -> None:
    """FeatureCacheError unless `target` computes the probe's stored features: a head trained on one
    target's features is useless for another, and the sizes alone do not tell fine-tunes apart."""
    from specvla_ros.training.draft_trainer import collect_frame

    if (cache.hidden_size, int(cache.index["vocab_size"])) != (target.hidden_size, target.vocab_size):
        raise FeatureCacheError(f"{cache.folder} holds features of a target with hidden size {cache.hidden_size} "
                                f"and vocabulary {cache.index['vocab_size']}; this target has {target.hidden_size} and "
                                f"{target.vocab_size}: give the --target the cache was extracted with")
    probe = cache.probe()
    if not same_features(probe.features, collect_frame(target, probe.image, probe.instruction).features.float()):
        raise FeatureCacheError(f"{cache.folder} was extracted with another target (its features on the probe "
                                "frame differ): give the --target it was extracted with, or extract again")


def write_held_out(folder: Path, images: list[np.ndarray]) -> None:
    tensors = {f"image.{i}": torch.from_numpy(np.ascontiguousarray(image)) for i, image in enumerate(images)}
    save_tensors_atomic(tensors or {"empty": torch.zeros(0)}, folder / HELD_OUT_FILE)


def _load(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(path)
    except (OSError, SafetensorError) as bad:
        raise FeatureCacheError(f"cannot read {path} ({bad}): run extract-features again with the same "
                                "arguments to rewrite it") from None


def read_plan(folder: Path) -> dict | None:
    """plan.json of a cache folder, None when there is none yet."""
    path = folder / PLAN_FILE
    return _read_versioned(path) if path.is_file() else None


def _read_versioned(path: Path) -> dict:
    try:
        value = json.loads(path.read_text())
    except json.JSONDecodeError as bad:
        raise FeatureCacheError(f"{path} is not valid JSON ({bad}): delete {path.parent} and extract again") from None
    if not isinstance(value, dict) or value.get("format") != FORMAT or value.get("version") != VERSION:
        raise FeatureCacheError(f"{path.parent} is not a feature cache of this version ({FORMAT} v{VERSION}): "
                                "give a new --out, or delete it and extract again")
    return value


class FeatureCache:
    """A finished cache, read lazily: one memory-mapped shard file per lookup, no copy of the whole set."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        path = self.folder / INDEX_FILE
        if not path.is_file():
            hint = ("its extraction did not finish: run the same extract-features command again to finish it"
                    if (self.folder / PLAN_FILE).is_file() else "not a feature cache (specvla extract-features)")
            raise FeatureCacheError(f"{self.folder} holds no {INDEX_FILE}: {hint}")
        self.index = _read_versioned(path)
        self.dtype = STORAGE_DTYPES[self.index["dtype"]]
        starts = [0]
        for shard in self.index["shards"]:
            starts.append(starts[-1] + shard["frames"])
        self._starts = np.asarray(starts)
        if starts[-1] != len(self.index["frames"]):
            raise FeatureCacheError(f"{path} lists {starts[-1]} frames in its shards but plans "
                                    f"{len(self.index['frames'])}: extract again into a new folder")

    def __len__(self) -> int:
        return int(self._starts[-1])

    @property
    def hidden_size(self) -> int:
        return int(self.index["hidden_size"])

    def frame(self, i: int) -> TargetFrame:
        """Frame i of the plan (its training pairs), read from its shard."""
        shard = int(np.searchsorted(self._starts, i, side="right") - 1)
        local = i - int(self._starts[shard])
        path = self.folder / self.index["shards"][shard]["file"]
        try:
            with safe_open(str(path), framework="pt") as handle:
                offsets = handle.get_slice("offsets")[local: local + 2].tolist()
                return TargetFrame(features=handle.get_slice("features")[offsets[0]: offsets[1]],
                                   embeds=handle.get_slice("embeds")[offsets[0] - local: offsets[1] - local - 1],
                                   tokens=handle.get_slice("tokens")[local: local + 1][0])
        except (OSError, SafetensorError) as bad:
            raise FeatureCacheError(f"cannot read {path} ({bad}): extract again into a new folder") from None

    def held_out(self) -> tuple[list[np.ndarray], list[str]]:
        """The held-out observations stored beside the features (images, instructions)."""
        instructions = list(self.index["held_out_instructions"])
        tensors = _load(self.folder / HELD_OUT_FILE)
        return [tensors[f"image.{i}"].numpy() for i in range(len(instructions))], instructions

    def probe(self) -> Probe:
        return read_probe(self.folder, self.index["probe_instruction"])
