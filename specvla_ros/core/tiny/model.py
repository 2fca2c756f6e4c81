"""A tiny OpenVLA-shaped VLA: patch encoder -> MLP projector -> LlamaForCausalLM.

Same sequence layout as OpenVLA ([BOS][image patches][prompt]), same action-token scheme (the
256 action tokens at the top of the vocabulary), same prompt. Small enough to train and test on
a CPU; the decoders treat it exactly like a real OpenVLA backbone.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

from specvla_ros.core.action_tokenizer import ActionTokenizer
from specvla_ros.core.backbone import LlamaVLA, validate_observation
from specvla_ros.core.checkpoint import CONFIG_FILE, WEIGHTS_FILE, load_weights, read_config
from specvla_ros.core.errors import CheckpointError, ConfigError
from specvla_ros.core.tiny.config import TinyVLAConfig
from specvla_ros.core.tiny.tokenizer import PieceTokenizer
from specvla_ros.core.tiny.vision import build_vision_encoder

MODEL_TYPE = "specvla-tiny-vla"
PROMPT_CACHE_SIZE = 256


def llama_config(config: TinyVLAConfig) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=config.vocab_size, hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size, num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads, num_key_value_heads=config.num_kv_heads,
        max_position_embeddings=config.max_position_embeddings, tie_word_embeddings=False,
        initializer_range=config.init_std, attn_implementation="eager",
    )


class TinyVLA(LlamaVLA):
    """Implements the Backbone protocol (see core/backbone.py)."""

    def __init__(self, config: TinyVLAConfig, norm_stats: dict) -> None:
        super().__init__()
        self.config = config
        self.norm_stats = norm_stats
        self.vision = build_vision_encoder(config)
        self.projector = nn.Sequential(nn.Linear(config.vision_dim, config.hidden_size), nn.GELU(),
                                       nn.Linear(config.hidden_size, config.hidden_size))
        self.llm = LlamaForCausalLM(llama_config(config))
        self.text_tokenizer = PieceTokenizer(config.text_pieces)
        self.action_tokenizer = ActionTokenizer(config.vocab_size, config.n_action_bins)
        self._prompt_cache: dict[str, torch.Tensor] = {}  # instruction -> prompt ids (tokenizing costs per frame)
        self.eval()

    # ----- Backbone protocol ----------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.llm.lm_head.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.llm.lm_head.weight.dtype

    @property
    def hidden_size(self) -> int:
        return self.config.hidden_size

    @property
    def vocab_size(self) -> int:
        return self.config.vocab_size

    @property
    def embed_tokens(self) -> nn.Embedding:
        return self.llm.model.embed_tokens

    @property
    def lm_head(self) -> nn.Linear:
        return self.llm.lm_head

    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        """uint8 RGB (H, W, 3) -> (1, 3, S, S) in [-1, 1], resized with antialiasing."""
        pixels = torch.from_numpy(np.ascontiguousarray(image)).to(self.device).permute(2, 0, 1)[None].float()
        size = self.config.image_size
        if pixels.shape[-2:] != (size, size):
            pixels = F.interpolate(pixels, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        return (pixels / 127.5 - 1.0).to(self.dtype)

    def causal_lm(self) -> nn.Module:
        return self.llm

    def prompt_and_patches(self, image: np.ndarray, instruction: str, compiled: bool = True
                           ) -> tuple[torch.Tensor, torch.Tensor]:
        """(BOS + prompt token ids, (P, hidden) image tokens): the inputs of the language model's prefill.
        compiled=False runs the image encoder eager whatever `compile` said (the HF baseline does)."""
        validate_observation(image, instruction)
        ids = self._prompt_cache.get(instruction)
        if ids is None:
            if len(self._prompt_cache) >= PROMPT_CACHE_SIZE:
                self._prompt_cache.clear()
            ids = self._prompt_cache[instruction] = torch.tensor(self.text_tokenizer.prompt_ids(instruction),
                                                                 device=self.device)
        encode = self._encode if compiled else self._encode.eager
        return ids, encode(self.preprocess(image), ids)

    def image_tokens(self, pixels: torch.Tensor, prompt_ids: list[torch.Tensor]) -> torch.Tensor:
        """(B, 3, S, S) preprocessed images + their prompts' ids -> (B, P, hidden) language-model inputs.

        The one path from pixels to the language model, shared by decoding and training.
        """
        return self.projector(self.vision.forward_batch(pixels, prompt_ids))

    def encode_images(self, pixels: torch.Tensor, prompt_ids: torch.Tensor) -> torch.Tensor:
        """One preprocessed image (1, 3, S, S) and its prompt -> (P, hidden): what prefill compiles (the
        antialiased resize stays outside: inductor's C++ wrapper cannot call it)."""
        return self.image_tokens(pixels, [prompt_ids])[0]

    # ----- checkpoints ------------------------------------------------------------------------
    @classmethod
    def random(cls, config: TinyVLAConfig, seed: int, norm_stats: dict | None = None) -> "TinyVLA":
        """Seeded random weights (tests, benchmarks, the untrained demo).

        The LM head's rows for non-action tokens are zeroed: like a trained VLA, the model then only
        ever emits action tokens (a random action logit beats zero), which is what decoders expect.
        """
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = cls(config, norm_stats or default_norm_stats())
        with torch.no_grad():
            model.lm_head.weight[: model.action_tokenizer.first_action_token] = 0.0
        return model

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        meta = {"model_type": MODEL_TYPE, "config": self.config.to_dict(), "norm_stats": self.norm_stats,
                "n_action_bins": self.config.n_action_bins}
        (folder / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        save_file({k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}, folder / WEIGHTS_FILE)
        return folder

    @classmethod
    def load(cls, folder: str | Path, device: str = "cpu", dtype: torch.dtype = torch.float32) -> "TinyVLA":
        meta = read_config(folder, MODEL_TYPE)
        try:
            config = TinyVLAConfig(**meta["config"])
        except (KeyError, TypeError, ConfigError) as bad:
            raise CheckpointError(f"{Path(folder) / CONFIG_FILE} holds no valid tiny VLA config ({bad})") from None
        model = cls(config, meta.get("norm_stats", {}))
        load_weights(model, Path(folder) / WEIGHTS_FILE)
        return model.to(device=device, dtype=dtype)


def default_norm_stats() -> dict:
    """Statistics of the simulated tabletop's action space (metres and radians per step)."""
    return {"tabletop": {"action": {"q01": [-0.02, -0.02, -0.02, -0.1, -0.1, -0.1, 0.0],
                                    "q99": [0.02, 0.02, 0.02, 0.1, 0.1, 0.1, 1.0],
                                    "mask": [True] * 6 + [False]}}}
