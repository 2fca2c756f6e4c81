"""Success-rate statistics and report writing (JSON for machines, a markdown table for docs).

Success rates come with a 95% Wilson score interval: unlike the normal approximation it stays
inside [0, 1] and is honest at 0/N and N/N, which small closed-loop evaluations hit often.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class EpisodeRecord:
    """What happened in one evaluated episode."""

    task: str
    seed: int
    instruction: str
    success: bool
    steps: int
    refused_actions: int = 0
    clamped_actions: int = 0
    policy_ms: list[float] = field(default_factory=list)  # wall clock around each policy call
    latency_ms: list[float] = field(default_factory=list)  # the policy's own decode latency
    acceptance_length: list[float] = field(default_factory=list)


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (default 95%)."""
    if n <= 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def _stats(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    arr = np.asarray(values, dtype=np.float64)
    return {"mean": float(arr.mean()), "p95": float(np.percentile(arr, 95)), "n": int(arr.size)}


def summarize(records: list[EpisodeRecord]) -> dict[str, Any]:
    """Aggregate a list of episodes (one task, or all) into the numbers the report shows."""
    n = len(records)
    wins = sum(r.success for r in records)
    low, high = wilson_interval(wins, n)
    lengths = [r.steps for r in records]
    success_lengths = [r.steps for r in records if r.success]
    return {
        "episodes": n,
        "successes": wins,
        "success_rate": wins / n if n else 0.0,
        "ci95": [low, high],
        "mean_episode_length": float(np.mean(lengths)) if lengths else 0.0,
        "mean_success_length": float(np.mean(success_lengths)) if success_lengths else None,
        "refused_actions": sum(r.refused_actions for r in records),
        "clamped_actions": sum(r.clamped_actions for r in records),
        "policy_ms": _stats([v for r in records for v in r.policy_ms]),
        "decode_latency_ms": _stats([v for r in records for v in r.latency_ms]),
        "acceptance_length": _stats([v for r in records for v in r.acceptance_length]),
    }


def build_report(records: list[EpisodeRecord], meta: dict[str, Any]) -> dict[str, Any]:
    """Full report: metadata, per-task and overall summaries, and the per-episode list."""
    tasks = list(dict.fromkeys(r.task for r in records))
    per_episode = [
        {k: v for k, v in asdict(r).items() if k not in ("policy_ms", "latency_ms", "acceptance_length")}
        for r in records
    ]
    return {
        "meta": meta,
        "tasks": {t: summarize([r for r in records if r.task == t]) for t in tasks},
        "overall": summarize(records),
        "episodes": per_episode,
    }


def _ms(stats: dict[str, float] | None) -> str:
    return "—" if stats is None else f"{stats['mean']:.1f} / {stats['p95']:.1f}"


def to_markdown(report: dict[str, Any]) -> str:
    """A markdown table: one row per task plus an overall row."""
    lines = [
        "| task | episodes | success | 95% CI | mean length (steps) | policy ms mean / p95 "
        "| decode ms mean / p95 | acceptance length |",
        "|---|---|---|---|---|---|---|---|",
    ]
    rows = [*report["tasks"].items(), ("**all**", report["overall"])]
    for name, s in rows:
        acc = "—" if s["acceptance_length"] is None else f"{s['acceptance_length']['mean']:.2f}"
        lines.append(
            f"| {name} | {s['episodes']} | {100 * s['success_rate']:.1f}% "
            f"| {100 * s['ci95'][0]:.1f}–{100 * s['ci95'][1]:.1f}% | {s['mean_episode_length']:.1f} "
            f"| {_ms(s['policy_ms'])} | {_ms(s['decode_latency_ms'])} | {acc} |"
        )
    return "\n".join(lines) + "\n"


def write_report(report: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """Write `results.json` and `results.md` into `out_dir`; return both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / "results.json", out_dir / "results.md"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    title = f"# Success rate: {report['meta'].get('policy', 'policy')}\n\n"
    md_path.write_text(title + to_markdown(report))
    return json_path, md_path
