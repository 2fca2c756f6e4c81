"""`specvla bag-compare`: plain (AR) decoding vs Spec-VLA on every frame of a bag, offline, no ROS.

The question a team asks before turning relaxed acceptance on: on our own recordings, how far do
the actions move from plain greedy decoding, and what does it buy? Both decoders share one
backbone and see each frame in turn; the report gives per-dimension deviation in bins and in the
action's units, the fraction of steps that differ, acceptance length, latency, and checks the
relaxed rule where it applies exactly: at the first token where the two outputs differ, both
decoders had the same prefix, so the drafted token is within r bins of the target's own choice.
Later tokens are conditioned on different prefixes and carry no such bound.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

DIM_NAMES = ("dx", "dy", "dz", "droll", "dpitch", "dyaw", "gripper")
DIM_UNITS = ("m", "m", "m", "rad", "rad", "rad", "")  # gripper: the dataset's unitless command


@dataclass(frozen=True)
class FrameResult:
    """One frame decoded both ways. Actions are un-normalized, before the node's safety clamp."""

    index: int
    stamp_ns: int
    instruction: str
    ar_bins: tuple[int, ...]
    spec_bins: tuple[int, ...]
    ar_action: tuple[float, ...]
    spec_action: tuple[float, ...]
    ar_ms: float
    spec_ms: float
    spec_draft_ms: float
    spec_verify_ms: float
    acceptance_length: float
    spec_forwards: int

    @property
    def first_difference(self) -> int | None:
        """Index of the first action dimension whose token differs, or None when all 7 agree."""
        return next((d for d, (a, s) in enumerate(zip(self.ar_bins, self.spec_bins, strict=True)) if a != s), None)


def compare_frames(observations: Iterable[tuple[int, np.ndarray, str]], autoregressive: Any, speculative: Any,
                   warmup: int = 1, max_frames: int | None = None,
                   log: Callable[[str], None] | None = None) -> list[FrameResult]:
    """Decode every (stamp_ns, image, instruction) with both decoders; the first `warmup` frames are decoded
    once more beforehand so one-time costs (allocations, lazy init) stay out of the latencies."""
    results: list[FrameResult] = []
    for index, (stamp_ns, image, instruction) in enumerate(observations):
        if max_frames is not None and index >= max_frames:
            break
        if index < warmup:
            autoregressive.decode(image, instruction)
            speculative.decode(image, instruction)
        ar = autoregressive.decode(image, instruction)
        spec = speculative.decode(image, instruction)
        results.append(FrameResult(
            index=index, stamp_ns=int(stamp_ns), instruction=instruction,
            ar_bins=tuple(ar.bins), spec_bins=tuple(spec.bins),
            ar_action=tuple(float(v) for v in ar.action), spec_action=tuple(float(v) for v in spec.action),
            ar_ms=ar.stats.total_ms, spec_ms=spec.stats.total_ms, spec_draft_ms=spec.stats.draft_ms,
            spec_verify_ms=spec.stats.verify_ms, acceptance_length=spec.stats.mean_acceptance_length,
            spec_forwards=spec.stats.target_forward_passes))
        if log and (index + 1) % 25 == 0:
            log(f"  {index + 1} frames")
    return results


def bin_width(speculative: Any) -> np.ndarray:
    """One bin in the action's own units, per dimension (what one bin of relaxation can move an action)."""
    tokenizer = speculative.backbone.action_tokenizer
    normalized = float(tokenizer.bin_centers[1] - tokenizer.bin_centers[0])
    stats = speculative.norm_stats
    return np.where(stats.mask, 0.5 * normalized * (stats.q99 - stats.q01), normalized)


def _stats(values: np.ndarray) -> dict[str, float]:
    return {"mean": float(np.mean(values)), "p50": float(np.percentile(values, 50)),
            "p95": float(np.percentile(values, 95)), "max": float(np.max(values))}


def summarize(frames: list[FrameResult], relax_bins: tuple[int, ...], width: np.ndarray) -> dict:
    """The report's numbers (JSON-ready)."""
    ar_bins = np.array([f.ar_bins for f in frames])
    spec_bins = np.array([f.spec_bins for f in frames])
    bins_apart = np.abs(ar_bins - spec_bins)
    metric_apart = np.abs(np.array([f.ar_action for f in frames]) - np.array([f.spec_action for f in frames]))
    firsts = [(f.index, f.first_difference) for f in frames if f.first_difference is not None]
    violations = [{"frame": i, "dimension": DIM_NAMES[d], "bins_apart": int(bins_apart[i, d]), "r": relax_bins[d]}
                  for i, d in firsts if bins_apart[i, d] > relax_bins[d]]
    dimensions = []
    for d, name in enumerate(DIM_NAMES):
        dimensions.append({
            "name": name, "unit": DIM_UNITS[d], "r": relax_bins[d],
            "fraction_differing": float(np.mean(bins_apart[:, d] > 0)),
            "bins_mean": float(np.mean(bins_apart[:, d])), "bins_max": int(np.max(bins_apart[:, d])),
            "metric_mean": float(np.mean(metric_apart[:, d])), "metric_max": float(np.max(metric_apart[:, d])),
            "bin_width": float(width[d]),
            "first_difference_bound": float(relax_bins[d] * width[d]),
            "first_differences": sum(1 for _, first in firsts if first == d),
            "first_difference_bins_max": max((int(bins_apart[i, d]) for i, first in firsts if first == d), default=0),
        })
    ar_ms = np.array([f.ar_ms for f in frames])
    spec_ms = np.array([f.spec_ms for f in frames])
    return {
        "frames": len(frames),
        "relax_bins": list(relax_bins),
        "steps_differing_fraction": float(np.mean(bins_apart.max(axis=1) > 0)),
        "first_difference_rule": {"holds": not violations, "steps_checked": len(firsts), "violations": violations},
        "dimensions": dimensions,
        "acceptance_length": _stats(np.array([f.acceptance_length for f in frames])),
        "target_forwards_per_action": {"speculative": float(np.mean([f.spec_forwards for f in frames])),
                                       "autoregressive": 7.0},
        "latency_ms": {
            "autoregressive": _stats(ar_ms),
            "speculative": {**_stats(spec_ms), "draft_mean": float(np.mean([f.spec_draft_ms for f in frames])),
                            "verify_mean": float(np.mean([f.spec_verify_ms for f in frames]))},
            "speedup_mean": float(np.mean(ar_ms) / np.mean(spec_ms)),
            "speedup_p50": float(np.percentile(ar_ms, 50) / np.percentile(spec_ms, 50)),
        },
    }


def deviation_buckets(apart: np.ndarray, r_max: int) -> tuple[list[str], list[np.ndarray]]:
    """|bin difference| grouped for a readable histogram: each value 0..R on its own, then three wider
    groups beyond R (R = the largest r, at least 1). Returns labels and per-bucket masks over `apart`."""
    top = max(r_max, 1)
    labels = [str(v) for v in range(top + 1)]
    masks = [apart == v for v in range(top + 1)]
    for low, high in ((top + 1, 4 * top), (4 * top + 1, 16 * top)):
        labels.append(f"{low}-{high}")
        masks.append((apart >= low) & (apart <= high))
    labels.append(f">{16 * top}")
    masks.append(apart > 16 * top)
    return labels, masks


def plot_deviation(frames: list[FrameResult], summary: dict, path: Path) -> None:
    """|AR bin - Spec-VLA bin| over all tokens and at the first differing token (where r bounds it), and
    the fraction of steps each dimension differs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    apart = np.abs(np.array([f.ar_bins for f in frames]) - np.array([f.spec_bins for f in frames]))
    relax = summary["relax_bins"]
    first = np.full(apart.shape, -1)
    for row, frame in enumerate(frames):
        if frame.first_difference is not None:
            first[row, frame.first_difference] = apart[row, frame.first_difference]
    colors = plt.get_cmap("tab10").colors
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8), gridspec_kw={"width_ratios": [3, 2, 2]})
    panels = ((axes[0], apart, f"every differing token ({int((apart > 0).sum())} of {apart.size})"),
              (axes[1], first, "first differing token of each step"))
    for axis, values, title in panels:
        labels, masks = deviation_buckets(values, max(relax))
        labels, masks = labels[1:], masks[1:]  # equal tokens would dwarf everything else
        bottom = np.zeros(len(labels))
        for d, name in enumerate(DIM_NAMES):
            counts = np.array([mask[:, d].sum() for mask in masks])
            axis.bar(labels, counts, bottom=bottom, color=colors[d], label=name)
            bottom += counts
        axis.set_xlabel("|AR bin - Spec-VLA bin|")
        axis.set_title(title, fontsize=10)
        axis.tick_params(axis="x", labelsize=7, rotation=45)
    axes[0].set_ylabel("(step, dimension) pairs")
    axes[0].legend(fontsize=7, ncol=2)
    axes[1].set_ylim(0, axes[1].get_ylim()[1] * 1.15)
    axes[1].axvline(max(max(relax), 1) - 0.5, color="black", ls="--", lw=1)
    axes[1].text(max(max(relax), 1) - 0.45, axes[1].get_ylim()[1] * 0.9, f" r = {relax}", fontsize=7)
    axes[1].set_ylabel("steps")
    fractions = [100.0 * dim["fraction_differing"] for dim in summary["dimensions"]]
    axes[2].bar(DIM_NAMES, fractions, color=colors[:7])
    axes[2].set_ylabel("steps where the token differs (%)")
    axes[2].set_title(f"{100 * summary['steps_differing_fraction']:.0f}% of {summary['frames']} steps differ",
                      fontsize=10)
    axes[2].tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_timeline(frames: list[FrameResult], path: Path) -> None:
    """Latency of both decoders and the acceptance length over the bag, frames that differ marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    index = np.array([f.index for f in frames])
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 5.2), sharex=True)
    top.plot(index, [f.ar_ms for f in frames], label="autoregressive", color="tab:gray", lw=1)
    top.plot(index, [f.spec_ms for f in frames], label="Spec-VLA", color="tab:blue", lw=1)
    top.set_ylabel("decode latency (ms)")
    top.legend(fontsize=8)
    bottom.plot(index, [f.acceptance_length for f in frames], color="tab:green", lw=1, label="acceptance length")
    differing = [f.index for f in frames if f.first_difference is not None]
    bottom.plot(differing, np.full(len(differing), 1.0), "|", color="tab:red", ms=10,
                label="action differs from AR")
    bottom.set_ylabel("tokens per verify step")
    bottom.set_xlabel("frame")
    bottom.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(summary: dict, meta: dict) -> str:
    """report.md: what was compared, the per-dimension table, the checks and the plots."""
    latency = summary["latency_ms"]
    rule = summary["first_difference_rule"]
    lines = [
        f"# AR vs Spec-VLA on `{meta['bag']}`", "",
        f"{summary['frames']} frames from `{meta['camera_topic']}` with tasks from `{meta['task_topic']}`; "
        f"model `{meta['model']}`, draft `{meta['draft']}`, relax_bins r = {summary['relax_bins']}, "
        f"device {meta['device']}. Actions are un-normalized and unclamped.", "",
        "| dimension | r | steps differing | mean \\|Δ\\| bins | max \\|Δ\\| bins | max \\|Δ\\| | 1 bin | "
        "first differences: count, max \\|Δ\\| bins | bound there (r bins) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for dim in summary["dimensions"]:
        unit = f" {dim['unit']}" if dim["unit"] else ""
        lines.append(f"| {dim['name']} | {dim['r']} | {100 * dim['fraction_differing']:.1f}% | {dim['bins_mean']:.2f} "
                     f"| {dim['bins_max']} | {dim['metric_max']:.4g}{unit} | {dim['bin_width']:.3g}{unit} | "
                     f"{dim['first_differences']}, {dim['first_difference_bins_max']} | "
                     f"{dim['first_difference_bound']:.3g}{unit} |")
    lines += [
        "",
        f"- Steps whose action differs from AR in any dimension: **{100 * summary['steps_differing_fraction']:.1f}%**.",
        f"- Relaxed rule at the first differing token (same prefix, so |Δ| ≤ r): "
        f"**{'holds' if rule['holds'] else 'VIOLATED'}** in {rule['steps_checked'] - len(rule['violations'])}"
        f"/{rule['steps_checked']} differing steps.",
        f"- Acceptance length: mean {summary['acceptance_length']['mean']:.2f} tokens per verify step; "
        f"{summary['target_forwards_per_action']['speculative']:.2f} target forwards per action (AR: 7).",
        f"- Latency p50: AR {latency['autoregressive']['p50']:.1f} ms, Spec-VLA {latency['speculative']['p50']:.1f} ms "
        f"(draft {latency['speculative']['draft_mean']:.1f} + verify {latency['speculative']['verify_mean']:.1f} ms "
        f"mean); speedup {latency['speedup_p50']:.2f}x at p50, {latency['speedup_mean']:.2f}x on the mean.",
        "",
        "![deviation](deviation.png)", "", "![latency and acceptance over the bag](timeline.png)", "",
    ]
    return "\n".join(lines)


def write_report(out_dir: Path, frames: list[FrameResult], summary: dict, meta: dict) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    report = {"meta": meta, "summary": summary,
              "frames": [{**asdict(f), "first_difference": f.first_difference} for f in frames]}
    paths = [out_dir / "report.json", out_dir / "report.md", out_dir / "deviation.png", out_dir / "timeline.png"]
    paths[0].write_text(json.dumps(report, indent=2) + "\n")
    paths[1].write_text(markdown(summary, meta))
    plot_deviation(frames, summary, paths[2])
    plot_timeline(frames, paths[3])
    return paths


def run(args: argparse.Namespace) -> int:
    """`specvla bag-compare`: exit 0 on success, 1 with a message for bag, model or configuration errors."""
    from specvla_ros.core.errors import SpecVLAError

    try:
        return _run(args)
    except SpecVLAError as error:
        print(f"specvla bag-compare: {error}", file=sys.stderr)
        return 1


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def _run(args: argparse.Namespace) -> int:
    from specvla_ros.bags import BagError, read_observations
    from specvla_ros.core.config import DecoderConfig, TreeConfig
    from specvla_ros.core.decoder import build_decoder
    from specvla_ros.core.errors import ConfigError
    from specvla_ros.core.loading import load_backbone, load_draft

    started = time.perf_counter()
    if args.threads > 0:
        import torch

        torch.set_num_threads(args.threads)
    observations = read_observations(args.bag, args.camera_topic, args.task_topic)  # checks the bag first
    if args.model is None:
        from specvla_ros.embedded_model import embedded_model

        model = embedded_model()
        args.model, args.draft = model.target_path, model.draft_path
        print(f"model: {model.description}", file=sys.stderr)
    if args.draft is None:
        raise ConfigError("--draft is needed with --model: Spec-VLA decodes with a draft head")
    relax = args.relax_bins[0] if len(args.relax_bins) == 1 else tuple(args.relax_bins)
    tree = TreeConfig(top_k=args.tree_top_k, depth=args.tree_depth, total_tokens=args.tree_total_tokens)
    spec_config = DecoderConfig(mode="speculative", relax_bins=relax, tree=tree, unnorm_key=args.unnorm_key)
    backbone = load_backbone(args.model, args.device, args.dtype)  # one backbone, shared by both decoders
    autoregressive = build_decoder(backbone, None, DecoderConfig(mode="autoregressive", unnorm_key=args.unnorm_key))
    speculative = build_decoder(backbone, load_draft(args.draft, backbone), spec_config)

    print(f"decoding {observations.camera_frames} frames of {args.bag} with AR and Spec-VLA r = "
          f"{list(spec_config.relax_bins)} ...", file=sys.stderr)
    frames = compare_frames(observations, autoregressive, speculative, warmup=args.warmup,
                            max_frames=args.max_frames, log=lambda line: print(line, file=sys.stderr))
    if not frames:
        raise BagError(f"{args.bag}: no camera frame on {args.camera_topic} follows a task on {args.task_topic} "
                       f"({observations.skipped_before_task} frames came before any task)")
    summary = summarize(frames, spec_config.relax_bins, bin_width(speculative))
    meta = {"bag": str(args.bag), "camera_topic": args.camera_topic, "task_topic": args.task_topic,
            "model": str(args.model), "draft": str(args.draft), "device": args.device, "dtype": args.dtype,
            "torch_threads": _torch_threads(),
            "tree": asdict(tree), "frames_before_task": observations.skipped_before_task,
            "wall_s": round(time.perf_counter() - started, 2)}
    paths = write_report(args.out, frames, summary, meta)
    latency = summary["latency_ms"]
    print(f"{len(frames)} frames: {100 * summary['steps_differing_fraction']:.1f}% of steps differ from AR; "
          f"acceptance length {summary['acceptance_length']['mean']:.2f}; latency p50 AR "
          f"{latency['autoregressive']['p50']:.1f} ms vs Spec-VLA {latency['speculative']['p50']:.1f} ms "
          f"({latency['speedup_p50']:.2f}x); first-difference rule "
          f"{'holds' if summary['first_difference_rule']['holds'] else 'VIOLATED'}")
    print("written: " + ", ".join(str(p) for p in paths))
    return 0
