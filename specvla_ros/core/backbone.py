"""What a decoder needs from a VLA, and the language-model half every backbone shares.

The decoders never reach into a model: they call `prefill`, `forward` (new tokens with explicit
positions and an attention mask over them, for a chain or a tree) and `commit` (keep only the
accepted entries). Trees are passed as plain tensors, never stashed on the model. The KV cache is
a StaticKVCache (core/static_llama.py): allocated once, written in place, reused across decodes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import nn

from specvla_ros.core.action_tokenizer import ActionTokenizer
from specvla_ros.core.compilation import CompiledFunction, CompileMode
from specvla_ros.core.errors import InputError
from specvla_ros.core.static_llama import LlamaStack, StaticKVCache, visibility_after

CACHE_GRANULE = 64  # cache capacities are rounded up to this, so a new prompt length rarely means a new cache


@dataclass
class PrefillOutput:
    """Target state after reading image + prompt.

    hidden: (L, H) final-layer features of every prefix position (the draft head reads them);
    next_embeds: (L - 1, H) input embeddings of positions 1..L-1 (EAGLE pairs feature i with the
    input at i + 1); logits_last: (V,) logits at the last position.
    """

    cache: StaticKVCache
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

    def prefill(self, image: np.ndarray, instruction: str, cache: StaticKVCache | None = None,
                reserve: int = 8) -> PrefillOutput:
        """Read image + prompt into `cache` (reused when it holds the prefix + `reserve` more entries,
        else a new one is made and returned in the output)."""
        ...

    def forward(self, cache: StaticKVCache, token_ids: torch.Tensor, position_ids: torch.Tensor,
                tree_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append len(token_ids) entries; tree_mask (n, n) bool says which new tokens each one sees
        (itself included); all cached entries are visible. Returns (logits (n, V), hidden (n, H))."""
        ...

    def commit(self, cache: StaticKVCache, start: int, keep: torch.Tensor) -> None:
        """Keep the first `start` cache entries, then entries start + keep (indices into the last forward)."""
        ...

    def compile(self, mode: CompileMode) -> None:
        """torch.compile the language model's forward ("off" = eager)."""
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


def causal_mask(n: int, device: torch.device | str) -> torch.Tensor:
    return torch.ones(n, n, dtype=torch.bool, device=device).tril()


def cache_capacity(entries: int) -> int:
    """Room for `entries`, rounded up to CACHE_GRANULE."""
    return -(-entries // CACHE_GRANULE) * CACHE_GRANULE


class LlamaLanguageModel:
    """The language-model half every OpenVLA-shaped backbone shares: a HF causal LM's weights run
    through LlamaStack over a static cache. Not an nn.Module: it only points at the model's modules.

    Two step functions, each one graph when compiled: `_prefill_math` (a prompt, causal, last
    logits) and `step_math` (new tokens after the cache under a tree mask, every row's logits).
    """

    def __init__(self, causal_lm: nn.Module) -> None:
        self.causal_lm = causal_lm
        model = causal_lm.model
        self.stack = LlamaStack(model.layers, model.rotary_emb, model.norm)
        self.compile("off")

    def compile(self, mode: CompileMode) -> None:
        """Compile (or not) the two step functions; asking again for the same mode keeps the graphs
        already made (every decoder over this model shares them)."""
        if getattr(self, "step", None) is not None and self.step.mode == mode:
            return
        device_type = self.stack.device.type
        self._prefill = CompiledFunction(self._prefill_math, mode, device_type)
        self.step = CompiledFunction(self.step_math, mode, device_type)

    @property
    def compiled(self) -> bool:
        return self.step.compiled

    def embed(self, token_ids: torch.Tensor) -> torch.Tensor:
        return self.causal_lm.model.embed_tokens(token_ids)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.causal_lm.lm_head(hidden)

    def new_cache(self, capacity: int) -> StaticKVCache:
        weight = self.causal_lm.lm_head.weight
        return self.stack.new_cache(capacity, weight.device, weight.dtype)

    def _prefill_math(self, embeds: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, keys: torch.Tensor,
                      values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rows = torch.arange(embeds.shape[0], device=embeds.device)
        columns = torch.arange(keys.shape[2], device=embeds.device)
        hidden = self.stack.layers_forward(embeds, rows, cos, sin, rows, columns[None, :] <= rows[:, None], keys, values)
        return hidden, self.logits(hidden[-1])

    def step_math(self, token_ids: torch.Tensor, positions: torch.Tensor, tree_mask: torch.Tensor,
                  length: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, keys: torch.Tensor,
                  values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """token_ids (n,) at `positions`, written after the first `length` (0-d) cache entries, which
        they all see; among themselves as tree_mask (n, n) says -> (logits (n, V), hidden (n, H))."""
        slots = length + torch.arange(token_ids.shape[0], device=token_ids.device)
        visible = visibility_after(length, tree_mask, keys.shape[2])
        hidden = self.stack.layers_forward(self.embed(token_ids), positions, cos, sin, slots, visible, keys, values)
        return self.logits(hidden), hidden

    def prefix_embeds(self, prompt_ids: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
        """OpenVLA's sequence, [BOS][image patches][prompt]: prompt_ids = BOS + prompt token ids,
        patches (P, H) projected patch embeddings -> the language model's input embeddings."""
        text = self.embed(prompt_ids)
        return torch.cat([text[:1], patches, text[1:]])

    def cache_for(self, entries: int, cache: StaticKVCache | None) -> StaticKVCache:
        """`cache` when it has room for `entries`, else a new one (rounded up to CACHE_GRANULE)."""
        if cache is None or cache.capacity < entries:
            cache = self.new_cache(cache_capacity(entries))
        return cache

    def prefill(self, prompt_ids: torch.Tensor, patches: torch.Tensor, cache: StaticKVCache | None,
                reserve: int) -> PrefillOutput:
        """Read the prompt into `cache` (or a new one with room for `reserve` more entries)."""
        embeds = self.prefix_embeds(prompt_ids, patches)
        count = embeds.shape[0]
        cache = self.cache_for(count + reserve, cache)
        cos, sin = self.stack.rotary_tables(embeds)
        hidden, logits_last = self._prefill(embeds, cos, sin, cache.keys, cache.values)
        cache.length = count
        return PrefillOutput(cache=cache, hidden=hidden, next_embeds=embeds[1:], logits_last=logits_last)

    def forward(self, cache: StaticKVCache, token_ids: torch.Tensor, position_ids: torch.Tensor,
                tree_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        count = token_ids.shape[0]
        cache.check_room(count)
        length = torch.tensor(cache.length, device=token_ids.device)
        cos, sin = self.stack.rotary_tables(cache.keys)
        logits, hidden = self.step(token_ids, position_ids, tree_mask, length, cos, sin, cache.keys, cache.values)
        cache.length += count
        return logits, hidden

    @staticmethod
    def commit(cache: StaticKVCache, start: int, keep: torch.Tensor) -> None:
        cache.keep(start, keep.to(device=cache.keys.device, dtype=torch.long))


class LlamaVLA(nn.Module):
    """What every backbone here shares around its LlamaLanguageModel: prefill, forward, commit and
    compile of the Backbone protocol, and the image encoder that compiles with them.

    A subclass builds its modules after `super().__init__()`, names its HF causal LM in
    `causal_lm()` and its image encoder (what compiles) in `encode_images`, and provides `device`,
    `dtype` and `prompt_and_patches` (prompt ids and image tokens, from `self._encode`).
    """

    def __init__(self) -> None:
        super().__init__()
        self._language: LlamaLanguageModel | None = None
        self._encode = CompiledFunction(self.encode_images, "off")

    def causal_lm(self) -> nn.Module:
        raise NotImplementedError

    def encode_images(self, *inputs: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def prompt_and_patches(self, image: np.ndarray, instruction: str, compiled: bool = True
                           ) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    @property
    def language(self) -> LlamaLanguageModel:
        """The static-cache language model over the causal LM (made on first use: after loading, so an
        OpenVLA checkpoint's rebuilt rotary frequencies are the ones it reads)."""
        if self._language is None:
            self._language = LlamaLanguageModel(self.causal_lm())
        return self._language

    def prefill(self, image: np.ndarray, instruction: str, cache: StaticKVCache | None = None,
                reserve: int = 8) -> PrefillOutput:
        ids, patches = self.prompt_and_patches(image, instruction)
        return self.language.prefill(ids, patches, cache, reserve)

    def forward(self, cache: StaticKVCache, token_ids: torch.Tensor, position_ids: torch.Tensor,
                tree_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.language.forward(cache, token_ids, position_ids, tree_mask)

    def commit(self, cache: StaticKVCache, start: int, keep: torch.Tensor) -> None:
        self.language.commit(cache, start, keep)

    def compile(self, mode: CompileMode) -> None:
        """Compile the image encoder and the language model's step functions ("off" = eager)."""
        self.language.compile(mode)
        if self._encode.mode != mode:
            self._encode = CompiledFunction(self.encode_images, mode, self.device.type)
