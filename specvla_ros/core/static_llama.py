"""A lean Llama forward over a Hugging Face model's own modules, with a static KV cache.

Why: on the targets this package runs, Hugging Face's per-call glue (cache objects that grow,
mask building, keyword plumbing) costs more than the arithmetic of one decode step: 1.2 ms per
step through `LlamaModel` against 0.7 ms for the same math here, 0.3 ms compiled (tabletop target,
one CPU thread). HF's own StaticCache compiled came to 0.55 ms and can only append, while a
draft tree needs entries written at chosen slots and moved on commit. So, as in gpt-fast: one
preallocated cache written in place, one plain function per forward that torch.compile captures
whole. The projections, norms and MLP are the HF modules themselves (no copied modeling code);
only attention and the cache live here. Logits match HF's to float32 rounding (test/core).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class StaticKVCache:
    """Keys and values of every layer, preallocated; entries [0, length) are in use.

    keys, values: (layers, kv_heads, capacity, head_dim). A forward writes its entries from
    `length` on and advances it; `keep` moves accepted entries into place after a verify.
    """

    keys: torch.Tensor
    values: torch.Tensor
    length: int = 0

    @property
    def capacity(self) -> int:
        return self.keys.shape[2]

    def check_room(self, count: int) -> None:
        if self.length + count > self.capacity:
            raise ValueError(f"KV cache full: {self.length} + {count} entries > capacity {self.capacity}")

    def keep(self, start: int, rows: torch.Tensor) -> None:
        """Keep entries [0, start), then entries start + rows (a device tensor, in order)."""
        count = rows.numel()
        source = rows + start
        # Advanced indexing copies before the write, so overlapping ranges are safe.
        self.keys[:, :, start:start + count] = self.keys[:, :, source]
        self.values[:, :, start:start + count] = self.values[:, :, source]
        self.length = start + count


def causal_visibility(cache: StaticKVCache, count: int, device: torch.device | str) -> torch.Tensor:
    """(count, capacity) bool for `count` new entries in a chain: all cached entries, then causal."""
    return tree_visibility(cache, torch.ones(count, count, dtype=torch.bool, device=device).tril())


def visibility_after(length: torch.Tensor, tree_mask: torch.Tensor, capacity: int) -> torch.Tensor:
    """tree_visibility as pure tensor arithmetic (length a 0-d tensor), for compiled step functions:
    columns before `length` visible, columns length.. length + n as tree_mask (n, n) says."""
    count = tree_mask.shape[0]
    columns = torch.arange(capacity, device=tree_mask.device)
    relative = columns - length
    inside = (relative >= 0) & (relative < count)
    return (columns < length)[None, :] | (tree_mask[:, relative.clamp(0, count - 1)] & inside[None, :])


def tree_visibility(cache: StaticKVCache, tree_mask: torch.Tensor) -> torch.Tensor:
    """(n, n) bool visibility among n new entries -> (n, capacity): every cached entry visible too."""
    count = tree_mask.shape[0]
    cache.check_room(count)
    visible = torch.zeros(count, cache.capacity, dtype=torch.bool, device=tree_mask.device)
    visible[:, :cache.length] = True
    visible[:, cache.length:cache.length + count] = tree_mask
    return visible


class LlamaStack:
    """Llama decoder layers (+ an optional final norm) run over a StaticKVCache.

    Holds references to the HF modules, so moving or loading the model in place is seen here.
    `layers_forward` is the math as one plain function of tensors (what torch.compile captures
    inside the decoders' step functions); `forward` is the eager convenience over a cache.
    """

    def __init__(self, layers: Sequence[nn.Module], rotary: nn.Module, norm: nn.Module | None = None) -> None:
        self.layers = list(layers)
        self.rotary = rotary
        self.norm = norm
        attention = self.layers[0].self_attn
        self.head_dim = attention.head_dim
        self.num_heads = attention.q_proj.out_features // self.head_dim
        self.num_kv_heads = attention.k_proj.out_features // self.head_dim
        self._tables: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def device(self) -> torch.device:
        return self.layers[0].input_layernorm.weight.device

    def new_cache(self, capacity: int, device: torch.device, dtype: torch.dtype) -> StaticKVCache:
        shape = (len(self.layers), self.num_kv_heads, capacity, self.head_dim)
        cache = StaticKVCache(torch.zeros(shape, device=device, dtype=dtype), torch.zeros(shape, device=device, dtype=dtype))
        # The step functions write into these in place: CUDA graphs replay such writes only on tensors
        # that keep one address for good (reduce-overhead would otherwise skip the graphs).
        torch._dynamo.mark_static_address(cache.keys)
        torch._dynamo.mark_static_address(cache.values)
        return cache

    def rotary_tables(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos / sin for every position (max_position_embeddings rows), from the HF rotary module
        itself (any rope type), in `like`'s device and dtype; made once."""
        tables = self._tables
        if tables is None or tables[0].device != like.device or tables[0].dtype != like.dtype:
            positions = torch.arange(self.rotary.max_seq_len_cached, device=like.device)[None]
            cos, sin = self.rotary(like, positions)
            tables = self._tables = (cos[0], sin[0])
        return tables

    def forward(self, cache: StaticKVCache, x: torch.Tensor, positions: torch.Tensor,
                visible: torch.Tensor) -> torch.Tensor:
        """Eager: x (n, H) inputs at `positions` (n,), appended to `cache`; visible (n, capacity) bool
        -> hidden (n, H)."""
        count = x.shape[0]
        cache.check_room(count)
        cos, sin = self.rotary_tables(x)
        slots = torch.arange(cache.length, cache.length + count, device=x.device)
        hidden = self.layers_forward(x, positions, cos, sin, slots, visible, cache.keys, cache.values)
        cache.length += count
        return hidden

    def layers_forward(self, x: torch.Tensor, positions: torch.Tensor, cos_table: torch.Tensor,
                       sin_table: torch.Tensor, slots: torch.Tensor, visible: torch.Tensor, keys: torch.Tensor,
                       values: torch.Tensor) -> torch.Tensor:
        """The stack: rows x (n, H) at `positions`, their keys / values written at cache `slots`, each
        row attending to the cache columns `visible` (n, capacity) marks -> (n, H)."""
        count = x.shape[0]
        cos, sin = cos_table[positions][None, None], sin_table[positions][None, None]
        mask = visible[None, None]
        for index, layer in enumerate(self.layers):
            attention = layer.self_attn
            h = layer.input_layernorm(x)
            q = attention.q_proj(h).view(count, self.num_heads, self.head_dim).transpose(0, 1)[None]
            k = attention.k_proj(h).view(count, self.num_kv_heads, self.head_dim).transpose(0, 1)[None]
            v = attention.v_proj(h).view(count, self.num_kv_heads, self.head_dim).transpose(0, 1)[None]
            q = q * cos + _rotate_half(q) * sin
            k = k * cos + _rotate_half(k) * sin
            keys[index].index_copy_(1, slots, k[0])
            values[index].index_copy_(1, slots, v[0])
            out = F.scaled_dot_product_attention(q, keys[index][None], values[index][None], attn_mask=mask,
                                                 enable_gqa=self.num_kv_heads != self.num_heads)
            x = x + attention.o_proj(out[0].transpose(0, 1).reshape(count, self.num_heads * self.head_dim))
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        return self.norm(x) if self.norm is not None else x


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat([-second, first], dim=-1)
