"""Per-frame costs of the two draft-head stages at OpenVLA-7B's shape, measured on this machine.

    .venv/bin/python tools/draft_head_costs.py [--device cpu|cuda] [--dtype float32|bfloat16] [--repeats 3]

Extraction: one Llama-2-7B decoder layer (hidden 4096, MLP 11008, 32 heads) over OpenVLA's prefix
(BOS + 256 patches + a 20-token prompt = 277 rows) and six one-token steps over a KV cache, plus
the LM head; a frame costs 32 such layers (the vision encoders, ~0.7 B parameters over 256 patches
each, are not included: about 10 % of the prefill's FLOPs). Training: one step of the draft head at
that size (fc 8192 -> 4096 + one decoder layer, frozen 32064 x 4096 LM head) on one cached frame,
forward, backward and AdamW. Prints one JSON line. docs/training.md turns it into hours per 100k frames.
"""
from __future__ import annotations

import argparse
import json
import time
from types import SimpleNamespace

import torch
from transformers import LlamaConfig
from transformers.models.llama.modeling_llama import LlamaDecoderLayer, LlamaRotaryEmbedding

from specvla_ros.core.draft_head import DraftHead
from specvla_ros.training.draft_trainer import TargetSequence, pair_loss

HIDDEN, MLP, HEADS, LAYERS, VOCAB, PREFIX = 4096, 11008, 32, 32, 32064, 277


def _timed(function, repeats: int, sync) -> float:
    function()  # warm-up
    sync()
    started = time.perf_counter()
    for _ in range(repeats):
        function()
    sync()
    return (time.perf_counter() - started) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=HIDDEN, intermediate_size=MLP, num_attention_heads=HEADS,
                         num_key_value_heads=HEADS, num_hidden_layers=1, vocab_size=VOCAB, attn_implementation="sdpa")
    layer = LlamaDecoderLayer(config, layer_idx=0).to(device, dtype).eval()
    rotary = LlamaRotaryEmbedding(config).to(device)
    lm_head = torch.nn.Linear(HIDDEN, VOCAB, bias=False).to(device, dtype)

    @torch.no_grad()
    def extraction_layer() -> None:
        x = torch.randn(1, PREFIX, HIDDEN, device=device, dtype=dtype)
        positions = torch.arange(PREFIX, device=device)[None]
        mask = torch.full((PREFIX, PREFIX), float("-inf"), device=device, dtype=dtype).triu(1)[None, None]
        layer(x, attention_mask=mask, position_ids=positions, position_embeddings=rotary(x, positions))
        keys = torch.randn(1, HEADS, PREFIX + 6, HIDDEN // HEADS, device=device, dtype=dtype)
        for step in range(6):  # one new token over the cache: the projections dominate, as in decoding
            one = torch.randn(1, 1, HIDDEN, device=device, dtype=dtype)
            position = torch.tensor([[PREFIX + step]], device=device)
            layer(one, position_ids=position, position_embeddings=rotary(one, position))
            torch.matmul(keys[:, :, : PREFIX + step], keys[:, :, :1].transpose(-1, -2))

    @torch.no_grad()
    def lm_head_rows() -> None:
        lm_head(torch.randn(7, HIDDEN, device=device, dtype=dtype))

    layer_s = _timed(extraction_layer, args.repeats, sync)
    head_s = _timed(lm_head_rows, args.repeats, sync)
    layer.cpu()  # free the GPU for the head (a no-op on the CPU)
    target = SimpleNamespace(hidden_size=HIDDEN, vocab_size=VOCAB, device=device, dtype=dtype,
                             embed_tokens=torch.nn.Embedding(VOCAB, HIDDEN).to(device, dtype), lm_head=lm_head)
    head = DraftHead.random(target, seed=0, num_heads=HEADS, intermediate_size=MLP)
    for parameter in (target.embed_tokens.weight, lm_head.weight):
        parameter.requires_grad_(False)
    optimizer = torch.optim.AdamW(head.parameters(), lr=1e-4)
    rows = PREFIX + 5
    features = torch.randn(rows + 1, HIDDEN, device=device, dtype=dtype)
    with torch.no_grad():
        logits = lm_head(features[-6:])
    sequence = TargetSequence(features=features[:-1], embeds=torch.randn(rows, HIDDEN, device=device, dtype=dtype),
                              next_features=features[1:], next_logits=logits, first_action_pair=PREFIX - 1)

    def train_step() -> None:
        optimizer.zero_grad()
        pair_loss(head, lm_head, sequence, 0.2, 1.0, 0.1, torch.Generator().manual_seed(0)).backward()
        optimizer.step()

    head.train()
    train_s = _timed(train_step, args.repeats, sync)
    frame_bytes = (2 * (PREFIX + 6) - 1) * HIDDEN * torch.tensor([], dtype=dtype).element_size()
    print(json.dumps({
        "device": str(device), "dtype": args.dtype, "threads": torch.get_num_threads(),
        "extraction_one_layer_s": round(layer_s, 4), "lm_head_s": round(head_s, 4),
        "extraction_frame_s": round(LAYERS * layer_s + head_s, 3),
        "draft_head_parameters_m": round(sum(p.numel() for p in head.parameters()) / 1e6, 1),
        "train_step_one_frame_s": round(train_s, 4), "cache_bytes_per_frame": frame_bytes}))


if __name__ == "__main__":
    main()
