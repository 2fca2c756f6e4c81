"""bench/node_benchmark.py and bench/gpu.sh run end to end on tiny settings (no timing assertions)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # see pytest.ini: make test-fast leaves these out

REPO = Path(__file__).resolve().parents[2]


def test_node_benchmark_measures_a_running_node(tmp_path) -> None:
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    out = tmp_path / "node"
    result = subprocess.run([sys.executable, str(REPO / "bench" / "node_benchmark.py"), "--seconds", "4",
                             "--rate", "30", "--compile", "off", "--out", str(out)], capture_output=True, text=True, env=env,
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
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "all steps done" in (out / "log.txt").read_text()
    shaped = json.loads((out / "openvla_shaped.json").read_text())
    assert shaped["dry_run"] and shaped["prefix_tokens"] == 1 + 256 + 20
    # The dry run times HF eager and the lean path eager, and says why the compiled paths are left out.
    assert list(shaped["paths"]) == ["hf-eager", "off"]
    assert set(shaped["skipped"]) == {"reduce-overhead", "default"}
    for path in shaped["paths"].values():
        assert set(path["verify_ms"]) == {"8", "16", "32", "64"} and set(path["draft_step_ms"]) == {"1", "8"}
        assert set(path["appended_prefill_ms"]) == {"0", "7", "14", "50"}
        assert path["compile_and_warmup_s"] >= 0 and path["ar_ms"] > 0
    for step in ("prefill", "decode_step"):  # lean and HF compute the same logits (float32)
        assert shaped["agreement"][step]["same_argmax"] and shaped["agreement"][step]["relative_max_diff"] < 1e-4
    assert shaped["baselines"]["hf_eager_ar_ms"] > 0 and shaped["baselines"]["fastest_ar_path"] in shaped["paths"]
    # Every projection row, per path, against both AR baselines.
    projection = shaped["projection"]
    assert {(row["acceptance_length"], row["path"]) for row in projection} == {
        (tau, path) for tau in (1.0, 1.5, 2.04, 2.94, 3.5, 4.0, 5.0) for path in ("hf-eager", "off")}
    assert all(row[key] > 0 for row in projection for key in ("spec_ms", "vs_hf_eager_ar", "vs_fastest_ar"))
    guesses = shaped["guesses_in_prefill"]
    assert {(row["path"], row["appended_tokens"], row["accepted_fraction"]) for row in guesses} == {
        (path, k, f) for path in ("hf-eager", "off") for k in (7, 14, 50) for f in (0.0, 0.25, 0.5, 0.75, 1.0)}
    assert all(row["vs_hf_eager_ar"] > 0 and row["vs_fastest_ar"] > 0 for row in guesses)
    bundled = json.loads((out / "bundled_off" / "results.json").read_text())
    assert [row["mode"] for row in bundled["modes"]] == ["AR (HF eager)", "AR (fastest)", "SD r=0", "Spec-VLA r=1"]
    lossless = json.loads((out / "lossless.json").read_text())
    assert lossless["frames"] == 3 and lossless["differing_frames"] == {"SD r=0": [], "AR (HF eager)": []}


def _gpu_benchmark_module():
    import importlib.util  # here, not at the top: bench/ is not a package, and only these tests need it

    spec = importlib.util.spec_from_file_location("gpu_benchmark", REPO / "bench" / "gpu_benchmark.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


def test_gpu_benchmark_masks_and_projection_arithmetic() -> None:
    from argparse import Namespace

    bench = _gpu_benchmark_module()
    tree, depths = bench.binary_tree(7, "cpu")
    assert depths.tolist() == [0, 1, 1, 2, 2, 2, 2]
    assert tree[6].nonzero().flatten().tolist() == [0, 2, 6]  # itself, its parent 2 and the root
    guesses, depth = bench.guessed_chains(9, "cpu")  # one full guessed action, then two tokens of another
    assert depth.tolist() == [0, 1, 2, 3, 4, 5, 6, 0, 1]
    assert guesses[6].nonzero().flatten().tolist() == list(range(7))
    assert guesses[8].nonzero().flatten().tolist() == [7, 8]
    # A 3-token prompt with a 2-token guess, in a cache of 6 columns: causal prompt, the guess sees it all.
    visible = bench.prefill_visibility(3, guesses[:2, :2], 6, "cpu")
    assert visible.int().tolist() == [[1, 0, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0],
                                      [1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 0]]

    def path(prefill: float, step: float) -> dict:
        return {"prefill_ms": prefill, "decode_step_ms": step, "verify_ms": {"16": 9.0, "32": 3.0},
                "draft_step_ms": {"1": 9.0, "8": 0.5}, "appended_prefill_ms": {"0": prefill, "7": 11.0},
                "ar_ms": prefill + 6 * step}

    paths = {"hf-eager": path(20.0, 4.0), "off": path(10.0, 2.0)}
    base = bench.baselines(paths)
    assert base == {"hf_eager_ar_ms": 44.0, "fastest_ar_ms": 22.0, "fastest_ar_path": "off"}
    args = Namespace(taus=[2.0], depth=4, total_tokens=20, tree_sizes=[16, 32], draft_tokens=[1, 8])
    assumes, rows = bench.project({"off": paths["off"]}, base, args)
    assert assumes == {"depth": 4, "draft_step_tokens": 8, "verify_tokens": 32}
    (row,) = rows  # 10 + ceil(6 / 2) * (4 * 0.5 + 3)
    assert row["verify_steps"] == 3 and row["spec_ms"] == 25.0
    assert (row["vs_hf_eager_ar"], row["vs_fastest_ar"], row["vs_own_ar"]) == (44 / 25, 22 / 25, 22 / 25)
    (half,) = bench.guesses_in_prefill({"off": paths["off"]}, base, [0.5])  # 11 + 0.5 * 6 * 2; k = 0 left out
    assert (half["appended_tokens"], half["action_ms"], half["vs_hf_eager_ar"]) == (7, 17.0, 44 / 17)
