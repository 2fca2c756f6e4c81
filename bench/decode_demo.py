#!/usr/bin/env python3
"""Decode one synthetic observation with AR and with Spec-VLA at r = 0, 1, 3, side by side.

    .venv/bin/python bench/decode_demo.py [--model DIR --draft DIR] [--repeats 5] [--restriction N]

Defaults to the embedded model pair. Timings are medians over --repeats decodes of the same
observation after one warm-up (CPU, this machine; see docs/decoding.md for what they mean).
With --restriction N, also compares drafting among the 256 action tokens only against drafting
over the whole vocabulary, as mean acceptance length over N observations.
"""
from __future__ import annotations

import argparse
import statistics

import numpy as np

from specvla_ros.core.config import DecoderConfig, TreeConfig
from specvla_ros.core.decoder import build_decoder
from specvla_ros.core.draft_head import DraftHead
from specvla_ros.core.loading import load_backbone
from specvla_ros.embedded_model import embedded_model

INSTRUCTION = "pick up the red cube"


def _median_decode(decoder, image, repeats):
    decoder.decode(image, INSTRUCTION)  # warm-up
    results = [decoder.decode(image, INSTRUCTION) for _ in range(repeats)]
    return results[0], statistics.median(r.stats.total_ms for r in results), results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="target checkpoint folder (default: the embedded model)")
    parser.add_argument("--draft", help="draft head checkpoint folder")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--restriction", type=int, default=0, metavar="N",
                        help="also measure action-token-only drafting over N observations")
    args = parser.parse_args()
    if args.model:
        target_path, draft_path = args.model, args.draft
    else:
        model = embedded_model()
        target_path, draft_path = model.target_path, model.draft_path
        print(f"model: {model.description}")
    target = load_backbone(target_path)
    head = DraftHead.load(draft_path, target)
    image = np.random.default_rng(args.seed).integers(0, 256, (224, 224, 3), dtype=np.uint8)

    rows = []
    _, ar_ms, ar_results = _median_decode(build_decoder(target, None, DecoderConfig(mode="autoregressive")),
                                          image, args.repeats)
    rows.append(("AR greedy", ar_results[0], ar_ms))
    for relax in (0, 1, 3):
        decoder = build_decoder(target, head, DecoderConfig(relax_bins=relax))
        first, ms, _ = _median_decode(decoder, image, args.repeats)
        rows.append((f"Spec-VLA r={relax}", first, ms))

    print(f"\n{'mode':<16} {'action bins':<34} {'accepted/step':<16} {'accept len':>10} {'fwd':>4} "
          f"{'prefill':>8} {'draft':>7} {'verify':>7} {'total ms':>9} {'vs AR':>6}")
    for name, result, ms in rows:
        stats = result.stats
        accepted = ",".join(map(str, stats.accepted_per_step)) or "-"
        print(f"{name:<16} {str(result.bins):<34} {accepted:<16} {stats.mean_acceptance_length:>10.2f} "
              f"{stats.target_forward_passes:>4} {stats.prefill_ms:>8.1f} {stats.draft_ms:>7.1f} "
              f"{stats.verify_ms:>7.1f} {ms:>9.1f} {ar_ms / ms:>5.2f}x")
    same = rows[1][1].token_ids == rows[0][1].token_ids
    print(f"\nr = 0 tokens identical to AR: {same}")

    if args.restriction:
        rng = np.random.default_rng(args.seed + 1)
        images = [rng.integers(0, 256, (224, 224, 3), dtype=np.uint8) for _ in range(args.restriction)]
        print(f"\ndraft candidates, mean acceptance length over {args.restriction} observations (r = 0 / r = 3):")
        for restrict in (True, False):
            lengths = []
            for relax in (0, 3):
                tree = TreeConfig(restrict_to_action_tokens=restrict)
                decoder = build_decoder(target, head, DecoderConfig(relax_bins=relax, tree=tree))
                lengths.append(np.mean([decoder.decode(im, INSTRUCTION).stats.mean_acceptance_length
                                        for im in images]))
            label = "action tokens only" if restrict else "whole vocabulary"
            print(f"  {label:<20} {lengths[0]:.3f} / {lengths[1]:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
