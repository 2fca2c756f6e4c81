"""Success-rate harness: statistics, policy adapters, episode loop, report files and `specvla sim-eval`."""

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from specvla_ros.cli import main as cli_main
from specvla_ros.sim import harness
from specvla_ros.sim.env import EnvConfig, TabletopEnv
from specvla_ros.sim.errors import SimError
from specvla_ros.sim.metrics import build_report, to_markdown, wilson_interval, write_report
from specvla_ros.sim.policy import DecoderPolicy, PolicyStep, reset_policy, to_policy_step


@pytest.mark.parametrize(
    "k, n, low, high",
    [(0, 10, 0.0, 0.2775), (10, 10, 0.7225, 1.0), (5, 10, 0.2366, 0.7634), (45, 50, 0.7864, 0.9565)],
)
def test_wilson_interval_matches_reference_values(k: int, n: int, low: float, high: float) -> None:
    lo, hi = wilson_interval(k, n)
    assert lo == pytest.approx(low, abs=1e-3) and hi == pytest.approx(high, abs=1e-3)


def test_policy_output_adapters() -> None:
    plain = to_policy_step([0, 0, 0.01, 0, 0, 0, 1])
    assert plain.action.shape == (7,) and plain.latency_ms is None
    # The decoder's ActionResult shape: .action plus .stats with total_ms and mean_acceptance_length.
    result = SimpleNamespace(action=np.ones(7), stats=SimpleNamespace(total_ms=12.5, mean_acceptance_length=2.4))
    step = to_policy_step(result)
    assert step.latency_ms == 12.5 and step.acceptance_length == 2.4
    flat = to_policy_step(SimpleNamespace(action=np.zeros(7), latency_ms=3.0, acceptance_length=None))
    assert flat.latency_ms == 3.0 and flat.acceptance_length is None
    assert to_policy_step(PolicyStep(np.zeros(7), 1.0)).latency_ms == 1.0
    with pytest.raises(SimError):
        to_policy_step(np.zeros(6))


class RecordingPolicy:
    """An image policy that stands still and reports fake decode stats."""

    def __init__(self) -> None:
        self.images: list[np.ndarray] = []
        self.instructions: list[str] = []
        self.resets = 0

    def reset(self) -> None:
        self.resets += 1

    def __call__(self, image: np.ndarray, instruction: str) -> SimpleNamespace:
        self.images.append(image)
        self.instructions.append(instruction)
        return SimpleNamespace(action=np.zeros(7), stats=SimpleNamespace(total_ms=10.0, mean_acceptance_length=2.0))


def test_evaluate_feeds_images_and_collects_stats(small_render_config, tmp_path: Path) -> None:
    config = EnvConfig(scene=small_render_config.scene, render=False, max_steps=3)
    policy = RecordingPolicy()
    with TabletopEnv(config) as env:
        records = harness.evaluate(policy, env, ["pick", "push"], 2, seed=5, gif_dir=tmp_path, gif_episodes=1)
    assert policy.resets == 4
    assert all(img.shape == (64, 80, 3) and img.dtype == np.uint8 for img in policy.images)
    assert [r.seed for r in records] == [5, 6, 5, 6]
    assert all(not r.success and r.steps == 3 for r in records)
    assert sorted(p.name for p in tmp_path.glob("*.gif")) == ["pick_seed5.gif", "push_seed5.gif"]
    report = build_report(records, {"policy": "still"})
    assert report["tasks"]["pick"]["decode_latency_ms"]["mean"] == pytest.approx(10.0)
    assert report["overall"]["acceptance_length"]["mean"] == pytest.approx(2.0)
    assert report["overall"]["success_rate"] == 0.0
    table = to_markdown(report)
    assert "| pick | 2 | 0.0% |" in table and "10.0 / 10.0" in table and "2.00" in table


def test_cli_with_expert_writes_json_markdown_and_gif(tmp_path: Path, capsys) -> None:
    out = tmp_path / "eval"
    code = cli_main(
        ["sim-eval", "--policy", "expert", "--episodes", "2", "--tasks", "pick", "place", "--out", str(out),
         "--gif-episodes", "1", "--image-size", "64", "64"]
    )
    assert code == 0
    report = json.loads((out / "results.json").read_text())
    assert set(report) == {"meta", "tasks", "overall", "episodes"}
    assert report["meta"]["policy"] == "scripted expert" and report["meta"]["episodes_per_task"] == 2
    for task in ("pick", "place"):
        summary = report["tasks"][task]
        assert summary["episodes"] == 2
        assert 0.0 <= summary["ci95"][0] <= summary["success_rate"] <= summary["ci95"][1] <= 1.0
        assert summary["decode_latency_ms"] is None  # the expert reports no decode stats
    assert report["overall"]["successes"] == 4
    assert len(report["episodes"]) == 4 and {"instruction", "success", "steps", "seed"} <= set(report["episodes"][0])
    md = (out / "results.md").read_text()
    assert md.count("\n|") >= 4 and "95% CI" in md and "| **all** | 4 | 100.0% |" in md
    assert (out / "gifs" / "place_seed0.gif").stat().st_size > 1000
    assert "95% CI" in capsys.readouterr().out


def test_write_report_creates_missing_folder(tmp_path: Path) -> None:
    json_path, md_path = write_report(build_report([], {"policy": "none"}), tmp_path / "a" / "b")
    assert json.loads(json_path.read_text())["overall"]["episodes"] == 0
    assert md_path.exists()


def test_decoder_policy_decodes_each_frame_and_resets_the_decoder_at_episode_start() -> None:
    calls: list[object] = []
    decoder = SimpleNamespace(decode=lambda image, instruction: calls.append((image.shape, instruction)) or "result",
                              reset=lambda: calls.append("reset"))
    policy = DecoderPolicy(decoder)
    reset_policy(policy)
    assert policy(np.zeros((4, 4, 3), np.uint8), "pick up the red cube") == "result"
    assert calls == ["reset", ((4, 4, 3), "pick up the red cube")]
