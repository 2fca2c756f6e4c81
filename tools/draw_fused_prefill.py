#!/usr/bin/env python3
"""docs/img/fused_prefill.png: who sees whom in a prefill with two guesses appended (decoder.prefill_drafts).

Drawn from the decoder's own mask code (core/verify.prefill_visibility over core/draft_tree's chain
slots), for a short stand-in prompt: [BOS][4 image patches][3 prompt tokens], then two guessed
actions of 6 tokens each.

    .venv/bin/python tools/draw_fused_prefill.py [--out docs/img/fused_prefill.png]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from specvla_ros.core.draft_tree import chain_nodes  # noqa: E402
from specvla_ros.core.verify import prefill_visibility  # noqa: E402

PROMPT = ["BOS", "p1", "p2", "p3", "p4", "In", "...", "Out:"]
GUESSES = [[101, 102, 103, 104, 105, 106], [111, 112, 113, 114, 115, 116]]  # e.g. the previous action, the one before


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("docs/img/fused_prefill.png"))
    args = parser.parse_args()
    tree = chain_nodes(GUESSES, slots=2, device=torch.device("cpu"), length=6)
    count = len(PROMPT)
    rows = count + len(tree)
    visible = prefill_visibility(torch.arange(count), tree.attention_mask(6), rows)
    labels = PROMPT + [f"guess {slot + 1}: a{depth}" for slot in range(2) for depth in range(1, 7)]

    fig, axis = plt.subplots(figsize=(7.5, 6.5))
    axis.imshow(visible.numpy(), cmap="Blues", vmin=0, vmax=1.4)
    axis.set_xticks(range(rows), labels, rotation=90, fontsize=7)
    axis.set_yticks(range(rows), labels, fontsize=7)
    for edge in (count - 0.5, count + 5.5):
        axis.axhline(edge, color="tab:orange", lw=1)
        axis.axvline(edge, color="tab:orange", lw=1)
    axis.set_xlabel("attends to (key position)")
    axis.set_ylabel("query (one row per input of the single prefill forward)")
    axis.set_title("One target forward: prompt (causal) + two guessed actions\n"
                   "each guess token sees the whole prompt, its own earlier tokens and itself", fontsize=9)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
