"""Checkpoint folders -> a ready decoder. The one entry point the node and the tools use."""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from specvla_ros.core.backbone import Backbone
from specvla_ros.core.checkpoint import CONFIG_FILE, WEIGHTS_FILE, read_config
from specvla_ros.core.compilation import resolve_mode
from specvla_ros.core.config import DecoderConfig
from specvla_ros.core.decoder import AutoregressiveDecoder, SpeculativeDecoder, build_decoder
from specvla_ros.core.draft_head import DraftHead
from specvla_ros.core.errors import CheckpointError, ConfigError
from specvla_ros.core.openvla import is_openvla_config, load_draft_head, load_openvla
from specvla_ros.core.tiny.model import MODEL_TYPE as TINY_MODEL_TYPE
from specvla_ros.core.tiny.model import TinyVLA
from specvla_ros.core.tree_tuning import CALIBRATION_FILE, describe, read_calibration, tuned_decoder

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def load_backbone(model_path: str | Path, device: str = "cpu", dtype: str = "float32",
                  center_crop: bool | None = None, quantization: str | None = None) -> Backbone:
    """Read a checkpoint folder; its config.json says which loader applies.

    A tiny VLA (model_type 'specvla-tiny-vla') or an OpenVLA checkpoint in its Hugging Face layout
    (model_type 'openvla', safetensors). center_crop and quantization ('none', '8bit', '4bit') apply
    to OpenVLA only; None leaves them to the checkpoint's config.json (see docs/openvla.md).
    """
    config_file = Path(model_path) / CONFIG_FILE
    if not config_file.is_file():
        raise CheckpointError(f"{config_file} not found: model.path must be a checkpoint folder "
                              f"({CONFIG_FILE} + {WEIGHTS_FILE}, or an OpenVLA folder)")
    if dtype not in DTYPES:
        raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}, got '{dtype}'")
    check_device(device)
    meta = read_config(model_path, None)
    if is_openvla_config(meta):
        return load_openvla(model_path, device=device, dtype=DTYPES[dtype], center_crop=center_crop,
                            quantization=quantization)
    model_type = meta.get("model_type")
    if model_type == TINY_MODEL_TYPE:
        return TinyVLA.load(model_path, device=device, dtype=DTYPES[dtype])
    raise CheckpointError(f"{config_file}: model_type '{model_type}' is not supported; supported: "
                          f"'{TINY_MODEL_TYPE}', 'openvla'")


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


def load_draft(draft_path: str | Path, backbone: Backbone) -> DraftHead:
    """A draft head for `backbone`: this project's format or an EAGLE-layout head (safetensors)."""
    return load_draft_head(draft_path, backbone)


def load_decoder(model_path: str | Path, draft_path: str | Path | None, config: DecoderConfig,
                 device: str = "cpu", dtype: str = "float32", center_crop: bool | None = None,
                 quantization: str | None = None, compile: str = "off") -> AutoregressiveDecoder | SpeculativeDecoder:
    """A ready decoder. compile: "off", "default", "reduce-overhead" or "auto" (core/compilation.py);
    when compiling, the warm-up that builds every graph runs here, so the first real frame is fast."""
    backbone = load_backbone(model_path, device, dtype, center_crop=center_crop, quantization=quantization)
    mode = resolve_mode(compile, device)
    if config.uses_draft_head and not draft_path:
        raise ConfigError("speculative decoding needs a draft head: set model.draft_path (or use "
                          "decoder.mode autoregressive, or temporal drafts alone: temporal_draft.enabled true "
                          "with temporal_draft.draft_head false)")
    head = load_draft(draft_path, backbone) if config.uses_draft_head else None
    if head is not None and config.tree.auto:
        return _auto_tree_decoder(backbone, head, Path(draft_path), config, mode)
    decoder = build_decoder(backbone, head, config)
    if mode != "off":
        decoder.compile(mode)
        decoder.warm_up()
    return decoder


def _auto_tree_decoder(backbone: Backbone, head: DraftHead, draft_path: Path, config: DecoderConfig, mode: str
                       ) -> AutoregressiveDecoder | SpeculativeDecoder:
    """decoder.tree.auto with the draft head's calibration file (if any), logged in one line."""
    calibration_file = draft_path / CALIBRATION_FILE
    calibration = read_calibration(calibration_file) if calibration_file.is_file() else None
    decoder, choice = tuned_decoder(backbone, head, config, calibration, mode)
    decoder.start_notes.append(describe(choice))
    log.info(decoder.start_notes[-1])
    return decoder
