"""bench/node_benchmark.py and bench/gpu.sh run end to end on tiny settings (no timing assertions)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_node_benchmark_measures_a_running_node(tmp_path) -> None:
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    out = tmp_path / "node"
    result = subprocess.run([sys.executable, str(REPO / "bench" / "node_benchmark.py"), "--seconds", "4",
                             "--rate", "30", "--out", str(out)], capture_output=True, text=True, env=env,
                            timeout=240, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "results.json").read_text())
    assert report["commands"] > 30 and report["model_commands"] > 0 and report["frames_decoded"] > 0
    assert report["period_ms_p50"] > 0
    for key in ("jitter_ms_p99", "command_age_ms_p50", "overhead_ms_p50", "timer_wait_ms_p50", "node_cpu_percent"):
        assert report[key] == report[key], key                        # measured, not NaN
    assert report["rss_mb_start"] > 50 and len(report["rss_samples"]) >= 3
    assert "period jitter" in (out / "results.md").read_text()


def test_gpu_script_dry_run_on_cpu(tmp_path) -> None:
    out = tmp_path / "gpu"
    result = subprocess.run(["bash", str(REPO / "bench" / "gpu.sh"), "--dry-run", str(out)], capture_output=True,
                            text=True, timeout=300, cwd=REPO, env={**os.environ, "XDG_CACHE_HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr[-3000:]
    shaped = json.loads((out / "openvla_shaped.json").read_text())
    assert shaped["dry_run"] and set(shaped["verify_ms"]) == {"8", "16", "32", "64"}
    assert [row["acceptance_length"] for row in shaped["projection"]][:2] == [1.0, 1.5]
    assert all(row["speedup"] > 0 for row in shaped["projection"])
    bundled = json.loads((out / "bundled" / "results.json").read_text())
    assert [row["mode"] for row in bundled["modes"]] == ["AR", "SD r=0", "Spec-VLA r=1"]
