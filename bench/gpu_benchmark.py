#!/usr/bin/env python3
"""Latency of the pieces of a Spec-VLA step on an OpenVLA-7B-shaped language model, per execution path,
and the speedups they imply: Spec-VLA (issue 18) and drafts verified inside the prefill (issue 19).

    python bench/gpu_benchmark.py --out results.json              # one GPU, bf16 (a few minutes on an H200)
    python bench/gpu_benchmark.py --dry-run --out /tmp/gpu.json   # tiny shapes on CPU, seconds (CI)

Needs torch and transformers only (what the GPU machine has; bench/gpu.sh runs it there with the
repository on PYTHONPATH). The model is Llama-2-7B shaped with random weights (OpenVLA's language
model: hidden 4096, 32 layers, vocabulary 32064), fed OpenVLA's sequence: BOS + 256 patch embeddings
+ a 20-token prompt. Random weights do not change the times. The vision tower is left out: it runs
once per action in every mode and adds the same time to each.

Paths, over the same weights:
  hf-eager         HF's LlamaModel + DynamicCache, eager: what OpenVLA's predict_action runs
  off              the package's static-cache forward (LlamaLanguageModel, DraftHead.stack), eager
  reduce-overhead  the same under torch.compile with CUDA graphs (CUDA only)
  default          the same under torch.compile (inductor)
Each path times a prefill; one decode step; tree verifies of 8 / 16 / 32 / 64 tokens; one draft step
(one level of the EAGLE tree: fc 2H -> H, one Llama layer, the frozen LM head, top-k) on 1 and 8
tokens; and a prefill with 0 / 7 / 14 / 50 guessed tokens appended (issue 19: each guess token sees
the whole prompt, its ancestors and itself; guesses are chains of 7, one per guessed action; 0 is the
plain prefill, timed again).
Medians over --repeats calls after --warmup calls; compilation happens in the warm-up, whose time
is reported per path. From them, per path:
  AR     = prefill + 6 decode steps                       (the first action token comes from prefill)
  Spec   = prefill + ceil(6 / tau) * (depth draft steps + 1 verify of --total-tokens)
  Guess  = prefill(+k) for the fraction f of frames whose appended guess is fully accepted, else
           prefill(+k) + 6 decode steps                    (a partly accepted guess is not counted)
each against the HF-eager AR and the fastest AR measured. Results go to --out (JSON, rewritten after
each path, so a run cut short keeps what it measured) and to stdout as tables.
"""
from __future__ import annotations

import argparse
import inspect
import json
import math
import platform
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import torch
import transformers
from torch._dynamo.utils import counters
from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM
from transformers.models.llama.modeling_llama import LlamaModel

from specvla_ros.core.action_tokenizer import N_ACTION_DIMS
from specvla_ros.core.backbone import LlamaLanguageModel, cache_capacity, causal_mask
from specvla_ros.core.compilation import CompiledFunction
from specvla_ros.core.draft_head import DraftHead

PATCHES, PROMPT = 256, 20
DECODE_STEPS = N_ACTION_DIMS - 1
# Acceptance lengths to project: the paper's (LIBERO-Goal, exact 2.04 / relaxed 2.94) and a range.
DEFAULT_TAUS = (1.0, 1.5, 2.04, 2.94, 3.5, 4.0, 5.0)
# Run order = column order. CUDA graphs before plain inductor: if a time limit cuts the run short,
# the mode the package picks on CUDA (compile "auto") has been measured.
PATHS = {"hf-eager": "HF eager", "off": "lean eager", "reduce-overhead": "lean CUDA graphs",
         "default": "lean compiled"}
# transformers 5.24 takes the cache as `cache`, 5.17 (the GPU machine) as `past_key_values`, and 5.17
# silently ignores `cache`: its decode steps would then attend to nothing and look fast.
HF_CACHE = "cache" if "cache" in inspect.signature(LlamaModel.forward).parameters else "past_key_values"

Call = tuple[Callable[[], object], Callable[[], None] | None]  # a timed call, and what undoes it (untimed)


@dataclass(frozen=True)
class Shapes:
    """The language model's sizes; the EAGLE draft head's layer has the same."""

    hidden: int
    intermediate: int
    layers: int
    heads: int
    vocab: int


OPENVLA_7B = Shapes(hidden=4096, intermediate=11008, layers=32, heads=32, vocab=32064)
TINY = Shapes(hidden=64, intermediate=128, layers=2, heads=4, vocab=640)


def llama_config(shapes: Shapes) -> LlamaConfig:
    return LlamaConfig(hidden_size=shapes.hidden, intermediate_size=shapes.intermediate,
                       num_hidden_layers=shapes.layers, num_attention_heads=shapes.heads,
                       num_key_value_heads=shapes.heads, vocab_size=shapes.vocab, rms_norm_eps=1e-6,
                       max_position_embeddings=4096, attn_implementation="sdpa")


class Timer:
    """Median milliseconds of a call. On a GPU, CUDA events around each call, which starts from an idle
    device, so the host's launch gaps count (they are most of an eager step); on a CPU, perf_counter.
    Warm-up calls (compilation, CUDA graph capture) are timed apart and summed in `warmup_s`."""

    def __init__(self, device: torch.device, repeats: int, warmup: int) -> None:
        self.device, self.repeats, self.warmup = device, repeats, warmup
        self.warmup_s = 0.0

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def median_ms(self, run: Callable[[], object], after: Callable[[], None] | None = None) -> float:
        started = time.perf_counter()
        for _ in range(self.warmup):
            run()
            if after is not None:
                after()
        self.sync()
        self.warmup_s += time.perf_counter() - started
        times = []
        for _ in range(self.repeats):
            self.sync()
            if self.device.type == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                run()
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end))
            else:
                start_s = time.perf_counter()
                run()
                times.append((time.perf_counter() - start_s) * 1e3)
            if after is not None:
                after()
        return statistics.median(times)


@dataclass
class Inputs:
    """One frame's inputs, shared by every path: BOS + prompt ids (1 + PROMPT,), projected patches
    (PATCHES, H), token ids for the rows after the prefill and draft-head features (rows, H)."""

    prompt_ids: torch.Tensor
    patches: torch.Tensor
    tokens: torch.Tensor
    features: torch.Tensor

    @property
    def prefix(self) -> int:
        return self.prompt_ids.shape[0] + self.patches.shape[0]


def binary_tree(size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """A verify tree of `size` tokens, node i's parent (i - 1) // 2: (size, size) bool, each node seeing
    itself and its ancestors, and each node's depth (its position after the root's)."""
    mask = torch.eye(size, dtype=torch.bool)
    depths = [0] * size
    for node in range(1, size):
        parent = (node - 1) // 2
        mask[node] |= mask[parent]  # the parent's row already holds its own ancestors
        depths[node] = depths[parent] + 1
    return mask.to(device), torch.tensor(depths, device=device)


def guessed_chains(count: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """`count` appended tokens as guessed actions, chains of N_ACTION_DIMS tokens (the last may be
    shorter): (count, count) bool, each token seeing its chain's earlier tokens and itself, and each
    token's depth in its chain (its position after the last prompt token's)."""
    index = torch.arange(count)
    chain, depth = index // N_ACTION_DIMS, index % N_ACTION_DIMS
    mask = (chain[:, None] == chain[None, :]) & (depth[None, :] <= depth[:, None])
    return mask.to(device), depth.to(device)


def prefill_visibility(prefix: int, guesses: torch.Tensor, columns: int, device: torch.device) -> torch.Tensor:
    """(prefix + k, columns) bool for a prefill with k guess tokens appended: the prompt causal, every
    guess token the whole prompt, then among the guesses as `guesses` (k, k) says."""
    count = prefix + guesses.shape[0]
    visible = torch.zeros(count, columns, dtype=torch.bool, device=device)
    visible[:prefix, :prefix] = causal_mask(prefix, device)
    visible[prefix:, :prefix] = True
    visible[prefix:, prefix:count] = guesses
    return visible


def additive(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A bool (rows, columns) mask as the (1, 1, rows, columns) additive mask HF's eager attention
    needs (its sdpa attention takes it too)."""
    mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    return mask.masked_fill(~allowed, torch.finfo(dtype).min)[None, None]


def top_children(logits: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """What a draft level ends with: each row's top-`width` tokens by log-probability."""
    return torch.log_softmax(logits.float(), dim=-1).topk(width, dim=-1)


def hf_eager_calls(lm: LlamaForCausalLM, head: DraftHead, inputs: Inputs, args: argparse.Namespace
                   ) -> dict[str, Call]:
    """(a) HF's LlamaModel and the head's HF layer, each with a DynamicCache, eager. A step appends to
    the prefix's cache; `crop` takes it back after each call, outside the timing."""
    model, prefix = lm.model, inputs.prefix
    device, dtype = inputs.patches.device, inputs.patches.dtype

    def prompt_embeds() -> torch.Tensor:
        text = model.embed_tokens(inputs.prompt_ids)
        return torch.cat([text[:1], inputs.patches, text[1:]])

    def prefill() -> DynamicCache:
        cache = DynamicCache()
        hidden = model(inputs_embeds=prompt_embeds()[None], use_cache=True, **{HF_CACHE: cache}).last_hidden_state
        lm.lm_head(hidden[0, -1]).argmax()
        return cache

    base = prefill()  # the prefix's cache every step below starts from
    calls: dict[str, Call] = {"prefill": (prefill, None)}

    def step(count: int, mask: torch.Tensor | None, depths: torch.Tensor) -> Call:
        ids, positions = inputs.tokens[:count][None], (prefix + depths)[None]

        def run() -> None:
            hidden = model(input_ids=ids, position_ids=positions, attention_mask=mask, use_cache=True,
                           **{HF_CACHE: base}).last_hidden_state
            lm.lm_head(hidden[0]).argmax(-1)
        return run, lambda: base.crop(-count)

    calls["decode_step"] = step(1, None, torch.zeros(1, dtype=torch.long, device=device))
    for size in args.tree_sizes:
        tree, depths = binary_tree(size, device)
        allowed = torch.cat([torch.ones(size, prefix, dtype=torch.bool, device=device), tree], dim=1)
        calls[f"verify_{size}"] = step(size, additive(allowed, dtype), depths)

    draft_cache = DynamicCache()  # the draft head's pairs for the prefix (their values do not matter)
    pairs = torch.randn(1, prefix, inputs.patches.shape[1], device=device, dtype=dtype) * 0.02
    positions = torch.arange(prefix, device=device)[None]
    head.layer(pairs, attention_mask=additive(causal_mask(prefix, device), dtype), position_ids=positions,
               position_embeddings=head.rotary(pairs, positions), use_cache=True, **{HF_CACHE: draft_cache})
    for count in args.draft_tokens:
        ids, features = inputs.tokens[:count], inputs.features[:count]
        positions = torch.full((1, count), prefix, device=device)  # one tree level: all at one depth
        allowed = torch.cat([torch.ones(count, prefix, dtype=torch.bool, device=device),
                             torch.eye(count, dtype=torch.bool, device=device)], dim=1)

        def draft(ids=ids, features=features, positions=positions, mask=additive(allowed, dtype)) -> None:
            x = head.fc(torch.cat([head.embed_tokens(ids), features], dim=-1))[None]
            out = head.layer(x, attention_mask=mask, position_ids=positions,
                             position_embeddings=head.rotary(x, positions), use_cache=True,
                             **{HF_CACHE: draft_cache})
            out = out[0] if isinstance(out, tuple) else out
            top_children(head.logits(out[0]), args.top_k)
        calls[f"draft_{count}"] = (draft, lambda count=count: draft_cache.crop(-count))

    for count in args.appended:
        if count == 0:  # nothing appended: the prefill
            calls["appended_0"] = calls["prefill"]
            continue
        guesses, depths = guessed_chains(count, device)
        mask = additive(prefill_visibility(prefix, guesses, prefix + count, device), dtype)
        positions = torch.cat([torch.arange(prefix, device=device), prefix + depths])[None]

        def appended(ids=inputs.tokens[:count], mask=mask, positions=positions) -> None:
            embeds = torch.cat([prompt_embeds(), model.embed_tokens(ids)])[None]
            hidden = model(inputs_embeds=embeds, position_ids=positions, attention_mask=mask, use_cache=True,
                           **{HF_CACHE: DynamicCache()}).last_hidden_state
            lm.lm_head(hidden[0, prefix - 1:]).argmax(-1)
        calls[f"appended_{count}"] = (appended, None)
    return calls


class DraftLevel:
    """One level of the EAGLE draft tree as TreeDrafter grows it: pairs (token embedding, parent's
    feature) through the head's fc and its layer over the head's static cache, then each row's top-k."""

    def __init__(self, head: DraftHead, width: int) -> None:
        self.head, self.width = head, width

    def __call__(self, tokens: torch.Tensor, features: torch.Tensor, positions: torch.Tensor, slots: torch.Tensor,
                 visible: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, keys: torch.Tensor,
                 values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        head = self.head
        x = head.fc(torch.cat([head.embed_tokens(tokens), features], dim=-1))
        predicted = head.stack.layers_forward(x, positions, cos, sin, slots, visible, keys, values)
        return top_children(head.logits(predicted), self.width)


class PrefillWithGuesses:
    """Issue 19's forward: prompt and appended guesses in one LlamaStack pass, rows written at cache
    slots 0..n, each seeing the columns `visible` marks. Returns the target's token after the last
    prompt row and after every guess row (what accepting a guess compares against). At least one
    guess: with none, the one output row would make the compiled graph specialise on the length."""

    def __init__(self, language: LlamaLanguageModel, prefix: int) -> None:
        self.language, self.prefix = language, prefix

    def __call__(self, embeds: torch.Tensor, positions: torch.Tensor, visible: torch.Tensor, cos: torch.Tensor,
                 sin: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        slots = torch.arange(embeds.shape[0], device=embeds.device)
        hidden = self.language.stack.layers_forward(embeds, positions, cos, sin, slots, visible, keys, values)
        return self.language.logits(hidden[self.prefix - 1:]).argmax(dim=-1)


def lean_calls(language: LlamaLanguageModel, head: DraftHead, inputs: Inputs, args: argparse.Namespace,
               mode: str) -> tuple[dict[str, Call], list[CompiledFunction]]:
    """(b)-(d) The package's static-cache path under compile `mode`: LlamaLanguageModel's prefill and
    step functions called as the decoders call them, a DraftLevel and a PrefillWithGuesses. Every
    call rewrites the same cache slots, so nothing needs undoing. Also returns the compiled functions
    whose eager fallback (core/compilation.py) would make a compiled column eager."""
    language.compile(mode)
    device, prefix = inputs.patches.device, inputs.prefix
    rows = max(max(args.tree_sizes), max(args.appended))
    cache = language.new_cache(cache_capacity(prefix + rows))
    cos, sin = language.stack.rotary_tables(cache.keys)
    length = torch.tensor(prefix, device=device)

    calls: dict[str, Call] = {"prefill": (
        lambda: language.prefill(inputs.prompt_ids, inputs.patches, cache, rows).logits_last.argmax(), None)}

    def step(count: int, mask: torch.Tensor, depths: torch.Tensor) -> Call:
        ids, positions = inputs.tokens[:count], length + depths
        return (lambda: language.step(ids, positions, mask, length, cos, sin, cache.keys, cache.values)[0].argmax(-1),
                None)

    calls["decode_step"] = step(1, causal_mask(1, device), torch.zeros(1, dtype=torch.long, device=device))
    for size in args.tree_sizes:
        calls[f"verify_{size}"] = step(size, *binary_tree(size, device))

    draft = CompiledFunction(DraftLevel(head, args.top_k).__call__, mode, device.type)
    draft_cache = head.new_cache(cache_capacity(prefix + max(args.draft_tokens)))
    draft_cos, draft_sin = head.stack.rotary_tables(draft_cache.keys)
    columns = torch.arange(draft_cache.capacity, device=device)
    for count in args.draft_tokens:
        slots = prefix + torch.arange(count, device=device)
        visible = (columns[None, :] < prefix) | (columns[None, :] == slots[:, None])
        positions = torch.full((count,), prefix, device=device)  # one tree level: all at one depth

        def draft_level(ids=inputs.tokens[:count], features=inputs.features[:count], positions=positions,
                        slots=slots, visible=visible) -> tuple[torch.Tensor, torch.Tensor]:
            return draft(ids, features, positions, slots, visible, draft_cos, draft_sin, draft_cache.keys,
                         draft_cache.values)
        calls[f"draft_{count}"] = (draft_level, None)

    appended = CompiledFunction(PrefillWithGuesses(language, prefix).__call__, mode, device.type)
    for count in args.appended:
        if count == 0:  # the package's prefill (PrefillWithGuesses would need a graph for k = 0 alone)
            calls["appended_0"] = calls["prefill"]
            continue
        guesses, depths = guessed_chains(count, device)
        visible = prefill_visibility(prefix, guesses, cache.capacity, device)
        positions = torch.cat([torch.arange(prefix, device=device), prefix + depths])

        def run(ids=inputs.tokens[:count], visible=visible, positions=positions) -> torch.Tensor:
            text = language.embed(inputs.prompt_ids)
            embeds = torch.cat([text[:1], inputs.patches, text[1:], language.embed(ids)])
            for tensor in (embeds, positions, visible):  # one graph for every k >= 1, not one per k
                torch._dynamo.maybe_mark_dynamic(tensor, 0)
            return appended(embeds, positions, visible, cos, sin, cache.keys, cache.values)
        calls[f"appended_{count}"] = (run, None)
    return calls, [language.step, draft, appended]


def agreement(lm: LlamaForCausalLM, language: LlamaLanguageModel, inputs: Inputs) -> dict:
    """The lean eager forward against HF's on the same inputs (the prefill's last logits, then one
    decode step's): largest difference relative to the largest logit, and whether the argmax agrees.
    It vouches for the timings: both columns must compute the same thing."""
    language.compile("off")
    cache = DynamicCache()
    text = lm.model.embed_tokens(inputs.prompt_ids)
    embeds = torch.cat([text[:1], inputs.patches, text[1:]])[None]
    hidden = lm.model(inputs_embeds=embeds, use_cache=True, **{HF_CACHE: cache}).last_hidden_state
    hf_prefill = lm.lm_head(hidden[0, -1])
    token = inputs.tokens[:1]
    hf_step = lm.lm_head(lm.model(input_ids=token[None], use_cache=True, **{HF_CACHE: cache}).last_hidden_state[0, -1])
    prefill = language.prefill(inputs.prompt_ids, inputs.patches, None, 1)
    positions = torch.tensor([prefill.prefix_len], device=token.device)
    lean_step, _ = language.forward(prefill.cache, token, positions, causal_mask(1, token.device))

    def compare(reference: torch.Tensor, lean: torch.Tensor) -> dict:
        reference, lean = reference.float(), lean.float()
        scale = reference.abs().max().clamp_min(1e-30)
        return {"relative_max_diff": float((reference - lean).abs().max() / scale),
                "same_argmax": bool(reference.argmax() == lean.argmax())}
    return {"prefill": compare(hf_prefill, prefill.logits_last), "decode_step": compare(hf_step, lean_step[0])}


def measure_path(name: str, calls: dict[str, Call], timer: Timer, args: argparse.Namespace) -> dict:
    """Every call of one path, timed; the warm-up (compilation included) summed apart."""
    timer.warmup_s = 0.0
    ms = {key: timer.median_ms(run, after) for key, (run, after) in calls.items()}
    return {"label": PATHS[name], "compile_and_warmup_s": round(timer.warmup_s, 2),
            "prefill_ms": ms["prefill"], "decode_step_ms": ms["decode_step"],
            "verify_ms": {str(size): ms[f"verify_{size}"] for size in args.tree_sizes},
            "draft_step_ms": {str(count): ms[f"draft_{count}"] for count in args.draft_tokens},
            "appended_prefill_ms": {str(count): ms[f"appended_{count}"] for count in args.appended},
            "ar_ms": ms["prefill"] + DECODE_STEPS * ms["decode_step"]}


def choose_paths(asked: list[str] | None, dry_run: bool, device: torch.device) -> tuple[list[str], dict[str, str]]:
    """The paths to run, in PATHS order, and why the others are not run."""
    skipped = {}
    if asked is None:
        asked = list(PATHS)
        if dry_run:
            skipped["default"] = ("not in --dry-run: inductor takes minutes per graph on a CPU "
                                  "(add --paths hf-eager off default to include it)")
    if "reduce-overhead" in asked and device.type != "cuda":
        skipped["reduce-overhead"] = f"CUDA graphs need a CUDA device; this run is on {device.type}"
    return [name for name in PATHS if name in asked and name not in skipped], skipped


def ratio(baseline: float | None, value: float) -> float | None:
    return None if baseline is None else baseline / value


def baselines(paths: dict[str, dict]) -> dict:
    """The two AR baselines: HF eager (when measured) and the fastest AR path."""
    fastest = min(paths, key=lambda name: paths[name]["ar_ms"])
    hf = paths.get("hf-eager")
    return {"hf_eager_ar_ms": hf["ar_ms"] if hf else None, "fastest_ar_ms": paths[fastest]["ar_ms"],
            "fastest_ar_path": fastest}


def project(paths: dict[str, dict], base: dict, args: argparse.Namespace) -> tuple[dict, list[dict]]:
    """Spec-VLA per action at each acceptance length, per path, from that path's own pieces."""
    verify_tokens = min((size for size in args.tree_sizes if size >= args.total_tokens), default=max(args.tree_sizes))
    draft_tokens = max(args.draft_tokens)
    assumes = {"depth": args.depth, "draft_step_tokens": draft_tokens, "verify_tokens": verify_tokens}
    rows = []
    for tau in args.taus:
        steps = math.ceil(DECODE_STEPS / tau)
        for name, path in paths.items():
            spec = path["prefill_ms"] + steps * (args.depth * path["draft_step_ms"][str(draft_tokens)]
                                                 + path["verify_ms"][str(verify_tokens)])
            rows.append({"acceptance_length": tau, "verify_steps": steps, "path": name, "spec_ms": spec,
                         "ar_ms": path["ar_ms"], "vs_own_ar": path["ar_ms"] / spec,
                         "vs_hf_eager_ar": ratio(base["hf_eager_ar_ms"], spec),
                         "vs_fastest_ar": ratio(base["fastest_ar_ms"], spec)})
    return assumes, rows


def guesses_in_prefill(paths: dict[str, dict], base: dict, fractions: list[float]) -> list[dict]:
    """Issue 19 per action: one prefill(+k) forward when the guess is fully accepted (fraction f of
    frames), else prefill(+k) + the path's 6 decode steps."""
    rows = []
    for name, path in paths.items():
        for tokens, prefill_ms in path["appended_prefill_ms"].items():
            if int(tokens) == 0:
                continue
            for fraction in fractions:
                cost = prefill_ms + (1 - fraction) * DECODE_STEPS * path["decode_step_ms"]
                rows.append({"path": name, "appended_tokens": int(tokens), "accepted_fraction": fraction,
                             "action_ms": cost, "vs_hf_eager_ar": ratio(base["hf_eager_ar_ms"], cost),
                             "vs_fastest_ar": ratio(base["fastest_ar_ms"], cost)})
    return rows


def summarize(results: dict, args: argparse.Namespace) -> None:
    """(Re)compute the baselines and projections from the paths measured so far."""
    paths = results["paths"]
    results["baselines"] = base = baselines(paths)
    results["projection_assumes"], results["projection"] = project(paths, base, args)
    results["guesses_in_prefill"] = guesses_in_prefill(paths, base, args.accepted_fractions)


def write(path: Path, results: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1) + "\n")


def measure(args: argparse.Namespace) -> dict:
    device = torch.device("cuda" if torch.cuda.is_available() and not args.dry_run else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    shapes = TINY if args.dry_run else OPENVLA_7B
    names, skipped = choose_paths(args.paths, args.dry_run, device)
    started = time.perf_counter()
    torch.manual_seed(0)
    with torch.device(device):
        lm = LlamaForCausalLM(llama_config(shapes)).to(dtype).eval()
    language = LlamaLanguageModel(lm)
    target = SimpleNamespace(hidden_size=shapes.hidden, vocab_size=shapes.vocab, embed_tokens=lm.model.embed_tokens,
                             lm_head=lm.lm_head, device=device, dtype=dtype)
    head = DraftHead.random(target, seed=0, num_heads=shapes.heads, intermediate_size=shapes.intermediate)
    rows = max(max(args.tree_sizes), max(args.appended), max(args.draft_tokens))
    inputs = Inputs(prompt_ids=torch.randint(0, shapes.vocab, (1 + PROMPT,), device=device),
                    patches=torch.randn(PATCHES, shapes.hidden, device=device, dtype=dtype) * 0.02,
                    tokens=torch.randint(0, shapes.vocab, (rows,), device=device),
                    features=torch.randn(rows, shapes.hidden, device=device, dtype=dtype))
    results: dict = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.machine(),
        "dtype": str(dtype).replace("torch.", ""), "dry_run": args.dry_run, "model": asdict(shapes),
        "prefix_tokens": inputs.prefix, "torch": torch.__version__, "transformers": transformers.__version__,
        "hf_cache_keyword": HF_CACHE, "repeats": args.repeats, "warmup": args.warmup,
        "build_s": round(time.perf_counter() - started, 1), "skipped": skipped, "paths": {}}
    timer = Timer(device, args.repeats, args.warmup)
    with torch.inference_mode():
        results["agreement"] = agreement(lm, language, inputs)
        for name in names:
            skips, graphs = counters["inductor"]["cudagraph_skips"], counters["stats"]["unique_graphs"]
            if name == "hf-eager":
                calls, compiled = hf_eager_calls(lm, head, inputs, args), []
            else:
                calls, compiled = lean_calls(language, head, inputs, args, name)
            path = measure_path(name, calls, timer, args)
            if name in ("default", "reduce-overhead"):
                path["graphs_compiled"] = counters["stats"]["unique_graphs"] - graphs
                path["eager_fallbacks"] = sum(not function.compiled for function in compiled)
            if name == "reduce-overhead":
                path["cudagraph_skips"] = counters["inductor"]["cudagraph_skips"] - skips
            results["paths"][name] = path
            summarize(results, args)
            results["wall_s"] = round(time.perf_counter() - started, 1)
            write(args.out, results)
            print(f"measured {PATHS[name]}: compile + warm-up {path['compile_and_warmup_s']:.1f} s, "
                  f"prefill {path['prefill_ms']:.2f} ms, decode step {path['decode_step_ms']:.2f} ms "
                  f"({results['wall_s']:.0f} s so far)", flush=True)
    return results


def cell(ms: float, *speedups: float | None) -> str:
    shown = " / ".join("-" if value is None else f"{value:.2f}x" for value in speedups)
    return f"{ms:.1f} ({shown})"


def print_summary(results: dict) -> None:
    model, paths, base = results["model"], results["paths"], results["baselines"]
    names = list(paths)
    print(f"\n{results['device']} {results['dtype']}: hidden {model['hidden']}, {model['layers']} layers, vocabulary "
          f"{model['vocab']}; prefix {results['prefix_tokens']} tokens; torch {results['torch']}, transformers "
          f"{results['transformers']} (HF cache keyword: {results['hf_cache_keyword']})")
    for name, why in results["skipped"].items():
        print(f"skipped {name}: {why}")
    for step, found in results["agreement"].items():
        print(f"lean eager vs HF eager, {step}: logits differ by {found['relative_max_diff']:.1e} of the largest, "
              f"argmax {'agrees' if found['same_argmax'] else 'DIFFERS'}")

    first = paths[names[0]]
    print(f"\n| ms, median of {results['repeats']} | " + " | ".join(PATHS[name] for name in names) + " |")
    print("|---" * (len(names) + 1) + "|")
    lines = [("compile + warm-up (s)", "compile_and_warmup_s", None),
             (f"prefill ({results['prefix_tokens']} tokens)", "prefill_ms", None),
             ("decode step", "decode_step_ms", None)]
    lines += [(f"verify, {k} tokens", "verify_ms", k) for k in first["verify_ms"]]
    lines += [(f"draft step, {k} token(s)", "draft_step_ms", k) for k in first["draft_step_ms"]]
    lines += [(f"prefill + {k} guessed", "appended_prefill_ms", k) for k in first["appended_prefill_ms"]]
    lines += [(f"AR action (prefill + {DECODE_STEPS} steps)", "ar_ms", None)]
    for label, key, size in lines:
        values = [paths[name][key] if size is None else paths[name][key][size] for name in names]
        print(f"| {label} | " + " | ".join(f"{value:.2f}" for value in values) + " |")
    for name in names:
        path = paths[name]
        if path.get("eager_fallbacks"):
            print(f"WARNING {PATHS[name]}: {path['eager_fallbacks']} function(s) fell back to eager (see the log)")
        if path.get("cudagraph_skips"):
            print(f"WARNING {PATHS[name]}: CUDA graphs skipped {path['cudagraph_skips']} time(s): those graphs ran "
                  "without CUDA graphs (the log says why, e.g. 'mutated inputs')")

    hf = "-" if base["hf_eager_ar_ms"] is None else f"{base['hf_eager_ar_ms']:.1f} ms"
    against = (f"each cell: ms per action (x vs HF-eager AR {hf} / x vs fastest AR {base['fastest_ar_ms']:.1f} ms, "
               f"{PATHS[base['fastest_ar_path']]})")
    assumes = results["projection_assumes"]
    print(f"\nSpec-VLA: prefill + ceil({DECODE_STEPS}/tau) x ({assumes['depth']} draft steps of "
          f"{assumes['draft_step_tokens']} tokens + 1 verify of {assumes['verify_tokens']} tokens); {against}")
    print("| tau | verify steps | " + " | ".join(PATHS[name] for name in names) + " |")
    print("|---" * (len(names) + 2) + "|")
    by_tau: dict[float, list[dict]] = {}
    for row in results["projection"]:
        by_tau.setdefault(row["acceptance_length"], []).append(row)
    for tau, rows in by_tau.items():
        print(f"| {tau:.2f} | {rows[0]['verify_steps']} | "
              + " | ".join(cell(row["spec_ms"], row["vs_hf_eager_ar"], row["vs_fastest_ar"]) for row in rows) + " |")

    print(f"\nGuesses verified inside the prefill (issue 19): a fraction f of frames has its k appended tokens "
          f"fully accepted and costs one prefill(+k); the others add {DECODE_STEPS} decode steps; {against}")
    fractions = sorted({row["accepted_fraction"] for row in results["guesses_in_prefill"]})
    print("| path | k | " + " | ".join(f"f = {f:g}" for f in fractions) + " |")
    print("|---" * (len(fractions) + 2) + "|")
    by_path: dict[tuple[str, int], list[dict]] = {}
    for row in results["guesses_in_prefill"]:
        by_path.setdefault((row["path"], row["appended_tokens"]), []).append(row)
    for (name, tokens), rows in by_path.items():
        print(f"| {PATHS[name]} | {tokens} | "
              + " | ".join(cell(row["action_ms"], row["vs_hf_eager_ar"], row["vs_fastest_ar"]) for row in rows) + " |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true",
                        help="tiny shapes on CPU, HF eager and lean eager only: checks the script runs")
    parser.add_argument("--paths", nargs="+", choices=list(PATHS),
                        help="paths to time (default: all; reduce-overhead only on CUDA; --dry-run: hf-eager off)")
    parser.add_argument("--tree-sizes", type=int, nargs="+", default=[8, 16, 32, 64], help="verify sizes, tokens")
    parser.add_argument("--draft-tokens", type=int, nargs="+", default=[1, 8],
                        help="tokens per draft step (1 = the root, top_k = a tree level)")
    parser.add_argument("--appended", type=int, nargs="+", default=[0, 7, 14, 50],
                        help="guess tokens appended to the prefill (issue 19), in chains of 7")
    parser.add_argument("--accepted-fractions", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 1.0],
                        help="shares of frames whose appended guess is fully accepted")
    parser.add_argument("--taus", type=float, nargs="+", default=list(DEFAULT_TAUS), help="acceptance lengths")
    parser.add_argument("--depth", type=int, default=4, help="draft steps per verify in the projection")
    parser.add_argument("--top-k", type=int, default=8, help="children per node in a draft step")
    parser.add_argument("--total-tokens", type=int, default=32, help="tree size the projection verifies")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5, help="calls before timing (compilation happens here)")
    parser.add_argument("--out", type=Path, required=True, help="JSON file")
    args = parser.parse_args(argv)
    if min(args.tree_sizes + args.draft_tokens) < 1 or min(args.appended) < 0 or args.depth < 1:
        parser.error("tree sizes, draft tokens and depth must be positive, appended tokens not negative")
    if args.dry_run:
        args.repeats, args.warmup = min(args.repeats, 2), 1
    results = measure(args)
    print_summary(results)
    print(f"\nwritten: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
