"""specvla bag-compare: AR vs Spec-VLA on a generated bag, with a real tiny model pair; CLI exit codes."""
from __future__ import annotations

import json

import numpy as np
import pytest

from specvla_ros.bag_compare import bin_width, compare_frames, summarize
from specvla_ros.bags import read_observations, write_observation_bag
from specvla_ros.cli import main
from specvla_ros.core.config import DecoderConfig
from specvla_ros.core.decoder import build_decoder
from test.bags.conftest import frames


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    return write_observation_bag(tmp_path_factory.mktemp("compare") / "bag", frames(10), storage="mcap")


def _compare(pair, bag, relax_bins):
    target, head = pair
    autoregressive = build_decoder(target, None, DecoderConfig(mode="autoregressive"))
    speculative = build_decoder(target, head, DecoderConfig(relax_bins=relax_bins))
    results = compare_frames(read_observations(bag), autoregressive, speculative, warmup=1)
    return results, summarize(results, speculative.config.relax_bins, bin_width(speculative)), speculative


def test_lossless_at_r0(pair, bag) -> None:
    results, summary, _ = _compare(pair, bag, 0)
    assert len(results) == summary["frames"] == 10
    assert summary["steps_differing_fraction"] == 0.0
    for dim in summary["dimensions"]:
        assert dim["fraction_differing"] == dim["bins_max"] == dim["metric_max"] == 0.0
    assert summary["first_difference_rule"] == {"holds": True, "steps_checked": 0, "violations": []}
    assert all(r.ar_bins == r.spec_bins and r.ar_action == r.spec_action for r in results)


def test_relaxed_deviation_is_bounded_by_r_at_the_first_differing_token(pair, bag) -> None:
    relax = (3, 3, 3, 3, 3, 3, 0)  # gripper exact, as a team would start
    results, summary, speculative = _compare(pair, bag, relax)
    differing = [r for r in results if r.first_difference is not None]
    assert differing, "this untrained pair's drafts land within 3 bins often; expected some relaxed acceptances"
    width = bin_width(speculative)
    for result in differing:
        d = result.first_difference
        assert 0 < abs(result.ar_bins[d] - result.spec_bins[d]) <= relax[d]
        assert abs(result.ar_action[d] - result.spec_action[d]) <= relax[d] * width[d] + 1e-9
    rule = summary["first_difference_rule"]
    assert rule["holds"] and rule["steps_checked"] == len(differing) and rule["violations"] == []
    assert summary["steps_differing_fraction"] == pytest.approx(len(differing) / len(results))
    gripper = summary["dimensions"][6]
    assert gripper["r"] == 0 and gripper["first_differences"] == 0 and gripper["first_difference_bound"] == 0.0
    assert summary["dimensions"][0]["first_difference_bound"] == pytest.approx(3 * width[0])
    assert summary["acceptance_length"]["mean"] >= 1.0
    assert summary["latency_ms"]["autoregressive"]["p50"] > 0 and summary["latency_ms"]["speedup_mean"] > 0


def test_cli_writes_json_markdown_and_plots(checkpoints, bag, tmp_path, capsys) -> None:
    target, draft = checkpoints
    out = tmp_path / "report"
    code = main(["bag-compare", str(bag), "--model", str(target), "--draft", str(draft),
                 "--relax-bins", "3", "3", "3", "3", "3", "3", "0", "--max-frames", "6", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    assert report["summary"]["frames"] == len(report["frames"]) == 6
    assert report["summary"]["relax_bins"] == [3, 3, 3, 3, 3, 3, 0]
    assert report["summary"]["first_difference_rule"]["holds"]
    assert report["meta"]["model"] == str(target)
    markdown = (out / "report.md").read_text()
    assert "| gripper | 0 |" in markdown and "![deviation](deviation.png)" in markdown
    for plot in ("deviation.png", "timeline.png"):
        assert (out / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "first-difference rule holds" in capsys.readouterr().out


@pytest.mark.parametrize("make_args, message", [
    (lambda bag, tmp: [str(tmp / "missing")], "no bag at"),
    (lambda bag, tmp: [str(bag), "--camera-topic", "/wrist/image"], "has no camera topic '/wrist/image'"),
    (lambda bag, tmp: [str(bag), "--camera-topic", "/vla/instruction"], "unsupported message type"),
    (lambda bag, tmp: [str(_corrupt(bag, tmp))], "not a readable rosbag2 bag"),
])
def test_cli_fails_clearly_on_bad_bags(checkpoints, bag, tmp_path, capsys, make_args, message) -> None:
    target, draft = checkpoints
    code = main(["bag-compare", *make_args(bag, tmp_path), "--model", str(target), "--draft", str(draft),
                 "--out", str(tmp_path / "report")])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("specvla bag-compare: ") and message in err
    assert not (tmp_path / "report").exists()


def _corrupt(bag, tmp_path):
    copy = tmp_path / "corrupt"
    copy.mkdir()
    for path in bag.iterdir():
        data = path.read_bytes()
        (copy / path.name).write_bytes(data if path.suffix == ".yaml" else data[: len(data) // 3])
    return copy


def test_bin_width_is_in_the_actions_units(pair) -> None:
    target, head = pair
    speculative = build_decoder(target, head, DecoderConfig())
    stats = speculative.norm_stats
    width = bin_width(speculative)
    assert width[6] == pytest.approx(2 / 255)  # gripper: not normalized, one bin of [-1, 1]
    masked = np.flatnonzero(stats.mask)
    assert np.allclose(width[masked], (stats.q99 - stats.q01)[masked] / 255)
