"""Checkpoint folders for every backbone and draft head: config.json plus safetensors weights.

The weights are one model.safetensors or shards listed in model.safetensors.index.json. Pickle
files (pytorch_model.bin, *.pt, ...) are refused: unpickling runs code from the file. What a
config.json means, and any renaming of a foreign layout's tensors, is the model's own business
(core/tiny/, core/openvla/); this module only reads and checks names and shapes.

`load_weights` fills a built model from one file (the tiny VLA, draft heads); `load_safetensors_into`
streams shards into an empty, meta-device module with the target dtype and device, so a 7B model
needs its own size in memory and no random initialization first.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from torch import nn

from specvla_ros.core.errors import CheckpointError

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def read_json(path: Path, what: str) -> dict:
    """The JSON object in `path`; `what` names the file in the error (model config, draft head config, ...)."""
    try:
        value = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as bad:
        raise CheckpointError(f"{path} is not valid JSON ({bad}): the {what} is corrupt") from None
    if not isinstance(value, dict):
        raise CheckpointError(f"{path} must hold a JSON object ({what})")
    return value


def read_config(folder: str | Path, model_type: str | None) -> dict:
    """Parse folder/config.json; with `model_type`, insist the checkpoint is of that type."""
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{path} not found: a checkpoint folder holds {CONFIG_FILE} and {WEIGHTS_FILE}")
    meta = read_json(path, "checkpoint config")
    if model_type is not None and meta.get("model_type") != model_type:
        raise CheckpointError(f"{path} describes a '{meta.get('model_type')}' model, expected '{model_type}'")
    return meta


def weight_files(folder: str | Path) -> dict[str, Path]:
    """tensor name -> safetensors file holding it, from the index or the single file."""
    folder = Path(folder)
    index, single = folder / INDEX_FILE, folder / WEIGHTS_FILE
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
    pickles = pickle_files(folder)
    if pickles:
        raise CheckpointError(f"{folder} holds only pickle weights ({', '.join(pickles)}); they are not loaded "
                              "because unpickling runs code from the file. Convert them to safetensors once on a "
                              "trusted machine (see docs/openvla.md) or download the .safetensors files")
    raise CheckpointError(f"{folder} has no weights: expected {WEIGHTS_FILE} or {INDEX_FILE} with its shards")


def pickle_files(folder: Path) -> list[str]:
    """Names of the pickle weight files in `folder`: named in errors, never loaded."""
    return sorted(p.name for p in folder.glob("*") if p.suffix in PICKLE_SUFFIXES)


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


def load_weights(module: nn.Module, path: Path, what: str = "target model") -> None:
    """Load safetensors into `module`, naming the first missing or misshapen tensor, and the file:
    `what` says whose it is (the target model, a draft head), the full path which folder."""
    if not path.is_file():
        pickles = pickle_files(path.parent)
        hint = f" (found {', '.join(pickles)}: pickle files are not loaded, convert them to safetensors)" \
            if pickles else ""
        raise CheckpointError(f"{what} weights {path} not found{hint}")
    try:
        tensors = load_file(path)
    except (SafetensorError, OSError) as bad:
        raise CheckpointError(f"{what} weights {path} is not a readable safetensors file ({bad})") from None
    disagree = f"the {CONFIG_FILE} beside it disagrees with its tensors, or they are for another model"
    expected = module.state_dict()
    for name, value in expected.items():
        if name not in tensors:
            raise CheckpointError(f"{what} weights {path} lacks tensor '{name}': the checkpoint is incomplete, or "
                                  f"{disagree}")
        if tensors[name].shape != value.shape:
            raise CheckpointError(f"{what} weights {path}: tensor '{name}' has shape {tuple(tensors[name].shape)}, "
                                  f"{CONFIG_FILE} implies {tuple(value.shape)}: {disagree}")
    unexpected = sorted(set(tensors) - set(expected))
    if unexpected:
        raise CheckpointError(f"{what} weights {path} holds tensors this model does not have, e.g. "
                              f"'{unexpected[0]}': {disagree}")
    module.load_state_dict(tensors, strict=False)


def read_tensors(files: dict[str, Path]) -> dict[str, torch.Tensor]:
    """Every tensor of every file in `files` (tensor name -> file), on the CPU."""
    tensors: dict[str, torch.Tensor] = {}
    for path in sorted(set(files.values())):
        try:
            with safe_open(path, framework="pt", device="cpu") as reader:
                for name in reader.keys():
                    tensors[name] = reader.get_tensor(name)
        except (SafetensorError, OSError) as bad:
            raise CheckpointError(f"{path} is not a readable safetensors file ({bad})") from None
    return tensors
