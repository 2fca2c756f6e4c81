#!/usr/bin/env python3
"""Draw one real Spec-VLA step as a picture: docs/img/draft_tree.png.

Decodes a synthetic observation with the embedded model pair, takes the first verify step's
trace, and draws the draft tree by depth: the accepted path in green, other accepted nodes in
light green (relaxed rule, not on the longest path), rejected nodes in grey.

    .venv/bin/python tools/draw_draft_tree.py [--relax-bins 3] [--out docs/img/draft_tree.png]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from specvla_ros.core.config import DecoderConfig, TreeConfig  # noqa: E402
from specvla_ros.core.decoder import StepTrace  # noqa: E402
from specvla_ros.core.loading import load_decoder  # noqa: E402
from specvla_ros.models import embedded_pair  # noqa: E402


def draw(step: StepTrace, bin_of, out: Path, title: str) -> None:
    tree = step.tree
    depths = tree.depths.tolist()
    parents = tree.parents.tolist()
    rows_by_depth: dict[int, list[int]] = {}
    for node, depth in enumerate(depths):
        rows_by_depth.setdefault(depth, []).append(node)
    xy = {-1: (0.0, 0.0)}
    for depth, nodes in rows_by_depth.items():
        for order, node in enumerate(nodes):
            xy[node] = (float(depth), (len(nodes) - 1) / 2.0 - order)
    fig, ax = plt.subplots(figsize=(10, 7))
    on_path = set(step.path)
    for node in range(len(depths)):
        parent_xy, node_xy = xy[parents[node]], xy[node]
        colour = "tab:green" if node in on_path else "lightgrey"
        ax.plot([parent_xy[0], node_xy[0]], [parent_xy[1], node_xy[1]], color=colour, lw=2 if node in on_path else 1,
                zorder=1)
    ax.scatter([0], [0], s=900, color="tab:blue", zorder=2)
    ax.text(0, 0, f"root\nbin {bin_of(step.root)}", ha="center", va="center", color="white", fontsize=7, zorder=3)
    for node in range(len(depths)):
        accepted = bool(step.accepted[node])
        colour = "tab:green" if node in on_path else ("palegreen" if accepted else "whitesmoke")
        ax.scatter(*xy[node], s=500, color=colour, edgecolors="grey", zorder=2)
        target_bin = bin_of(int(step.target_tokens[parents[node] + 1]))
        ax.text(*xy[node], f"{bin_of(int(tree.tokens[node]))}\n({target_bin})", ha="center", va="center",
                fontsize=6, zorder=3)
    ax.set_xlabel("depth (drafted token index after the root)")
    ax.set_yticks([])
    ax.set_xticks(range(0, max(depths) + 1))
    ax.set_title(title, fontsize=9)
    for spine in ("left", "right", "top"):
        ax.spines[spine].set_visible(False)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--relax-bins", type=int, default=3)
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--out", type=Path, default=Path("docs/img/draft_tree.png"))
    args = parser.parse_args()
    model = embedded_pair()
    tree = TreeConfig(top_k=4, depth=4, total_tokens=20)
    decoder = load_decoder(model.target_path, model.draft_path, DecoderConfig(relax_bins=args.relax_bins, tree=tree))
    image = np.random.default_rng(args.seed).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    trace: list[StepTrace] = []
    result = decoder.decode(image, "pick up the red cube", trace=trace)
    step = trace[0]
    tokenizer = decoder.backbone.action_tokenizer

    def bin_of(token: int) -> int:
        return int(tokenizer.token_to_bin(np.array(token)))

    title = (f"One Spec-VLA step (r = {args.relax_bins}; {len(step.tree)} drafted nodes, top_k 4, depth 4). "
             f"Node label: drafted bin (target's bin)\naccepted path {len(step.path)} tokens + bonus bin "
             f"{bin_of(step.bonus)}; green = accepted path, pale green = accepted elsewhere, grey = rejected")
    draw(step, bin_of, args.out, title)
    print(f"wrote {args.out}; action bins {result.bins}; accepted per step {result.stats.accepted_per_step}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
