"""OpenVLA as a Backbone (see core/backbone.py): vision featurizer -> projector -> LlamaForCausalLM.

The sequence is OpenVLA's: [BOS][projected patch embeddings][prompt tokens][29871], patches inserted
right after BOS (modeling_prismatic.py). Greedy action tokens come from the full vocabulary's logits,
as `predict_action` (generate with do_sample=False); action ids decode with vocab_size =
text_config.vocab_size - pad_to_multiple_of (32000). The decoders do the rest.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import LlamaForCausalLM
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

from specvla_ros.core.action_tokenizer import ActionTokenizer
from specvla_ros.core.backbone import LlamaVLA, validate_observation
from specvla_ros.core.checkpoint import load_safetensors_into, weight_files
from specvla_ros.core.errors import ConfigError
from specvla_ros.core.openvla.config import CENTER_CROP_FIELD, OpenVLAConfig, load_config
from specvla_ros.core.openvla.preprocessing import ImagePreprocessor
from specvla_ros.core.openvla.quantization import quantize_llm
from specvla_ros.core.openvla.tokenizer import PromptTokenizer
from specvla_ros.core.openvla.vision import Projector, VisionBackbone

log = logging.getLogger(__name__)


class OpenVLA(LlamaVLA):
    """Implements the Backbone protocol. Build with `load_openvla`; submodule names = checkpoint keys."""

    def __init__(self, config: OpenVLAConfig, tokenizer: PromptTokenizer, preprocessor: ImagePreprocessor) -> None:
        super().__init__()
        self.config = config
        self.norm_stats = config.norm_stats
        self.text_tokenizer = tokenizer
        self.preprocess = preprocessor
        self.action_tokenizer = ActionTokenizer(config.action_vocab_size, config.n_action_bins)
        self.vision_backbone = VisionBackbone(config)
        self.projector = Projector(config.vision_dim, int(config.text_config["hidden_size"]),
                                   config.use_fused_vision_backbone)
        self.language_model = LlamaForCausalLM(config.llama_config())
        self.eval()

    # ----- Backbone protocol ----------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.embed_tokens.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.embed_tokens.weight.dtype

    @property
    def hidden_size(self) -> int:
        return int(self.config.text_config["hidden_size"])

    @property
    def vocab_size(self) -> int:
        """Width of the logits (32064 for OpenVLA-7B: 32000 + <PAD> padded to a multiple of 64)."""
        return int(self.config.text_config["vocab_size"])

    @property
    def embed_tokens(self) -> nn.Embedding:
        return self.language_model.model.embed_tokens

    @property
    def lm_head(self) -> nn.Linear:
        return self.language_model.lm_head

    def patch_embeddings(self, image: np.ndarray, compiled: bool = True) -> torch.Tensor:
        """uint8 RGB image -> (patches, H) projected patch embeddings (compiled=False: eager whatever
        `compile` said)."""
        pixels = self.preprocess(image).to(device=self.device, dtype=self.dtype)
        return (self._encode if compiled else self._encode.eager)(pixels)

    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        """Preprocessed pixels -> (patches, H): what prefill compiles."""
        return self.projector(self.vision_backbone(pixels))[0]

    def causal_lm(self) -> nn.Module:
        return self.language_model

    def prompt_and_patches(self, image: np.ndarray, instruction: str, compiled: bool = True
                           ) -> tuple[torch.Tensor, torch.Tensor]:
        """(BOS + prompt token ids, (P, H) patch embeddings): the inputs of the language model's prefill."""
        validate_observation(image, instruction)
        ids = torch.tensor(self.text_tokenizer.prompt_ids(instruction), device=self.device)
        return ids, self.patch_embeddings(image, compiled)


def load_openvla(folder: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                 center_crop: bool | None = None, quantization: str | None = None) -> OpenVLA:
    """An OpenVLA checkpoint folder (HF layout, safetensors) -> a ready backbone.

    dtype: bfloat16 on CUDA (what OpenVLA runs in), float32 on CPU. center_crop: None = the
    config.json field `specvla_center_crop`, else off. quantization ('8bit' / '4bit', CUDA +
    bitsandbytes) quantizes the Llama decoder layers; vision, projector, embeddings and LM head stay
    in `dtype`.
    """
    folder = Path(folder)
    device = torch.device(device)
    config, processor = load_config(folder, center_crop=center_crop, quantization=quantization)
    if config.quantization != "none" and device.type != "cuda":
        raise ConfigError(f"{config.quantization} loading needs a CUDA device (bitsandbytes); got '{device}'")
    if config.center_crop is None and config.norm_stats and all(k.startswith("libero") for k in config.norm_stats):
        log.warning("%s looks like a LIBERO fine-tune: OpenVLA evaluates those with a centre crop; set %s "
                    "(or center_crop=True) to match", folder, CENTER_CROP_FIELD)
    files = weight_files(folder)  # fails early (pickles, missing shards) before building anything
    tokenizer = PromptTokenizer(folder)
    preprocessor = ImagePreprocessor.from_config(config, processor)
    with torch.device("meta"):
        model = OpenVLA(config, tokenizer, preprocessor)
    skip = [f"vision_backbone.{name}.{prefix}" for name, featurizer in model.vision_backbone.featurizers().items()
            for prefix in featurizer.unused_checkpoint_prefixes()]
    skip += [name for name in files if name.endswith("rotary_emb.inv_freq")]  # older exports saved it; recomputed
    load_device = torch.device("cpu") if config.quantization != "none" else device
    load_safetensors_into(model, files, dtype, load_device, skip)
    # Rotary frequencies are not in the checkpoint: rebuild them in float32, as a fresh HF model has them.
    llama = model.language_model.model
    llama.rotary_emb = LlamaRotaryEmbedding(llama.config).to(load_device)
    if config.quantization != "none":
        quantize_llm(model.language_model, config.quantization, dtype)
        model.to(device)
    return model.eval()
