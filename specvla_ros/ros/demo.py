"""`specvla demo` / `make demo`: the main job on the embedded default.

The simulated tabletop publishes camera frames and a task over real DDS topics (loopback),
specvla_node decodes actions with Spec-VLA and commands the simulated gripper, and the demo
prints what happens live, then a summary (also written to out/demo/summary.json).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from specvla_ros.core.config import DecoderConfig
from specvla_ros.core.loading import load_decoder
from specvla_ros.embedded_model import embedded_model
from specvla_ros.msg import DecodeStats
from specvla_ros.ros.closed_loop import run_closed_loop
from specvla_ros.sim.metrics import EpisodeRecord

TASKS = ["pick", "push", "place"]


def run_demo(seconds: float, relax_bins: int, mode: str, max_steps: int = 40, out_dir: Path = Path("out/demo")) -> int:
    model = embedded_model()
    print(f"model: {model.description}")
    for line in model.caveats:
        print(f"  note: {line}")
    config = DecoderConfig(mode=mode, relax_bins=relax_bins)
    decoder = load_decoder(str(model.target_path), str(model.draft_path), config)
    print(f"decoder: {mode}, r = {relax_bins} bins; running the closed loop for up to {seconds:g} s ...")

    stats: list[DecodeStats] = []

    def on_stats(msg: DecodeStats) -> None:
        stats.append(msg)
        if len(stats) % 10 == 1:
            print(f"  inference {len(stats):4d}: total {msg.total_ms:6.1f} ms (draft {msg.draft_ms:5.1f}, "
                  f"verify {msg.verify_ms:5.1f}), acceptance length {msg.mean_acceptance_length:.2f}, "
                  f"target forwards {msg.target_forward_passes}")

    result = run_closed_loop(
        decoder, TASKS, episodes_per_task=1,
        node_parameters={"decoder.mode": mode, "decoder.relax_bins": [relax_bins]},
        bridge_parameters={"max_steps": max_steps},
        timeout_s=seconds, on_stats=on_stats)

    summary = _summary(result.records, stats, result.wall_s, model.description, mode, relax_bins)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\nsummary ({result.wall_s:.1f} s): {summary['successes']}/{summary['episodes']} episodes succeeded, "
          f"{summary['inferences']} inferences, decode p50 {summary['total_ms_p50']:.1f} ms "
          f"(p95 {summary['total_ms_p95']:.1f}), mean acceptance length {summary['mean_acceptance_length']:.2f}, "
          f"{summary['target_forwards_per_action']:.2f} target forwards per action (autoregressive: 7)")
    print(f"written: {out_dir / 'summary.json'}")
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
        "inferences": len(stats),
        "total_ms_p50": float(np.percentile(total, 50)),
        "total_ms_p95": float(np.percentile(total, 95)),
        "mean_acceptance_length": float(np.mean([s.mean_acceptance_length for s in stats])) if stats else 0.0,
        "target_forwards_per_action": float(np.mean([s.target_forward_passes for s in stats])) if stats else 0.0,
    }
