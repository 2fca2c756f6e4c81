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
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM

from specvla_ros.core.action_tokenizer import ActionTokenizer
from specvla_ros.core.backbone import (
    PrefillOutput,
    commit_path,
    llama_prefill,
    llama_tree_forward,
    validate_observation,
)
from specvla_ros.core.config import TinyVLAConfig
from specvla_ros.core.errors import CheckpointError, ConfigError
from specvla_ros.core.text_tokenizer import PieceTokenizer

MODEL_TYPE = "specvla-tiny-vla"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


def llama_config(config: TinyVLAConfig) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=config.vocab_size, hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size, num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads, num_key_value_heads=config.num_kv_heads,
        max_position_embeddings=config.max_position_embeddings, tie_word_embeddings=False,
        initializer_range=config.init_std, attn_implementation="eager",
    )


def grid_position_code(side: int, dim: int) -> torch.Tensor:
    """(side*side, dim) 2-D sine-cosine code of each patch's row and column (ViT/MAE style).

    Starting the learned position embedding here instead of at zero lets a fresh model tell where a
    patch is from step 0; learning that from scratch was most of the early training time.
    """
    quarter = dim // 4
    frequencies = 1.0 / (100.0 ** (torch.arange(quarter, dtype=torch.float32) / max(1, quarter)))
    rows, cols = torch.meshgrid(torch.arange(side, dtype=torch.float32), torch.arange(side, dtype=torch.float32),
                                indexing="ij")
    parts = []
    for coordinate in (rows.reshape(-1), cols.reshape(-1)):
        angles = coordinate[:, None] * frequencies[None]
        parts += [torch.sin(angles), torch.cos(angles)]
    return torch.cat(parts, dim=1)


def conv_stem(config: TinyVLAConfig) -> nn.Sequential:
    """log2(patch_size) 3x3 stride-2 convolutions: the same token grid as patchify, but each token's
    features come from local, translation-equivariant filters, which find small coloured objects in far
    fewer training steps than one linear map per patch."""
    layers: list[nn.Module] = []
    channels = 3
    halvings = config.patch_size.bit_length() - 1
    for index in range(halvings):
        width = config.vision_dim if index == halvings - 1 else min(config.vision_dim, 32 * 2 ** index)
        layers += [nn.Conv2d(channels, width, kernel_size=3, stride=2, padding=1)]
        if index < halvings - 1:
            layers.append(nn.GELU())
        channels = width
    return nn.Sequential(*layers)


class PatchEncoder(nn.Module):
    """Image (1, 3, S, S) in [-1, 1] -> (P, vision_dim) patch features."""

    def __init__(self, config: TinyVLAConfig) -> None:
        super().__init__()
        self.patchify = conv_stem(config) if config.vision_stem == "conv" else nn.Conv2d(
            3, config.vision_dim, kernel_size=config.patch_size, stride=config.patch_size)
        side = config.image_size // config.patch_size
        self.position = nn.Parameter(grid_position_code(side, config.vision_dim))
        layer = nn.TransformerEncoderLayer(config.vision_dim, nhead=4, dim_feedforward=2 * config.vision_dim,
                                           dropout=0.0, batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, config.vision_layers, enable_nested_tensor=False)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.forward_batch(pixels)[0]

    def forward_batch(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> (B, P, vision_dim)."""
        patches = self.patchify(pixels).flatten(2).transpose(1, 2) + self.position
        return self.blocks(patches)


class TinyVLA(nn.Module):
    """Implements the Backbone protocol (see core/backbone.py)."""

    def __init__(self, config: TinyVLAConfig, norm_stats: dict) -> None:
        super().__init__()
        self.config = config
        self.norm_stats = norm_stats
        self.vision = PatchEncoder(config)
        self.projector = nn.Sequential(nn.Linear(config.vision_dim, config.hidden_size), nn.GELU(),
                                       nn.Linear(config.hidden_size, config.hidden_size))
        self.llm = LlamaForCausalLM(llama_config(config))
        self.text_tokenizer = PieceTokenizer(config.text_pieces)
        self.action_tokenizer = ActionTokenizer(config.vocab_size, config.n_action_bins)
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

    def prefill(self, image: np.ndarray, instruction: str) -> PrefillOutput:
        validate_observation(image, instruction)
        patches = self.projector(self.vision(self.preprocess(image)))
        ids = torch.tensor(self.text_tokenizer.prompt_ids(instruction), device=self.device)
        return llama_prefill(self.llm, ids, patches)

    def forward(self, cache: DynamicCache, token_ids: torch.Tensor, position_ids: torch.Tensor,
                tree_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return llama_tree_forward(self.llm, cache, token_ids, position_ids, tree_mask)

    def commit(self, cache: DynamicCache, start: int, keep: torch.Tensor) -> None:
        commit_path(cache, start, keep)

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


def read_config(folder: str | Path, model_type: str | None) -> dict:
    """Parse folder/config.json; with `model_type`, insist the checkpoint is of that type."""
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{path} not found: a checkpoint folder holds {CONFIG_FILE} and {WEIGHTS_FILE}")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as bad:
        raise CheckpointError(f"{path} is not valid JSON ({bad}): the checkpoint is corrupt") from None
    if not isinstance(meta, dict) or (model_type is not None and meta.get("model_type") != model_type):
        found = meta.get("model_type") if isinstance(meta, dict) else None
        raise CheckpointError(f"{path} describes a '{found}' model, expected '{model_type}'")
    return meta


def load_weights(module: nn.Module, path: Path, ignore: tuple[str, ...] = ()) -> None:
    """Load safetensors into `module`, naming the first missing or misshapen tensor."""
    if not path.is_file():
        pickles = sorted(p.name for p in path.parent.glob("*.bin")) + sorted(p.name for p in path.parent.glob("*.pt"))
        hint = f" (found {', '.join(pickles)}: pickle files are not loaded, convert them to safetensors)" \
            if pickles else ""
        raise CheckpointError(f"{path} not found{hint}")
    try:
        tensors = load_file(path)
    except (SafetensorError, OSError) as bad:
        raise CheckpointError(f"{path} is not a readable safetensors file ({bad})") from None
    expected = {k: v for k, v in module.state_dict().items() if not k.startswith(ignore)}
    for name, value in expected.items():
        if name not in tensors:
            raise CheckpointError(f"{path.name} lacks tensor '{name}': the checkpoint is incomplete or for "
                                  "another model")
        if tensors[name].shape != value.shape:
            raise CheckpointError(f"{path.name}: tensor '{name}' has shape {tuple(tensors[name].shape)}, "
                                  f"the model expects {tuple(value.shape)}")
    unexpected = sorted(set(tensors) - set(expected))
    if unexpected:
        raise CheckpointError(f"{path.name} holds tensors this model does not have, e.g. '{unexpected[0]}'")
    module.load_state_dict(tensors, strict=False)
