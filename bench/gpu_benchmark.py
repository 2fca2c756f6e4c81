#!/usr/bin/env python3
"""Latency of the pieces of a Spec-VLA step on an OpenVLA-7B-shaped backbone, and the speedup they imply.

    python bench/gpu_benchmark.py --out results.json                # on one GPU, bf16 (< 8 min on an H200)
    python bench/gpu_benchmark.py --dry-run --out /tmp/gpu.json     # tiny shapes on CPU (CI smoke test)

Needs only torch and transformers (what the GPU machine has; see bench/gpu.sh). Builds a Llama-2-7B
shaped language model with random weights (OpenVLA's: hidden 4096, 32 layers, vocabulary 32064),
feeds it OpenVLA's sequence (BOS + 256 patch embeddings + a ~20-token prompt) and times:
  * prefill of that sequence; one decode step (1 token on the KV cache);
  * a tree verify of 8 / 16 / 32 / 64 tokens (4-D ancestor mask, as the decoder sends it);
  * one draft step: the EAGLE head (fc 2H -> H, one Llama layer, the frozen LM head) on k tokens.
Random weights do not change these times. From them it computes the end-to-end speedup of
Spec-VLA over AR at given acceptance lengths (tokens per verify step):
    AR   = prefill + 6 decode steps                    (the first action token comes from prefill)
    Spec = prefill + ceil(6 / tau) * (depth draft steps + 1 verify of total_tokens)
The vision tower is left out: it runs once per action in both modes and adds the same time to each.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import time
from pathlib import Path

import torch
from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM
from transformers.models.llama.modeling_llama import LlamaDecoderLayer, LlamaRotaryEmbedding

PATCHES, PROMPT = 256, 20
# Acceptance lengths to project: the paper's (LIBERO-Goal, exact / relaxed) and a range.
DEFAULT_TAUS = (1.0, 1.5, 2.04, 2.94, 3.5, 4.0, 5.0)


def llama_config(dry_run: bool) -> LlamaConfig:
    if dry_run:
        return LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                           num_key_value_heads=4, vocab_size=640, attn_implementation="sdpa")
    return LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                       num_key_value_heads=32, vocab_size=32064, rms_norm_eps=1e-6, attn_implementation="sdpa")


class TimedDevice:
    """Median wall time of a callable, with CUDA synchronisation when on a GPU."""

    def __init__(self, device: torch.device, repeats: int, warmup: int) -> None:
        self.device, self.repeats, self.warmup = device, repeats, warmup

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def median_ms(self, run) -> float:
        for _ in range(self.warmup):
            run()
        times = []
        for _ in range(self.repeats):
            self.sync()
            started = time.perf_counter()
            run()
            self.sync()
            times.append((time.perf_counter() - started) * 1e3)
        return statistics.median(times)


def tree_mask(size: int, prefix: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(1, 1, size, prefix + size) additive mask: every node sees the prefix and a chain of ancestors
    (a binary-ish tree: node i's parent is (i - 1) // 2), as a verify step sends it."""
    allowed = torch.zeros(size, prefix + size, dtype=torch.bool, device=device)
    allowed[:, :prefix] = True
    for node in range(size):
        ancestor = node
        while ancestor >= 0:
            allowed[node, prefix + ancestor] = True
            ancestor = (ancestor - 1) // 2 if ancestor > 0 else -1
    mask = torch.zeros(allowed.shape, dtype=dtype, device=device)
    mask[~allowed] = torch.finfo(dtype).min
    return mask[None, None]


def measure(args: argparse.Namespace) -> dict:
    device = torch.device("cpu" if args.dry_run or not torch.cuda.is_available() else "cuda")
    dtype = torch.float32 if device.type == "cpu" else torch.bfloat16
    config = llama_config(args.dry_run)
    timer = TimedDevice(device, repeats=args.repeats, warmup=args.warmup)
    started = time.perf_counter()
    with torch.device(device):
        model = LlamaForCausalLM(config).to(dtype).eval()
    build_s = time.perf_counter() - started
    hidden = config.hidden_size
    prefix = 1 + PATCHES + PROMPT
    embeds = torch.randn(1, prefix, hidden, device=device, dtype=dtype) * 0.02

    results: dict = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.machine(),
                     "dtype": str(dtype).replace("torch.", ""), "dry_run": args.dry_run,
                     "model": {"hidden": hidden, "layers": config.num_hidden_layers, "vocab": config.vocab_size},
                     "prefix_tokens": prefix, "build_s": round(build_s, 1), "torch": torch.__version__}

    def prefill() -> DynamicCache:
        cache = DynamicCache()
        out = model(inputs_embeds=embeds, cache=cache, use_cache=True)
        out.logits[:, -1].argmax(-1)
        return cache

    with torch.inference_mode():
        results["prefill_ms"] = timer.median_ms(prefill)
        base = prefill()

        copy_ms = timer.median_ms(lambda: _copy_cache(base))
        results["cache_copy_ms"] = copy_ms

        def step(tokens: int, mask: torch.Tensor | None):
            """A forward of `tokens` new tokens on a fresh copy of the prefix cache (the copy is subtracted)."""
            ids = torch.randint(0, config.vocab_size, (1, tokens), device=device)
            positions = torch.arange(prefix, prefix + tokens, device=device)[None]

            def run() -> None:
                out = model(input_ids=ids, position_ids=positions, attention_mask=mask, cache=_copy_cache(base),
                            use_cache=True)
                out.logits.argmax(-1)
            return max(0.0, timer.median_ms(run) - copy_ms)

        results["decode_step_ms"] = step(1, None)
        results["verify_ms"] = {str(size): step(size, tree_mask(size, prefix, device, dtype))
                                for size in args.tree_sizes}

        # The EAGLE draft head: fc (2H -> H), one decoder layer, the target's LM head.
        with torch.device(device):
            fc = torch.nn.Linear(2 * hidden, hidden).to(dtype)
            layer = LlamaDecoderLayer(config, layer_idx=0).to(dtype).eval()
            rotary = LlamaRotaryEmbedding(config).to(device)
        results["draft_step_ms"] = {}
        for tokens in args.draft_tokens:
            features = torch.randn(1, tokens, 2 * hidden, device=device, dtype=dtype)
            positions = torch.arange(prefix, prefix + tokens, device=device)[None]

            def draft(features=features, positions=positions) -> None:
                x = fc(features)
                x = layer(x, position_embeddings=rotary(x, positions), attention_mask=None)
                x = x[0] if isinstance(x, tuple) else x
                torch.log_softmax(model.lm_head(x).float(), dim=-1).topk(8, dim=-1)

            results["draft_step_ms"][str(tokens)] = timer.median_ms(draft)
    results["projection"] = project(results, args.taus, args.depth, args.total_tokens, args.draft_tokens)
    results["wall_s"] = round(time.perf_counter() - started, 1)
    return results


def _copy_cache(cache: DynamicCache) -> DynamicCache:
    """A fresh cache holding the same prefix (each timed step must start from the prefix only)."""
    copy = DynamicCache()
    for index, layer in enumerate(cache.layers):
        copy.update(layer.keys.clone(), layer.values.clone(), index)
    return copy


def project(results: dict, taus, depth: int, total_tokens: int, draft_tokens) -> list[dict]:
    """Expected AR and Spec-VLA time per action at each acceptance length, from the measured pieces."""
    verify_sizes = sorted(int(k) for k in results["verify_ms"])
    verify_size = min((s for s in verify_sizes if s >= total_tokens), default=verify_sizes[-1])
    verify = results["verify_ms"][str(verify_size)]
    draft = results["draft_step_ms"][str(max(int(k) for k in results["draft_step_ms"]))]
    ar = results["prefill_ms"] + 6 * results["decode_step_ms"]
    rows = []
    for tau in taus:
        steps = math.ceil(6 / tau)
        spec = results["prefill_ms"] + steps * (depth * draft + verify)
        rows.append({"acceptance_length": tau, "verify_steps": steps, "ar_ms": ar, "spec_ms": spec,
                     "speedup": ar / spec, "verify_tokens": verify_size, "draft_step_ms": draft})
    return rows


def print_summary(results: dict) -> None:
    print(f"{results['device']} {results['dtype']}: hidden {results['model']['hidden']}, "
          f"{results['model']['layers']} layers, prefix {results['prefix_tokens']} tokens")
    print(f"prefill {results['prefill_ms']:.2f} ms, decode step {results['decode_step_ms']:.2f} ms "
          f"(cache copy of {results['cache_copy_ms']:.2f} ms subtracted)")
    print("verify: " + ", ".join(f"{k} tokens {v:.2f} ms" for k, v in results["verify_ms"].items()))
    print("draft step: " + ", ".join(f"{k} tokens {v:.2f} ms" for k, v in results["draft_step_ms"].items()))
    print("\n| acceptance length | verify steps | AR ms | Spec-VLA ms | expected speedup |\n|---|---|---|---|---|")
    for row in results["projection"]:
        print(f"| {row['acceptance_length']:.2f} | {row['verify_steps']} | {row['ar_ms']:.1f} | {row['spec_ms']:.1f} "
              f"| {row['speedup']:.2f}x |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="tiny shapes on CPU: checks the script runs")
    parser.add_argument("--tree-sizes", type=int, nargs="+", default=[8, 16, 32, 64])
    parser.add_argument("--draft-tokens", type=int, nargs="+", default=[1, 8],
                        help="tokens per draft step (1 = the root, top_k = a tree level)")
    parser.add_argument("--taus", type=float, nargs="+", default=list(DEFAULT_TAUS))
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--total-tokens", type=int, default=32, help="tree size the projection assumes")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.dry_run:
        args.repeats, args.warmup = min(args.repeats, 2), 1
    results = measure(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print_summary(results)
    print(f"\nwritten: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
