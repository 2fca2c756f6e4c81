"""`specvla demo` / `make demo`: the main job on the embedded default.

The simulated tabletop publishes camera frames and a task over real DDS topics (loopback),
specvla_node decodes actions with Spec-VLA and commands the simulated gripper, and the demo
prints what happens live (a line per episode, decode statistics as they come), then a summary
(out/demo/summary.json) and a plot of latency and acceptance length (out/demo/demo.png).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from specvla_ros.core.config import DecoderConfig
from specvla_ros.core.loading import load_decoder
from specvla_ros.models import embedded_pair
from specvla_ros.msg import DecodeStats
from specvla_ros.ros.closed_loop import run_closed_loop
from specvla_ros.sim.metrics import EpisodeRecord
from specvla_ros.sim.tasks import TASKS


def run_demo(seconds: float, relax_bins: int, mode: str, max_steps: int = 0, episodes_per_task: int = 1,
             out_dir: Path = Path("out/demo")) -> int:
    model = embedded_pair()
    print(f"model: {model.description}")
    for line in model.caveats:
        print(f"  note: {line}")
    config = DecoderConfig(mode=mode, relax_bins=relax_bins)
    decoder = load_decoder(str(model.target_path), str(model.draft_path), config)
    episodes = episodes_per_task * len(TASKS)
    print(f"decoder: {mode}, r = {relax_bins} bins; {episodes} episodes ({', '.join(TASKS)}), "
          f"time limit {seconds:g} s ...")

    stats: list[DecodeStats] = []
    boundaries: list[tuple[int, bool]] = []  # (inferences so far, success) at each episode's end

    def on_stats(msg: DecodeStats) -> None:
        stats.append(msg)

    def on_episode(record: EpisodeRecord) -> None:
        mine = stats[boundaries[-1][0] if boundaries else 0:]
        boundaries.append((len(stats), record.success))
        verdict = "success" if record.success else "failure"
        line = f"  episode {len(boundaries)}/{episodes} '{record.instruction}': {verdict} after {record.steps} steps"
        if mine:
            line += (f" | acceptance length {np.mean([s.mean_acceptance_length for s in mine]):.2f}"
                     f" | draft {np.median([s.draft_ms for s in mine]):.1f} ms, verify "
                     f"{np.median([s.verify_ms for s in mine]):.1f} ms, total "
                     f"{np.median([s.total_ms for s in mine]):.1f} ms (median)")
        print(line, flush=True)

    result = run_closed_loop(
        decoder, list(TASKS), episodes_per_task=episodes_per_task,
        node_parameters={"decoder.mode": mode, "decoder.relax_bins": [relax_bins]},
        bridge_parameters={"max_steps": max_steps},
        timeout_s=seconds, on_stats=on_stats, on_episode=on_episode)

    summary = _summary(result.records, stats, result.wall_s, model.description, mode, relax_bins)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot = _plot(stats, boundaries, out_dir / "demo.png", f"{model.description.split(' (')[0]}, {mode}, r = "
                 f"{relax_bins}")
    print(f"\nsummary ({result.wall_s:.1f} s): {summary['successes']}/{summary['episodes']} episodes succeeded, "
          f"{summary['inferences']} inferences, decode p50 {summary['total_ms_p50']:.1f} ms "
          f"(p95 {summary['total_ms_p95']:.1f}), mean acceptance length {summary['mean_acceptance_length']:.2f}, "
          f"{summary['target_forwards_per_action']:.2f} target forwards per action (autoregressive: 7)")
    if len(result.records) < episodes:
        print(f"  the time limit stopped the run after {len(result.records)} of {episodes} episodes "
              "(raise --seconds)")
    print(f"written: {out_dir / 'summary.json'}, {plot}")
    return 0 if stats else 1


def _summary(records: list[EpisodeRecord], stats: list[DecodeStats], wall_s: float, model: str, mode: str,
             relax_bins: int) -> dict:
    total = np.array([s.total_ms for s in stats]) if stats else np.array([np.nan])
    return {
        "model": model,
        "mode": mode,
        "relax_bins": relax_bins,
        "wall_s": wall_s,
        "episodes": len(records),
        "successes": sum(r.success for r in records),
        "per_episode": [{"instruction": r.instruction, "success": r.success, "steps": r.steps} for r in records],
        "inferences": len(stats),
        "total_ms_p50": float(np.percentile(total, 50)),
        "total_ms_p95": float(np.percentile(total, 95)),
        "mean_acceptance_length": float(np.mean([s.mean_acceptance_length for s in stats])) if stats else 0.0,
        "target_forwards_per_action": float(np.mean([s.target_forward_passes for s in stats])) if stats else 0.0,
    }


def _plot(stats: list[DecodeStats], boundaries: list[tuple[int, bool]], path: Path, title: str) -> Path:
    """Latency split (draft / verify / total) and acceptance length per inference, episodes shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (latency, acceptance) = plt.subplots(2, 1, figsize=(9, 5), sharex=True)
    steps = np.arange(len(stats))
    for name, values in (("total", [s.total_ms for s in stats]), ("verify", [s.verify_ms for s in stats]),
                         ("draft", [s.draft_ms for s in stats]), ("prefill", [s.prefill_ms for s in stats])):
        latency.plot(steps, values, lw=0.8, label=name)
    acceptance.plot(steps, [s.mean_acceptance_length for s in stats], lw=0.8, color="tab:purple")
    start = 0
    for end, success in boundaries:
        for axis in (latency, acceptance):
            axis.axvspan(start, end, color="tab:green" if success else "tab:red", alpha=0.08, lw=0)
            axis.axvline(end, color="grey", lw=0.6, ls=":")
        start = end
    latency.set_ylabel("ms per action")
    latency.legend(loc="upper right", fontsize=8, ncol=4)
    latency.set_title(f"{title} (episodes shaded: green success, red failure)", fontsize=9)
    acceptance.set_ylabel("acceptance length")
    acceptance.set_xlabel("inference")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
