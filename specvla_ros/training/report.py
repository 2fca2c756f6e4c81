"""Training reports: a JSON record and a PNG curve, written next to the checkpoint."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def smooth(values: list[float], window: int = 25) -> np.ndarray:
    if len(values) < window:
        return np.asarray(values, dtype=float)
    return np.convolve(values, np.ones(window) / window, mode="valid")


def write_report(out_dir: Path, report: dict, losses: list[float],
                 evaluations: list[dict] | None = None, title: str = "training") -> tuple[Path, Path]:
    """report.json (everything) and curve.png (loss, and acceptance length when evaluated)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, png_path = out_dir / "report.json", out_dir / "curve.png"
    json_path.write_text(json.dumps({**report, "losses": losses, "evaluations": evaluations or []}, indent=2) + "\n")
    panels = 2 if evaluations else 1
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 3.5), squeeze=False)
    axes[0][0].plot(smooth(losses))
    axes[0][0].set_xlabel("step")
    axes[0][0].set_ylabel("loss (smoothed)")
    axes[0][0].set_title(title)
    if evaluations:
        steps = [e["step"] for e in evaluations]
        for key in sorted(k for k in evaluations[0] if k.startswith("acceptance_length")):
            label = key.replace("acceptance_length_", "")
            axes[0][1].plot(steps, [e[key] for e in evaluations], marker="o", label=label)
        axes[0][1].set_xlabel("step")
        axes[0][1].set_ylabel("mean acceptance length (held out)")
        axes[0][1].legend()
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return json_path, png_path
