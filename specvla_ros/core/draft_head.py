"""EAGLE-style draft head: predicts the target's next feature from (feature, next input embedding).

`fc: [embedding(token) ; target feature] (2H) -> H`, then one Llama decoder layer. The target's
embedding table and LM head are shared and frozen (not saved with the head), so the head's
vocabulary is the target's by construction. Decoding runs it through `step` over its own static
KV cache (the same lean forward as the target, core/static_llama.py); training runs `forward`,
the HF layer over a whole causal sequence.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn
from transformers import LlamaConfig
from transformers.models.llama.modeling_llama import LlamaDecoderLayer, LlamaRotaryEmbedding

from specvla_ros.core.backbone import Backbone, causal_mask
from specvla_ros.core.checkpoint import CONFIG_FILE, WEIGHTS_FILE, load_weights, read_config
from specvla_ros.core.errors import CheckpointError
from specvla_ros.core.static_llama import LlamaStack, StaticKVCache

MODEL_TYPE = "specvla-eagle-draft-head"


class DraftHead(nn.Module):
    def __init__(self, target: Backbone, num_heads: int, intermediate_size: int) -> None:
        super().__init__()
        hidden = target.hidden_size
        self.layer_config = LlamaConfig(hidden_size=hidden, intermediate_size=intermediate_size,
                                        num_attention_heads=num_heads, num_key_value_heads=num_heads,
                                        num_hidden_layers=1, vocab_size=target.vocab_size,
                                        attn_implementation="eager")
        self.fc = nn.Linear(2 * hidden, hidden)
        self.layer = LlamaDecoderLayer(self.layer_config, layer_idx=0)
        self.rotary = LlamaRotaryEmbedding(self.layer_config)
        # Shared with the target, frozen; kept out of state_dict (see _shared below).
        self._shared = (target.embed_tokens, target.lm_head)
        self._stack: LlamaStack | None = None
        self.eval()

    @property
    def embed_tokens(self) -> nn.Embedding:
        return self._shared[0]

    @property
    def lm_head(self) -> nn.Linear:
        return self._shared[1]

    def forward(self, embeds: torch.Tensor, features: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        """Training: pairs (embeds[i], features[i]) at position_ids[i], each seeing the pairs before
        it -> predicted next features (n, H)."""
        x = self.fc(torch.cat([embeds, features], dim=-1))[None]
        mask = torch.zeros(x.shape[1], x.shape[1], dtype=x.dtype, device=x.device)
        mask.masked_fill_(~causal_mask(x.shape[1], x.device), torch.finfo(x.dtype).min)
        positions = position_ids[None]
        x = self.layer(x, attention_mask=mask[None, None], position_ids=positions,
                       position_embeddings=self.rotary(x, positions))
        return x[0]

    # ----- decoding: the lean forward over a static cache ---------------------------------
    @property
    def stack(self) -> LlamaStack:
        if self._stack is None:
            self._stack = LlamaStack([self.layer], self.rotary)
        return self._stack

    def new_cache(self, capacity: int) -> StaticKVCache:
        weight = self.fc.weight
        return self.stack.new_cache(capacity, weight.device, weight.dtype)

    def step(self, cache: StaticKVCache, embeds: torch.Tensor, features: torch.Tensor, position_ids: torch.Tensor,
             visible: torch.Tensor) -> torch.Tensor:
        """Pairs (embeds[i], features[i]) at position_ids[i], appended to `cache` -> predicted next
        features (n, H). visible: (n, capacity) bool, what each new pair may attend to."""
        x = self.fc(torch.cat([embeds, features], dim=-1))
        return self.stack.forward(cache, x, position_ids, visible)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        return self.lm_head(features)

    # ----- checkpoints ------------------------------------------------------------------------
    @classmethod
    def random(cls, target: Backbone, seed: int, num_heads: int = 4, intermediate_size: int | None = None
               ) -> "DraftHead":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            head = cls(target, num_heads, intermediate_size or 2 * target.hidden_size)
        return head.to(device=target.device, dtype=target.dtype)

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        meta = {"model_type": MODEL_TYPE, "hidden_size": self.layer_config.hidden_size,
                "num_heads": self.layer_config.num_attention_heads,
                "intermediate_size": self.layer_config.intermediate_size,
                "vocab_size": self.layer_config.vocab_size}
        (folder / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        save_file({k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}, folder / WEIGHTS_FILE)
        return folder

    @classmethod
    def load(cls, folder: str | Path, target: Backbone) -> "DraftHead":
        meta = read_config(folder, MODEL_TYPE)
        config_file = Path(folder) / CONFIG_FILE
        sizes = ("hidden_size", "vocab_size", "num_heads", "intermediate_size")
        missing = [key for key in sizes if key not in meta]
        if missing:
            raise CheckpointError(f"{config_file} lacks {missing}: not a complete draft head checkpoint")
        for key in sizes:
            if isinstance(meta[key], bool) or not isinstance(meta[key], int) or meta[key] < 1:
                raise CheckpointError(f"draft head config {config_file}: {key} must be a positive integer, got "
                                      f"{meta[key]!r}: the file is corrupt (re-save the head with specvla train-draft)")
        if meta["hidden_size"] % meta["num_heads"]:
            raise CheckpointError(f"draft head config {config_file}: hidden_size {meta['hidden_size']} is not a "
                                  f"multiple of num_heads {meta['num_heads']}: the file is corrupt")
        if meta["hidden_size"] != target.hidden_size or meta["vocab_size"] != target.vocab_size:
            raise CheckpointError(
                f"draft head in {folder} was trained for hidden size {meta['hidden_size']} and vocabulary "
                f"{meta['vocab_size']}; the target has {target.hidden_size} and {target.vocab_size}: "
                "train a draft head for this target (specvla train-draft)")
        head = cls(target, meta["num_heads"], meta["intermediate_size"])
        load_weights(head, Path(folder) / WEIGHTS_FILE, what="draft head")
        return head.to(device=target.device, dtype=target.dtype)
