"""bench/decode_benchmark.py runs end to end on a tiny setting and writes well-formed output (no timing asserts)."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from test.models import make_pair, observations

pytestmark = pytest.mark.slow  # see pytest.ini: make test-fast leaves these out

REPO = Path(__file__).resolve().parents[2]


def _benchmark_module():
    spec = importlib.util.spec_from_file_location("decode_benchmark", REPO / "bench" / "decode_benchmark.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


def test_decode_benchmark_writes_tables_and_plots(tmp_path) -> None:
    target, head = make_pair(2)
    target.save(tmp_path / "target")
    head.save(tmp_path / "draft")
    frames = tmp_path / "frames"
    frames.mkdir()
    rows = []
    for index, (image, text) in enumerate(observations(9, 4)):
        Image.fromarray(image).save(frames / f"{index}.png")
        rows.append({"image": f"{index}.png", "instruction": text})
    (frames / "manifest.json").write_text(json.dumps(rows))
    out = tmp_path / "out"
    assert _benchmark_module().main([
        "--model", str(tmp_path / "target"), "--draft", str(tmp_path / "draft"), "--data", str(frames),
        "--frames", "4", "--repeats", "1", "--relax", "2", "--per-dimension", "1", "1", "1", "0", "0", "1", "0",
        "--sweep", "--sweep-frames", "1", "--sweep-top-k", "2", "--sweep-depth", "2", "3",
        "--sweep-total", "4", "--success-episodes", "1", "--success-max-steps", "2", "--compile", "off",
        "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    modes = {row["mode"]: row for row in results["modes"]}
    assert list(modes) == ["AR (HF eager)", "AR (fastest)", "SD r=0", "Spec-VLA r=2", "Spec-VLA r=(1,1,1,0,0,1,0)"]
    assert all(row["success"]["episodes"] == 3 for row in modes.values())   # one episode of each task
    for name in ("AR (HF eager)", "AR (fastest)"):
        assert modes[name]["target_forwards_per_action"] == 7 and modes[name]["acceptance_length"] == 1
    assert modes["AR (HF eager)"]["steps_differing_from_ar"] == 0    # the same greedy tokens through HF's model
    assert modes["AR (HF eager)"]["outside_share"] is None
    assert all(0 <= row["outside_share"] <= 1 for name, row in modes.items() if name != "AR (HF eager)")
    assert modes["SD r=0"]["steps_differing_from_ar"] == 0 and modes["SD r=0"]["max_bin_deviation"] == [0] * 7
    assert modes["Spec-VLA r=2"]["max_bin_deviation"][0] <= 2        # the first token obeys the per-token rule
    assert all(row["total_p50_ms"] > 0 and row["speedup_end_to_end"] > 0 and row["speedup_vs_hf_eager"] > 0
               for row in modes.values())
    assert results["sweep"] and {"top_k", "depth", "total_tokens", "speedup_end_to_end"} <= set(results["sweep"][0])
    assert "| SD r=0 |" in (out / "results.md").read_text()
    for name in ("speedup_vs_r.png", "acceptance_hist.png", "latency_breakdown.png"):
        assert (out / name).stat().st_size > 3000


def test_decode_benchmark_temporal_modes(tmp_path) -> None:
    target, head = make_pair(2)
    target.save(tmp_path / "target")
    head.save(tmp_path / "draft")
    images, instructions = zip(*observations(9, 3), strict=True)
    # An "episode": the same frame five times, then a new task; the history must see each frame once.
    frames = tmp_path / "frames.npz"
    np.savez(frames, images=np.stack([images[0]] * 5 + [images[1]] * 2),
             instructions=np.array([instructions[0]] * 5 + [instructions[1]] * 2))
    out = tmp_path / "out"
    assert _benchmark_module().main([
        "--model", str(tmp_path / "target"), "--draft", str(tmp_path / "draft"), "--data", str(frames),
        "--frames", "7", "--repeats", "2", "--relax", "2", "--temporal", "--compile", "off", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    modes = {row["mode"]: row for row in results["modes"]}
    assert list(modes) == ["AR (HF eager)", "AR (fastest)", "SD r=0", "Spec-VLA r=2",
                           "Temporal r=0", "Spec-VLA+temporal r=0", "Temporal+prefill r=0",
                           "Spec-VLA+temporal+prefill r=0", "Temporal r=2", "Spec-VLA+temporal r=2",
                           "Temporal+prefill r=2", "Spec-VLA+temporal+prefill r=2"]
    for name in ("Temporal r=0", "Spec-VLA+temporal r=0", "Temporal+prefill r=0", "Spec-VLA+temporal+prefill r=0"):
        assert modes[name]["steps_differing_from_ar"] == 0                 # r = 0 stays lossless
        assert modes[name]["max_bin_deviation"] == [0] * 7 and modes[name]["frames_beyond_r"] == 0
    # Repeated frames with the guess verified in the prefill: one target forward from the 2nd frame on.
    prefill = modes["Temporal+prefill r=0"]
    assert prefill["one_forward_share"] == 5 / 7 and prefill["prefill_accepted_mean"] == 6 * 5 / 7
    # Repeated frames: from the 2nd of each episode the previous action is exact: 2 forwards, tau 6.
    lengths = modes["Temporal r=0"]["acceptance_lengths"]
    assert lengths[0] == 1.0 and lengths[1:5] == [6.0] * 4 and lengths[5] == 1.0 and lengths[6] == 6.0
    assert modes["Temporal r=0"]["path_sources"]["temporal"]["share_of_steps"] > 0
    assert modes["SD r=0"]["path_sources"]["temporal"]["share_of_steps"] == 0
    assert "Which proposer drafted" in (out / "results.md").read_text()


def test_calibration_feeds_the_automatic_tree(tmp_path) -> None:
    target, head = make_pair(2, train_steps=20)
    target.save(tmp_path / "target")
    head.save(tmp_path / "draft")
    frames = tmp_path / "frames.npz"
    images, instructions = zip(*observations(9, 3), strict=True)
    np.savez(frames, images=np.stack(images), instructions=np.array(instructions))
    common = ["--model", str(tmp_path / "target"), "--draft", str(tmp_path / "draft"), "--data", str(frames),
              "--frames", "3", "--repeats", "1", "--relax", "1", "--compile", "off"]
    bench = _benchmark_module()
    assert bench.main([*common, "--calibrate", "--sweep-frames", "3", "--sweep-top-k", "1", "2",
                       "--sweep-depth", "2", "3", "--sweep-total", "4", "--out", str(tmp_path / "calibrate")]) == 0
    calibration = json.loads((tmp_path / "calibrate" / "tree_calibration.json").read_text())
    assert 1 <= len(calibration["shapes"]) <= 3
    for shape in calibration["shapes"]:
        assert 0 < shape["steps_per_action"] <= 6 and shape["depth"] in (2, 3)
    assert bench.main([*common, "--tree-auto", "--calibration", str(tmp_path / "calibrate" / "tree_calibration.json"),
                       "--out", str(tmp_path / "auto")]) == 0
    modes = {row["mode"]: row for row in json.loads((tmp_path / "auto" / "results.json").read_text())["modes"]}
    assert modes["SD r=0 (tree auto)"]["steps_differing_from_ar"] == 0  # whatever it chose, r = 0 stays lossless
