"""Draft heads for an OpenVLA target: this project's format, or EAGLE's (EAGLE-1/2 key names).

EAGLE's draft model (SafeAILab/EAGLE `eagle/model/cnets1.py`) saves `fc.weight`/`fc.bias`
(2H -> H over [token embedding ; target feature]), `layers.0.*` (one Llama decoder layer whose
input RMSNorm is absent for layer 0) and usually a frozen copy of `embed_tokens.weight`, beside a
Llama-style config.json. It maps onto core/draft_head.DraftHead: `layers.0.` -> `layer.`, the
missing input norm becomes an identity, the embedding copy is dropped (the target's is shared).
"""
from __future__ import annotations

from pathlib import Path

from torch import nn

from specvla_ros.core.backbone import Backbone
from specvla_ros.core.checkpoint import read_json, read_tensors, weight_files
from specvla_ros.core.draft_head import MODEL_TYPE as OWN_MODEL_TYPE
from specvla_ros.core.draft_head import DraftHead
from specvla_ros.core.errors import CheckpointError

EAGLE_LAYER_PREFIX = "layers.0."


def load_draft_head(folder: str | Path, target: Backbone) -> DraftHead:
    """A draft head folder (config.json + safetensors) for `target`, in either layout."""
    folder = Path(folder)
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise CheckpointError(f"{config_file} not found: model.draft_path must be a draft head folder "
                              "(config.json + model.safetensors)")
    meta = read_json(config_file, "draft head config")
    if meta.get("model_type") == OWN_MODEL_TYPE:
        return DraftHead.load(folder, target)
    return _load_eagle(folder, meta, target)


def _hidden_mismatch(folder: Path, found: int, target: Backbone) -> CheckpointError:
    return CheckpointError(
        f"draft head in {folder} has hidden size {found}, the target has {target.hidden_size}: a draft head only "
        f"works with the model it was trained against (OpenVLA-7B: 4096). Train one for this target "
        f"(specvla train-draft) or point model.draft_path at a head made for this checkpoint")


def _load_eagle(folder: Path, meta: dict, target: Backbone) -> DraftHead:
    try:
        hidden = int(meta["hidden_size"])
        num_heads = int(meta["num_attention_heads"])
        intermediate = int(meta["intermediate_size"])
    except (KeyError, TypeError, ValueError):
        raise CheckpointError(f"{folder / 'config.json'} is neither a specvla draft head nor an EAGLE draft config "
                              "(needs hidden_size, num_attention_heads, intermediate_size)") from None
    if hidden != target.hidden_size:
        raise _hidden_mismatch(folder, hidden, target)
    unsupported = []
    if int(meta.get("num_hidden_layers", 1)) != 1:
        unsupported.append(f"{meta['num_hidden_layers']} decoder layers (one is supported)")
    if int(meta.get("num_key_value_heads") or num_heads) != num_heads:
        unsupported.append("grouped-query attention")
    if float(meta.get("rope_theta") or 10000.0) != 10000.0 or meta.get("rope_scaling"):
        unsupported.append("non-default rotary embedding")
    if meta.get("hidden_act", "silu") != "silu":
        unsupported.append(f"activation {meta['hidden_act']}")
    if unsupported:
        raise CheckpointError(f"EAGLE draft head in {folder} uses {', '.join(unsupported)}; not supported")

    tensors = read_tensors(weight_files(folder))
    embedding = tensors.pop("embed_tokens.weight", None)
    if embedding is not None and embedding.shape[-1] != target.hidden_size:
        raise _hidden_mismatch(folder, embedding.shape[-1], target)
    renamed = {(f"layer.{k[len(EAGLE_LAYER_PREFIX):]}" if k.startswith(EAGLE_LAYER_PREFIX) else k): v
               for k, v in tensors.items()}
    fc = renamed.get("fc.weight")
    if fc is not None and tuple(fc.shape) != (target.hidden_size, 2 * target.hidden_size):
        raise _hidden_mismatch(folder, fc.shape[0], target)

    head = DraftHead(target, num_heads, intermediate)
    eps = float(meta.get("rms_norm_eps", 1e-6))
    for norm in (head.layer.input_layernorm, head.layer.post_attention_layernorm):
        norm.variance_epsilon = eps
    if "layer.input_layernorm.weight" not in renamed:  # EAGLE's layer 0 has no input norm
        head.layer.input_layernorm = nn.Identity()
    expected = head.state_dict()
    for name, value in expected.items():
        if name not in renamed:
            raise CheckpointError(f"EAGLE draft head in {folder} lacks '{_eagle_name(name)}': incomplete checkpoint")
        if renamed[name].shape != value.shape:
            raise CheckpointError(f"EAGLE draft head in {folder}: '{_eagle_name(name)}' has shape "
                                  f"{tuple(renamed[name].shape)}, expected {tuple(value.shape)} (config.json and "
                                  "weights disagree)")
    extra = sorted(set(renamed) - set(expected))
    if extra:
        raise CheckpointError(f"EAGLE draft head in {folder} holds tensors a one-layer EAGLE head does not have, "
                              f"e.g. '{_eagle_name(extra[0])}'")
    head.load_state_dict(renamed)
    return head.to(device=target.device, dtype=target.dtype)


def _eagle_name(name: str) -> str:
    return EAGLE_LAYER_PREFIX + name[len("layer."):] if name.startswith("layer.") else name
