"""The A/B report of `specvla bag-compare`: headline, report.md, plots, thumbnails of the worst frames.

What a reader must not be misled about: a token difference in a dimension whose bins have zero
width in the model's action statistics moves nothing (the headline counts actions, in their
units, and names such dimensions); tokens piled at the range limits mean clipped actions
(saturation, per dimension); and the plots stay readable from one frame to ten thousand.
"""
from __future__ import annotations

import heapq
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from specvla_ros.bags.compare import DIM_NAMES, DIM_UNITS, FrameResult, deviation_score

FEW_FRAMES = 60         # up to this many, every frame is drawn as a marker
MANY_FRAMES = 2000      # beyond this, raw latency lines are thin and a rolling median is drawn over them
THUMBNAIL_SIDE = 192    # px, longest side of a worst-frame thumbnail


def _amount(value: float, unit: str) -> str:
    return f"{value:.3g}{' ' + unit if unit else ''}"


def headline(summary: dict) -> str:
    """What matters, in one paragraph: how often and how far the action moves, per dimension, in its units."""
    dims = summary["dimensions"]
    moving = [d for d in dims if not d["zero_width"]]
    moved = [d for d in moving if d["fraction_moved"] > 0]
    text = (f"{summary['frames']} frames: the action differs from AR in {100 * summary['steps_moved_fraction']:.1f}% "
            "of steps")
    if moved:
        text += "; " + ", ".join(
            f"{d['name']} in {100 * d['fraction_moved']:.1f}% (max {_amount(d['metric_max'], d['unit'])})"
            for d in moved)
        unchanged = [d["name"] for d in moving if d["fraction_moved"] == 0]
        if unchanged:
            text += f"; {', '.join(unchanged)} never"
    text += "."
    zero = [d for d in dims if d["zero_width"]]
    if zero:
        names = " and ".join(d["name"] for d in zero)
        text += f" {names} {'has' if len(zero) == 1 else 'have'} zero width in this model's action statistics " \
                "(q01 = q99)"
        if any(d["fraction_differing"] > 0 for d in zero):
            shares = ", ".join(f"{100 * d['fraction_differing']:.1f}%" for d in zero)
            text += f": {'its' if len(zero) == 1 else 'their'} tokens differ in {shares} of steps and move nothing."
        else:
            text += ": a token difference there would move nothing."
    # The gripper's command is open / closed: its range limits are its ordinary values.
    saturated = [d for d in moving if d["name"] != "gripper" and max(d["saturation"].values()) >= 0.5]
    if saturated:
        low, high = summary["range_limit_bins"]
        text += (" Most tokens sit at the range limits (bin " + f"{low} or {high}) in "
                 + ", ".join(f"{d['name']} ({100 * d['saturation']['autoregressive']:.0f}% under AR)"
                             for d in saturated)
                 + ": those actions are clipped to the dataset's range.")
    return text


# ----- worst frames ------------------------------------------------------------------------------
@dataclass(order=True)
class WorstFrame:
    score: float                                   # bins moved, in the dimension that moved most
    index: int
    frame: FrameResult = field(compare=False)
    thumbnail: np.ndarray = field(compare=False)   # RGB, longest side THUMBNAIL_SIDE


class WorstFrames:
    """Keeps thumbnails of the `count` frames whose actions moved furthest from AR, as frames stream by."""

    def __init__(self, width: np.ndarray, count: int = 6) -> None:
        self.width, self.count = width, count
        self._heap: list[WorstFrame] = []

    def offer(self, frame: FrameResult, image: np.ndarray) -> None:
        score = deviation_score(frame, self.width)
        if score <= 0 or (len(self._heap) == self.count and score <= self._heap[0].score):
            return
        scale = THUMBNAIL_SIDE / max(image.shape[:2])
        thumbnail = cv2.resize(image, (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale))),
                               interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_NEAREST)
        item = WorstFrame(score, -frame.index, frame, thumbnail)  # equal scores: the earlier frame stays
        if len(self._heap) < self.count:
            heapq.heappush(self._heap, item)
        else:
            heapq.heapreplace(self._heap, item)

    def frames(self) -> list[WorstFrame]:
        """Largest deviation first."""
        return sorted(self._heap, reverse=True)


def _moves(frame: FrameResult, width: np.ndarray, top: int = 2) -> str:
    """'dz +12 bins (0.0019 m), gripper -3 bins (0.024)' for the dimensions that moved most."""
    apart = np.array(frame.spec_action) - np.array(frame.ar_action)
    bins = np.where(width > 0, np.abs(apart) / np.where(width > 0, width, 1.0), 0.0)
    order = [d for d in np.argsort(-bins) if bins[d] > 0][:top]
    return ", ".join(f"{DIM_NAMES[d]} {'+' if apart[d] > 0 else '-'}{bins[d]:.0f} bins "
                     f"({_amount(abs(apart[d]), DIM_UNITS[d])})" for d in order)


def worst_frames_figure(worst: list[WorstFrame], width: np.ndarray):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(3, len(worst))
    rows = -(-len(worst) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, 3.4 * rows), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, item in zip(axes.flat, worst, strict=False):
        axis.imshow(item.thumbnail)
        axis.set_title(f"frame {item.frame.index}: {_moves(item.frame, width)}\n'{item.frame.instruction[:40]}'",
                       fontsize=7)
    fig.suptitle("frames whose action moved furthest from AR (Spec-VLA - AR)", fontsize=9)
    fig.tight_layout()
    return fig


# ----- plots ---------------------------------------------------------------------------------------
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


def deviation_figure(frames: list[FrameResult], summary: dict):
    """|AR bin - Spec-VLA bin| over all tokens and at the first differing token (where r bounds it), and
    per dimension how often the token and the action differ."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

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
        axis.yaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        axis.set_ylim(0, max(1.0, bottom.max()) * 1.15)
    axes[0].set_ylabel("(step, dimension) pairs")
    axes[0].legend(fontsize=7, ncol=2)
    axes[1].axvline(max(max(relax), 1) - 0.5, color="black", ls="--", lw=1)
    axes[1].text(max(max(relax), 1) - 0.45, axes[1].get_ylim()[1] * 0.9, f" r = {relax}", fontsize=7)
    axes[1].set_ylabel("steps")
    dims = summary["dimensions"]
    positions = np.arange(len(dims))
    axes[2].bar(positions - 0.2, [100 * d["fraction_differing"] for d in dims], 0.4, color=colors[:7], alpha=0.45,
                label="token differs")
    axes[2].bar(positions + 0.2, [100 * d["fraction_moved"] for d in dims], 0.4, color=colors[:7],
                label="action differs")
    axes[2].set_xticks(positions, [d["name"] + ("\n(0 width)" if d["zero_width"] else "") for d in dims], fontsize=7)
    axes[2].set_ylim(0, 105)
    axes[2].set_ylabel("steps (%)")
    axes[2].legend(fontsize=7)
    axes[2].set_title(f"action differs in {100 * summary['steps_moved_fraction']:.0f}% of {summary['frames']} "
                      f"step{'s' if summary['frames'] != 1 else ''}", fontsize=10)
    fig.tight_layout()
    return fig


def _rolling_median(values: np.ndarray, window: int) -> np.ndarray:
    padded = np.pad(values, (window // 2, window - 1 - window // 2), mode="edge")
    return np.median(np.lib.stride_tricks.sliding_window_view(padded, window), axis=1)


def timeline_figure(frames: list[FrameResult]):
    """Latency of both decoders and the acceptance length over the bag, frames whose action differs marked.
    Markers for a few frames, thin lines under a rolling median for many; frame ticks are whole numbers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    count = len(frames)
    index = np.array([f.index for f in frames])
    style = {"marker": "o", "ms": 3} if count <= FEW_FRAMES else {}
    width = 1.0 if count <= MANY_FRAMES else 0.3
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 5.2), sharex=True)
    series = (("autoregressive", [f.ar_ms for f in frames], "tab:gray"),
              ("Spec-VLA", [f.spec_ms for f in frames], "tab:blue"))
    for label, values, color in series:
        values = np.asarray(values)
        top.plot(index, values, color=color, lw=width, alpha=1.0 if count <= MANY_FRAMES else 0.35,
                 label=label if count <= MANY_FRAMES else None, **style)
        if count > MANY_FRAMES:
            window = count // 100
            top.plot(index, _rolling_median(values, window), color=color, lw=1.4,
                     label=f"{label} (median of {window} frames)")
    top.set_ylabel("decode latency (ms)")
    top.legend(fontsize=8)
    acceptance = np.array([f.acceptance_length for f in frames])
    bottom.plot(index, acceptance, color="tab:green", lw=width, label="acceptance length",
                alpha=1.0 if count <= MANY_FRAMES else 0.35, **style)
    if count > MANY_FRAMES:
        bottom.plot(index, _rolling_median(acceptance, count // 100), color="tab:green", lw=1.4)
    differing = [f.index for f in frames if f.first_difference is not None]
    if differing:
        bottom.plot(differing, np.full(len(differing), 1.0), "|", color="tab:red", ms=10,
                    alpha=min(1.0, max(0.05, 300 / len(differing))), label="token differs from AR")
    bottom.set_ylabel("tokens per verify step")
    bottom.set_xlabel("frame")
    bottom.legend(fontsize=8)
    if count < 10:  # every frame gets its tick; MaxNLocator would fall back to fractions on a tiny range
        bottom.set_xticks(index)
        bottom.set_xlim(index.min() - 0.5, index.max() + 0.5)
    else:
        bottom.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    return fig


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ----- report.md and the files -------------------------------------------------------------------------
def markdown(summary: dict, meta: dict, worst: list[WorstFrame], width: np.ndarray) -> str:
    """report.md: what was compared, the headline, the per-dimension table, the checks and the plots."""
    latency = summary["latency_ms"]
    rule = summary["first_difference_rule"]
    low, high = summary["range_limit_bins"]
    lines = [
        f"# AR vs Spec-VLA on `{meta['bag']}`", "",
        f"{summary['frames']} frames from `{meta['camera_topic']}` with {meta['task_source']}; "
        f"model `{meta['model']}`, draft `{meta['draft']}`, relax_bins r = {summary['relax_bins']}, "
        f"device {meta['device']}. Actions are un-normalized and unclamped.", "",
        f"**{headline(summary)}**", "",
        "| dimension | r | 1 bin | steps: token differs | steps: action differs | p99 / max \\|Δ\\| | "
        f"\\|Δ\\| bins p50 / p99 / max | tokens at bin {low} or {high}: AR, Spec-VLA | "
        "first differences: count, max \\|Δ\\| bins | bound there (r bins) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for dim in summary["dimensions"]:
        unit = dim["unit"]
        one_bin = "0 (zero width)" if dim["zero_width"] else _amount(dim["bin_width"], unit)
        moved = "0% (moves nothing)" if dim["zero_width"] else f"{100 * dim['fraction_moved']:.1f}%"
        saturation = dim["saturation"]
        lines.append(f"| {dim['name']} | {dim['r']} | {one_bin} | {100 * dim['fraction_differing']:.1f}% | {moved} | "
                     f"{_amount(dim['metric_p99'], unit)} / {_amount(dim['metric_max'], unit)} | "
                     f"{dim['bins_p50']:.0f} / {dim['bins_p99']:.0f} / {dim['bins_max']} | "
                     f"{100 * saturation['autoregressive']:.0f}%, {100 * saturation['speculative']:.0f}% | "
                     f"{dim['first_differences']}, {dim['first_difference_bins_max']} | "
                     f"{_amount(dim['first_difference_bound'], unit)} |")
    lines += [
        "",
        f"- Steps whose action differs from AR: **{100 * summary['steps_moved_fraction']:.1f}%**; steps where any "
        f"token differs: {100 * summary['steps_differing_fraction']:.1f}%; steps with a token further than its r "
        f"from AR's (a relaxed token changes the tokens after it): **{100 * summary['steps_beyond_r_fraction']:.1f}%**.",
        f"- Relaxed rule at the first differing token (same prefix, so |Δ| ≤ r): "
        f"**{'holds' if rule['holds'] else 'VIOLATED'}** in {rule['steps_checked'] - len(rule['violations'])}"
        f"/{rule['steps_checked']} differing steps.",
        f"- Acceptance length: mean {summary['acceptance_length']['mean']:.2f} tokens per verify step; "
        f"{summary['target_forwards_per_action']['speculative']:.2f} target forwards per action (AR: 7).",
        f"- Latency p50: AR {latency['autoregressive']['p50']:.1f} ms, Spec-VLA {latency['speculative']['p50']:.1f} ms "
        f"(draft {latency['speculative']['draft_mean']:.1f} + verify {latency['speculative']['verify_mean']:.1f} ms "
        f"mean); speedup {latency['speedup_p50']:.2f}x at p50, {latency['speedup_mean']:.2f}x on the mean.",
    ]
    if meta.get("frames_before_task"):
        lines.append(f"- {meta['frames_before_task']} frames came before the first task and were not decoded.")
    bad = meta.get("bad_frames", [])
    if bad:
        lines.append(f"- {len(bad)} frames could not be read and were skipped (--skip-bad-frames):")
        lines += [f"  - frame {b['index']} (bag time {b['time_ns']} ns): {b['reason']}" for b in bad]
    lines += ["", "![deviation](deviation.png)", "", "![latency and acceptance over the bag](timeline.png)", ""]
    if worst:
        lines += ["![frames whose action moved furthest](worst_frames.png)", "",
                  "Frames whose action moved furthest from AR: "
                  + "; ".join(f"frame {w.frame.index} ({_moves(w.frame, width)})" for w in worst) + ".", ""]
    else:
        lines += ["No frame's action differs from AR: no thumbnails.", ""]
    return "\n".join(lines)


def write_report(out_dir: Path, frames: list[FrameResult], summary: dict, meta: dict,
                 worst: list[WorstFrame] | None = None, width: Any = None) -> list[Path]:
    """report.json, report.md, deviation.png, timeline.png and, when some action moved, worst_frames.png."""
    worst = worst or []
    width = np.asarray(width if width is not None else [d["bin_width"] for d in summary["dimensions"]])
    out_dir.mkdir(parents=True, exist_ok=True)
    report = {"meta": meta, "summary": summary,
              "worst_frames": [{"index": w.frame.index, "bins_moved": w.score} for w in worst],
              "frames": [{**asdict(f), "first_difference": f.first_difference} for f in frames]}
    paths = [out_dir / "report.json", out_dir / "report.md"]
    paths[0].write_text(json.dumps(report, indent=2) + "\n")
    paths[1].write_text(markdown(summary, meta, worst, width))
    paths.append(_save(deviation_figure(frames, summary), out_dir / "deviation.png"))
    paths.append(_save(timeline_figure(frames), out_dir / "timeline.png"))
    stale = out_dir / "worst_frames.png"
    if worst:
        paths.append(_save(worst_frames_figure(worst, width), stale))
    elif stale.exists():
        stale.unlink()  # from an earlier run into the same folder: it would show frames of another comparison
    return paths
