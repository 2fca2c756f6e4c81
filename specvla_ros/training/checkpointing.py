"""Resumable training: optimizer state and progress beside a checkpoint, without pickle.

AdamW's moments go to `optimizer.safetensors` (one tensor per parameter and moment), the rest
(step, losses, evaluations, param-group settings) to `training_state.json`. A run started again
with `--resume` continues from the saved step with the same moments and learning-rate schedule.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from specvla_ros.core.errors import CheckpointError

OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "training_state.json"


@dataclass
class TrainingState:
    """Where a run stands: the next step to run and what was recorded so far."""

    step: int = 0
    losses: list[float] = field(default_factory=list)
    evaluations: list[dict] = field(default_factory=list)


def save_training_state(folder: Path, optimizer: torch.optim.Optimizer, state: TrainingState) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    saved = optimizer.state_dict()
    tensors = {f"{index}.{key}": torch.as_tensor(value).detach().cpu().contiguous()
               for index, entries in saved["state"].items() for key, value in entries.items()}
    save_file(tensors, folder / OPTIMIZER_FILE)
    groups = [{k: v for k, v in group.items()} for group in saved["param_groups"]]
    (folder / STATE_FILE).write_text(json.dumps({**asdict(state), "param_groups": groups}) + "\n")


def load_training_state(folder: Path, optimizer: torch.optim.Optimizer) -> TrainingState:
    """Restore `optimizer` from `folder` and return the saved progress; CheckpointError if absent or broken."""
    state_path, optimizer_path = folder / STATE_FILE, folder / OPTIMIZER_FILE
    if not state_path.is_file() or not optimizer_path.is_file():
        raise CheckpointError(f"cannot resume: {folder} holds no {STATE_FILE} + {OPTIMIZER_FILE} "
                              "(it was not written by a run of this version); start without --resume")
    try:
        meta = json.loads(state_path.read_text())
        tensors = load_file(optimizer_path)
    except (json.JSONDecodeError, SafetensorError, OSError) as bad:
        raise CheckpointError(f"cannot resume from {folder}: {bad}") from None
    entries: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        index, key = name.split(".", 1)
        entries.setdefault(int(index), {})[key] = value
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    for index, entry in entries.items():
        moment = entry.get("exp_avg")
        if index >= len(parameters) or (moment is not None and moment.shape != parameters[index].shape):
            raise CheckpointError(f"cannot resume from {folder}: its optimizer state does not fit this model "
                                  f"(parameter {index})")
    try:
        optimizer.load_state_dict({"state": entries, "param_groups": meta["param_groups"]})
    except (KeyError, ValueError) as bad:
        raise CheckpointError(f"cannot resume from {folder}: its optimizer state does not fit this model "
                              f"({bad})") from None
    return TrainingState(step=int(meta["step"]), losses=list(meta["losses"]),
                         evaluations=list(meta.get("evaluations", [])))
