"""What a decoder needs from a VLA, and the KV-cache surgery every backbone shares.

The decoders never reach into a model: they call `prefill`, `forward` (new tokens with explicit
positions and an attention mask over them, for a chain or a tree) and `commit` (keep only the
accepted entries). Trees are passed as plain tensors, never stashed on the model.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from transformers import DynamicCache

from specvla_ros.core.action_tokenizer import ActionTokenizer
from specvla_ros.core.errors import InputError


@dataclass
class PrefillOutput:
    """Target state after reading image + prompt.

    hidden: (L, H) final-layer features of every prefix position (the draft head reads them);
    next_embeds: (L - 1, H) input embeddings of positions 1..L-1 (EAGLE pairs feature i with the
    input at i + 1); logits_last: (V,) logits at the last position.
    """

    cache: DynamicCache
    hidden: torch.Tensor
    next_embeds: torch.Tensor
    logits_last: torch.Tensor

    @property
    def prefix_len(self) -> int:
        return self.hidden.shape[0]


class Backbone(Protocol):
    action_tokenizer: ActionTokenizer
    norm_stats: dict
    device: torch.device
    dtype: torch.dtype
    hidden_size: int
    vocab_size: int
    embed_tokens: torch.nn.Embedding
    lm_head: torch.nn.Linear

    def prefill(self, image: np.ndarray, instruction: str) -> PrefillOutput: ...

    def forward(self, cache: DynamicCache, token_ids: torch.Tensor, position_ids: torch.Tensor,
                tree_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append len(token_ids) entries; tree_mask (n, n) bool says which new tokens each one sees
        (itself included); all cached entries are visible. Returns (logits (n, V), hidden (n, H))."""
        ...

    def commit(self, cache: DynamicCache, start: int, keep: torch.Tensor) -> None:
        """Keep the first `start` cache entries, then entries start + keep (indices into the last forward)."""
        ...


def validate_observation(image: np.ndarray, instruction: str) -> None:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", type(image).__name__)
        raise InputError(f"image must be an (H, W, 3) RGB array, got {shape}")
    if image.dtype != np.uint8:
        raise InputError(f"image must be uint8 RGB, got dtype {image.dtype}; convert with (x * 255).astype(np.uint8)")
    if image.shape[0] < 2 or image.shape[1] < 2:
        raise InputError(f"image is too small ({image.shape[1]}x{image.shape[0]} pixels)")
    if not isinstance(instruction, str) or not instruction.strip():
        raise InputError("instruction is empty: give the task in words, e.g. 'pick up the red cube'")


def additive_mask(tree_mask: torch.Tensor, past_len: int, dtype: torch.dtype) -> torch.Tensor:
    """(n, n) bool visibility among new tokens, every cached entry visible -> (1, 1, n, past + n)."""
    n = tree_mask.shape[0]
    visible = torch.ones(n, past_len + n, dtype=torch.bool, device=tree_mask.device)
    visible[:, past_len:] = tree_mask
    return visibility_to_additive(visible, dtype)


def visibility_to_additive(visible: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(n, past + n) bool -> (1, 1, n, past + n) additive attention mask (0 where visible, -inf not)."""
    mask = torch.zeros(visible.shape, dtype=dtype, device=visible.device)
    mask.masked_fill_(~visible, torch.finfo(dtype).min)
    return mask[None, None]


def causal_mask(n: int, device: torch.device) -> torch.Tensor:
    return torch.ones(n, n, dtype=torch.bool, device=device).tril()


def cache_length(cache: DynamicCache) -> int:
    return cache.get_seq_length()


def keep_cache_entries(cache: DynamicCache, keep_len: int, extra: torch.Tensor | None = None) -> None:
    """Keep the first `keep_len` entries, then the entries at absolute indices `extra` (in order)."""
    for layer in cache.layers:
        if extra is None or extra.numel() == 0:
            layer.keys = layer.keys[:, :, :keep_len]
            layer.values = layer.values[:, :, :keep_len]
            continue
        index = torch.cat([torch.arange(keep_len, device=extra.device), extra])
        layer.keys = layer.keys.index_select(2, index)
        layer.values = layer.values.index_select(2, index)


# ----- the language-model half that every OpenVLA-shaped backbone shares ------------------------
def llama_prefill(causal_lm: torch.nn.Module, prompt_ids: torch.Tensor, patches: torch.Tensor) -> PrefillOutput:
    """Run OpenVLA's sequence, [BOS][image patches][prompt], through a HF causal LM with a fresh KV cache.

    prompt_ids: BOS + prompt token ids; patches: (P, H) projected patch embeddings.
    """
    text = causal_lm.model.embed_tokens(prompt_ids)
    embeds = torch.cat([text[:1], patches, text[1:]])
    cache = DynamicCache()
    hidden = causal_lm.model(inputs_embeds=embeds[None], cache=cache, use_cache=True).last_hidden_state[0]
    return PrefillOutput(cache=cache, hidden=hidden, next_embeds=embeds[1:],
                         logits_last=causal_lm.lm_head(hidden[-1]))


def llama_tree_forward(causal_lm: torch.nn.Module, cache: DynamicCache, token_ids: torch.Tensor,
                       position_ids: torch.Tensor, tree_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Backbone.forward for a HF causal LM: the tree's tokens under its ancestor mask -> (logits, hidden)."""
    mask = additive_mask(tree_mask, cache_length(cache), causal_lm.lm_head.weight.dtype)
    out = causal_lm.model(input_ids=token_ids[None], position_ids=position_ids[None], attention_mask=mask,
                          cache=cache, use_cache=True)
    hidden = out.last_hidden_state[0]
    return causal_lm.lm_head(hidden), hidden


def commit_path(cache: DynamicCache, start: int, keep: torch.Tensor) -> None:
    """Backbone.commit: keep the prefix before `start`, then the tree entries `keep` (relative to start)."""
    keep_cache_entries(cache, start, start + keep.to(device=cache.layers[0].keys.device, dtype=torch.long))
