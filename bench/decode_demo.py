#!/usr/bin/env python3
"""Decode one synthetic observation with AR and with Spec-VLA at r = 0, 1, 3, side by side.

    .venv/bin/python bench/decode_demo.py [--model DIR --draft DIR] [--repeats 5]
    .venv/bin/python bench/decode_demo.py --restriction 24     # also: does action-only drafting help?

Defaults to the embedded model pair. Timings are medians (each phase on its own) over --repeats
decodes of the same observation after one warm-up, on the device --device names (the decoder times
phases with perf_counter on CPU). With --restriction N it also builds four model pairs (random
target with a random and with an EAGLE-trained draft head; behaviour-cloned target with live
text-token logits, with both heads) and compares drafting among the 256 action tokens only
against drafting over the whole vocabulary, as mean acceptance length over N held-out
observations at r = 0 and r = 3. --draw-tree PNG renders the picture in docs/decoding.md.
"""
from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass

import numpy as np
import torch

from specvla_ros.core.config import DecoderConfig, TreeConfig
from specvla_ros.core.decoder import ActionResult, build_decoder
from specvla_ros.core.draft_head import DraftHead
from specvla_ros.core.loading import load_backbone
from specvla_ros.core.tiny.config import TinyVLAConfig
from specvla_ros.core.tiny.model import TinyVLA
from specvla_ros.models import model_pair

INSTRUCTION = "pick up the red cube"
TASKS = ("pick up the red cube", "push the blue cube to the left", "put the red cube on the green plate")


# ----- AR vs Spec-VLA, one observation ---------------------------------------------------------
PHASES = ("prefill_ms", "draft_ms", "verify_ms", "total_ms")


@dataclass
class Row:
    name: str
    result: ActionResult          # the first timed decode (all decodes of one observation are identical)
    median_ms: dict[str, float]   # per phase, median over the timed decodes


def timed(name: str, decoder, image: np.ndarray, repeats: int) -> Row:
    decoder.decode(image, INSTRUCTION)  # warm-up (allocator, lazy init)
    results = [decoder.decode(image, INSTRUCTION) for _ in range(repeats)]
    medians = {phase: statistics.median(getattr(r.stats, phase) for r in results) for phase in PHASES}
    return Row(name, results[0], medians)


def side_by_side(target, head, image: np.ndarray, repeats: int) -> list[Row]:
    rows = [timed("AR greedy", build_decoder(target, None, DecoderConfig(mode="autoregressive")), image, repeats)]
    for relax in (0, 1, 3):
        rows.append(timed(f"Spec-VLA r={relax}", build_decoder(target, head, DecoderConfig(relax_bins=relax)),
                          image, repeats))
    return rows


def print_rows(rows: list[Row]) -> None:
    ar_ms = rows[0].median_ms["total_ms"]
    print(f"\n{'mode':<15} {'token ids':<44} {'bins':<36} {'accepted/step':<13} {'tau':>5} {'fwd':>4} "
          f"{'prefill':>8} {'draft':>7} {'verify':>7} {'total ms':>9} {'vs AR':>6}")
    for row in rows:
        stats = row.result.stats
        accepted = ",".join(map(str, stats.accepted_per_step)) or "-"
        ms = row.median_ms
        print(f"{row.name:<15} {str(row.result.token_ids):<44} {str(row.result.bins):<36} {accepted:<13} "
              f"{stats.mean_acceptance_length:>5.2f} {stats.target_forward_passes:>4} {ms['prefill_ms']:>8.2f} "
              f"{ms['draft_ms']:>7.2f} {ms['verify_ms']:>7.2f} {ms['total_ms']:>9.2f} {ar_ms / ms['total_ms']:>5.2f}x")
    print(f"\nr = 0 tokens identical to AR: {rows[1].result.token_ids == rows[0].result.token_ids}")
    for row in rows[2:]:
        worst = max(abs(a - b) for a, b in zip(row.result.bins, rows[0].result.bins, strict=True))
        print(f"{row.name}: bins differ from AR's by at most {worst} (after a relaxed token the prefix differs, "
              "so a later dimension may differ by more than r)")


# ----- does restricting drafts to action tokens help? -------------------------------------------
STUDY_CONFIG = TinyVLAConfig(image_size=32, patch_size=8, vision_dim=64, hidden_size=64, intermediate_size=128,
                             num_layers=2, num_heads=4, num_kv_heads=4, vocab_size=640)


def synthetic_frames(count: int, seed: int):
    """Learnable stand-in demonstrations: a coloured square's offset sets dx, dy; the task sets dz and the gripper."""
    from specvla_ros.training.datasets import DemoFrames

    rng = np.random.default_rng(seed)
    images = rng.integers(0, 60, size=(count, 32, 32, 3), dtype=np.uint8)
    actions = np.zeros((count, 7), dtype=np.float32)
    instructions = []
    for i in range(count):
        x, y = rng.integers(0, 24, size=2)
        task = int(rng.integers(len(TASKS)))
        images[i, y:y + 8, x:x + 8, task] = 255
        actions[i, :2] = 0.02 * (np.array([x, y]) / 24.0 - 0.5)
        actions[i, 2] = (-0.01, 0.0, 0.01)[task]
        actions[i, 3:6] = rng.normal(0.0, 0.01, 3)
        actions[i, 6] = float(task != 1)
        instructions.append(TASKS[task])
    return DemoFrames(images, instructions, actions, np.arange(count))


def trained_draft(target: TinyVLA, seed: int, steps: int) -> DraftHead:
    from specvla_ros.training.draft_trainer import collect_sequence, train_draft_head

    frames = synthetic_frames(24, seed + 7)
    sequences = [collect_sequence(target, frames.images[i], frames.instructions[i]) for i in range(len(frames))]
    head = DraftHead.random(target, seed + 1)
    train_draft_head(head, sequences, steps=steps, seed=seed)
    return head


def behaviour_cloned_target(seed: int, steps: int) -> TinyVLA:
    """A target trained to emit action tokens, whose text-token logits are live (not zeroed as in TinyVLA.random)."""
    from specvla_ros.training.datasets import action_norm_stats
    from specvla_ros.training.vla_trainer import VLATrainConfig, train_vla

    frames = synthetic_frames(600, seed)
    target = TinyVLA.random(STUDY_CONFIG, seed, norm_stats=action_norm_stats(frames.actions, "synthetic"))
    first = target.action_tokenizer.first_action_token
    with torch.no_grad():
        target.lm_head.weight[:first].normal_(0.0, STUDY_CONFIG.init_std)
    train_vla(target, frames, VLATrainConfig(steps=steps, batch_size=16, lr=3e-3, warmup_steps=20, log_every=10**9),
              log=lambda _: None)
    return target


def acceptance(target, head, observations, relax: int, restrict: bool) -> tuple[float, float]:
    """Mean acceptance length, and the share of drafted tree nodes that are not action tokens."""
    tree = TreeConfig(restrict_to_action_tokens=restrict)
    decoder = build_decoder(target, head, DecoderConfig(relax_bins=relax, tree=tree))
    lengths, nodes, text_nodes = [], 0, 0
    for image, instruction in observations:
        trace: list = []
        lengths.append(decoder.decode(image, instruction, trace=trace).stats.mean_acceptance_length)
        for step in trace:
            nodes += len(step.tree)
            text_nodes += int((step.tree.tokens < target.action_tokenizer.first_action_token).sum())
    return float(np.mean(lengths)), text_nodes / max(nodes, 1)


def restriction_study(count: int, seed: int) -> None:
    started = time.perf_counter()
    print(f"\naction-token restriction study: {count} held-out observations per setting, default tree "
          f"(top_k 8, depth 4, total 50); building and training three small pairs...", flush=True)
    random_target = TinyVLA.random(STUDY_CONFIG, seed)
    cloned = behaviour_cloned_target(seed, steps=1200)
    settings = [
        ("random target, random draft head", random_target, DraftHead.random(random_target, seed + 1)),
        ("random target, EAGLE-trained draft", random_target, trained_draft(random_target, seed, steps=300)),
        ("BC-trained target (live text logits), random draft", cloned, DraftHead.random(cloned, seed + 1)),
        ("BC-trained target (live text logits), EAGLE-trained draft", cloned, trained_draft(cloned, seed, steps=300)),
    ]
    held_out = synthetic_frames(count, seed + 1000)
    observations = [(held_out.images[i], held_out.instructions[i]) for i in range(count)]
    print(f"(built in {time.perf_counter() - started:.0f} s)\n")
    print(f"{'setting':<58} {'r':>2} {'tau action-only':>16} {'tau whole vocab':>16} {'text nodes (whole vocab)':>25}")
    for name, target, head in settings:
        for relax in (0, 3):
            only, _ = acceptance(target, head, observations, relax, restrict=True)
            whole, text_share = acceptance(target, head, observations, relax, restrict=False)
            print(f"{name:<58} {relax:>2} {only:>16.3f} {whole:>16.3f} {100 * text_share:>24.1f}%")


# ----- the picture in docs/decoding.md ------------------------------------------------------------
def draw_tree_picture(out: str, seed: int, relax: int = 3) -> None:
    """Draw an instructive first step of the trained pair: relaxed tokens on the path, then the longest path.

    Uses the project's renderer, tools/draw_draft_tree.py, so there is one drawing of a tree.
    """
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "draw_draft_tree", Path(__file__).resolve().parents[1] / "tools" / "draw_draft_tree.py")
    renderer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(renderer)

    target = behaviour_cloned_target(seed, steps=1200)
    head = trained_draft(target, seed, steps=300)
    tree = TreeConfig(top_k=4, depth=4, total_tokens=20)
    decoder = build_decoder(target, head, DecoderConfig(relax_bins=relax, tree=tree))
    tokenizer = target.action_tokenizer

    def bin_of(token: int) -> int:
        return int(tokenizer.token_to_bin(np.array(token)))

    def relaxed_on_path(step) -> int:
        return sum(int(step.tree.tokens[node]) != int(step.target_tokens[int(step.tree.parents[node]) + 1])
                   for node in step.path)

    frames = synthetic_frames(40, seed + 2000)
    best = None
    for index in range(len(frames)):
        trace: list = []
        decoder.decode(frames.images[index], frames.instructions[index], trace=trace)
        relaxed = relaxed_on_path(trace[0])  # prefer a step that shows the relaxed rule at work
        key = (relaxed > 0, len(trace[0].path), relaxed, int(trace[0].tree.depths.max()))
        if best is None or key > best[0]:
            best = (key, trace[0], frames.instructions[index])
    (_, path_len, relaxed, _), step, instruction = best
    title = (f"One Spec-VLA step at r = {relax}, '{instruction}': {len(step.tree)} drafted nodes (top_k 4, depth 4)\n"
             f"label: drafted bin (target's bin); accepted path {path_len} tokens, {relaxed} by the relaxed rule; "
             f"bonus bin {bin_of(step.bonus)}")
    renderer.draw(step, bin_of, Path(out), title)
    print(f"wrote {out}: accepted path {path_len} tokens, {relaxed} of them relaxed")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="target checkpoint folder (default: the embedded model)")
    parser.add_argument("--draft", help="draft head checkpoint folder (with --model)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--restriction", type=int, default=0, metavar="N",
                        help="also run the action-token restriction study over N observations")
    parser.add_argument("--draw-tree", metavar="PNG", help="only draw one step of a trained pair (docs/decoding.md)")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    if args.draw_tree:
        draw_tree_picture(args.draw_tree, args.seed)
        return 0
    if args.model and not args.draft:
        parser.error("--model needs --draft (the draft head trained for that model)")
    model = model_pair(args.model, args.draft, log=print)
    target_path, draft_path = model.target_path, model.draft_path
    for caveat in model.caveats:
        print(f"  note: {caveat}")
    target = load_backbone(target_path, device=args.device, dtype=args.dtype)
    head = DraftHead.load(draft_path, target)
    image = np.random.default_rng(args.seed).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    print(f"observation: random 224x224 image, '{INSTRUCTION}'; {args.device} {args.dtype}, "
          f"torch threads {torch.get_num_threads()}")
    print_rows(side_by_side(target, head, image, args.repeats))
    if args.restriction:
        restriction_study(args.restriction, args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
