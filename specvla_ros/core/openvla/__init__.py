"""Native OpenVLA loading: checkpoints in OpenVLA's Hugging Face layout, no remote code, no pickle.

config.py (config.json schema), preprocessing.py (the processor's image pipeline and LIBERO's
centre crop), vision.py (DINOv2 / SigLIP featurizers, projector), tokenizer.py (prompt tokens),
model.py (the Backbone), draft.py (draft heads, EAGLE layout), quantization.py (optional
bitsandbytes); the safetensors shards are read by core/checkpoint.py. See docs/openvla.md.
"""
from specvla_ros.core.openvla.config import OpenVLAConfig, is_openvla_config
from specvla_ros.core.openvla.draft import load_draft_head
from specvla_ros.core.openvla.model import OpenVLA, load_openvla

__all__ = ["OpenVLA", "OpenVLAConfig", "is_openvla_config", "load_draft_head", "load_openvla"]
