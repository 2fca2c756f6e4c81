"""Safetensors-only weight loading: single file or shards listed in model.safetensors.index.json.

Pickle files (pytorch_model.bin, *.pt, ...) are refused: unpickling runs code from the file.
Tensors load straight into an (empty, meta-device) module with the target dtype and device, shard
by shard, so a 7B model needs its own size in memory and no random initialization first.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from specvla_ros.core.errors import CheckpointError

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def weight_files(folder: str | Path) -> dict[str, Path]:
    """tensor name -> safetensors file holding it, from the index or the single file."""
    folder = Path(folder)
    index, single = folder / INDEX_FILE, folder / SINGLE_FILE
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (OSError, json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as bad:
            raise CheckpointError(f"{index} is not a valid safetensors index ({bad!r}): re-download it") from None
        files = {name: folder / shard for name, shard in weight_map.items()}
        missing = sorted({path.name for path in files.values() if not path.is_file()})
        if missing:
            raise CheckpointError(f"{folder} is incomplete: {INDEX_FILE} lists {', '.join(missing)}, which "
                                  "is not there; finish the download (all shards) and try again")
        return files
    if single.is_file():
        return {name: single for name in tensor_names(single)}
    pickles = sorted(p.name for p in folder.glob("*") if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise CheckpointError(f"{folder} holds only pickle weights ({', '.join(pickles)}); they are not loaded "
                              "because unpickling runs code from the file. Convert them to safetensors once on a "
                              "trusted machine (see docs/openvla.md) or download the .safetensors files")
    raise CheckpointError(f"{folder} has no weights: expected {SINGLE_FILE} or {INDEX_FILE} with its shards")


def tensor_names(path: Path) -> list[str]:
    try:
        with safe_open(path, framework="pt", device="cpu") as reader:
            return list(reader.keys())
    except (SafetensorError, OSError) as bad:
        raise CheckpointError(f"{path} is not a readable safetensors file ({bad}): re-download it") from None


def load_safetensors_into(module: nn.Module, files: dict[str, Path], dtype: torch.dtype, device: torch.device,
                          skip: Iterable[str] = ()) -> None:
    """Assign every parameter and persistent buffer of `module` from `files`, by name.

    `skip`: name prefixes the checkpoint may hold but the module does not use. Every other tensor
    must match a module entry in name and shape, and every module entry must be in the checkpoint.
    """
    skip = tuple(skip)
    expected = {name: tensor.shape for name, tensor in module.state_dict(keep_vars=True).items()}
    missing = sorted(set(expected) - set(files))
    if missing:
        raise CheckpointError(f"the checkpoint lacks tensor '{missing[0]}' ({len(missing)} missing in all): it is "
                              "incomplete or not an OpenVLA checkpoint")
    unexpected = sorted(name for name in set(files) - set(expected) if not name.startswith(skip))
    if unexpected:
        raise CheckpointError(f"the checkpoint holds tensors this model does not have, e.g. '{unexpected[0]}': "
                              "it is not an OpenVLA (Prismatic, Llama-2) checkpoint this loader knows")
    by_file: dict[Path, list[str]] = {}
    for name in expected:
        by_file.setdefault(files[name], []).append(name)
    reader_device = "cpu" if device.type == "cpu" else str(device)
    for path, names in by_file.items():
        tensors = {}
        try:
            with safe_open(path, framework="pt", device=reader_device) as reader:
                present = set(reader.keys())
                for name in names:
                    if name not in present:
                        raise CheckpointError(f"{path.name} lacks '{name}', which {INDEX_FILE} says it holds: the "
                                              "shard is from another download; re-download the checkpoint")
                    tensor = reader.get_tensor(name)
                    if tensor.shape != expected[name]:
                        raise CheckpointError(f"{path.name}: tensor '{name}' has shape {tuple(tensor.shape)}, the "
                                              f"config describes {tuple(expected[name])}: config.json and weights "
                                              "disagree")
                    tensors[name] = tensor.to(device=device, dtype=dtype if tensor.is_floating_point() else None)
        except (SafetensorError, OSError) as bad:
            raise CheckpointError(f"{path} is not a readable safetensors file ({bad}): re-download it") from None
        module.load_state_dict(tensors, strict=False, assign=True)
        del tensors
    for name, param in module.named_parameters():
        param.requires_grad_(False)
        if param.is_meta:  # pragma: no cover - the key checks above make this unreachable
            raise CheckpointError(f"parameter '{name}' was not loaded")
