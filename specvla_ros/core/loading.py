"""Checkpoint folders -> a ready decoder. The one entry point the node and the tools use."""
from __future__ import annotations

from pathlib import Path

import torch

from specvla_ros.core import tiny_vla
from specvla_ros.core.config import DecoderConfig
from specvla_ros.core.decoder import AutoregressiveDecoder, SpeculativeDecoder, build_decoder
from specvla_ros.core.draft_head import DraftHead
from specvla_ros.core.errors import CheckpointError, ConfigError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def load_backbone(model_path: str | Path, device: str = "cpu", dtype: str = "float32") -> tiny_vla.TinyVLA:
    """Read a checkpoint folder; its config.json's model_type says which loader applies."""
    config_file = Path(model_path) / tiny_vla.CONFIG_FILE
    if not config_file.is_file():
        raise CheckpointError(f"{config_file} not found: model.path must be a checkpoint folder "
                              f"({tiny_vla.CONFIG_FILE} + {tiny_vla.WEIGHTS_FILE})")
    if dtype not in DTYPES:
        raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}, got '{dtype}'")
    check_device(device)
    model_type = tiny_vla.read_config(model_path, None).get("model_type")
    if model_type == tiny_vla.MODEL_TYPE:
        return tiny_vla.TinyVLA.load(model_path, device=device, dtype=DTYPES[dtype])
    # OpenVLA checkpoints (Prismatic layout) get their native loader in issue #8.
    raise CheckpointError(f"{config_file}: model_type '{model_type}' is not supported; supported: "
                          f"'{tiny_vla.MODEL_TYPE}'")


def check_device(device: str) -> torch.device:
    """A torch device this machine has, or a ConfigError saying what to set instead."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device must be a torch device such as 'cpu', 'cuda' or 'cuda:1', got '{device}'") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device '{device}' asked for, but this torch build sees no CUDA GPU: use 'cpu'")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ConfigError(f"device '{device}' does not exist: this machine has {torch.cuda.device_count()} GPU(s)")
    return parsed


def load_decoder(model_path: str | Path, draft_path: str | Path | None, config: DecoderConfig,
                 device: str = "cpu", dtype: str = "float32") -> AutoregressiveDecoder | SpeculativeDecoder:
    backbone = load_backbone(model_path, device, dtype)
    if config.mode == "speculative" and not draft_path:
        raise ConfigError("speculative decoding needs a draft head: set model.draft_path (or use "
                          "decoder.mode autoregressive)")
    head = DraftHead.load(draft_path, backbone) if config.mode == "speculative" else None
    return build_decoder(backbone, head, config)
