"""specvla bag-compare: AR vs Spec-VLA on a generated bag, with a real tiny model pair; CLI exit codes."""
from __future__ import annotations

import json

import numpy as np
import pytest

from specvla_ros.bags import read_observations, write_observation_bag
from specvla_ros.bags.compare import compare_frames, summarize
from specvla_ros.cli import main
from specvla_ros.core.action_tokenizer import metric_bin_width
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
    width = metric_bin_width(speculative.backbone.action_tokenizer, speculative.norm_stats)
    return results, summarize(results, speculative.config.relax_bins, width), speculative


@pytest.mark.slow
def test_lossless_at_r0(pair, bag) -> None:
    results, summary, _ = _compare(pair, bag, 0)
    assert len(results) == summary["frames"] == 10
    assert summary["steps_differing_fraction"] == 0.0
    for dim in summary["dimensions"]:
        assert dim["fraction_differing"] == dim["bins_max"] == dim["metric_max"] == dim["bins_p99"] == 0.0
    assert summary["steps_beyond_r_fraction"] == 0.0
    assert summary["first_difference_rule"] == {"holds": True, "steps_checked": 0, "violations": []}
    assert all(r.ar_bins == r.spec_bins and r.ar_action == r.spec_action for r in results)


def test_relaxed_deviation_is_bounded_by_r_at_the_first_differing_token(pair, bag) -> None:
    relax = (3, 3, 3, 3, 3, 3, 0)  # gripper exact, as a team would start
    results, summary, speculative = _compare(pair, bag, relax)
    differing = [r for r in results if r.first_difference is not None]
    assert differing, "this untrained pair's drafts land within 3 bins often; expected some relaxed acceptances"
    width = metric_bin_width(speculative.backbone.action_tokenizer, speculative.norm_stats)
    for result in differing:
        d = result.first_difference
        assert 0 < abs(result.ar_bins[d] - result.spec_bins[d]) <= relax[d]
        assert abs(result.ar_action[d] - result.spec_action[d]) <= relax[d] * width[d] + 1e-9
    rule = summary["first_difference_rule"]
    assert rule["holds"] and rule["steps_checked"] == len(differing) and rule["violations"] == []
    assert summary["steps_differing_fraction"] == pytest.approx(len(differing) / len(results))
    bins_apart = np.abs(np.array([r.ar_bins for r in results]) - np.array([r.spec_bins for r in results]))
    assert summary["steps_beyond_r_fraction"] == pytest.approx(np.mean((bins_apart > np.array(relax)).any(axis=1)))
    for d, dim in enumerate(summary["dimensions"]):  # the whole distribution, not only the first difference
        assert dim["bins_p50"] <= dim["bins_p99"] <= dim["bins_max"] == bins_apart[:, d].max()
    gripper = summary["dimensions"][6]
    assert gripper["r"] == 0 and gripper["first_differences"] == 0 and gripper["first_difference_bound"] == 0.0
    assert summary["dimensions"][0]["first_difference_bound"] == pytest.approx(3 * width[0])
    assert summary["acceptance_length"]["mean"] >= 1.0
    assert summary["latency_ms"]["autoregressive"]["p50"] > 0 and summary["latency_ms"]["speedup_mean"] > 0


@pytest.mark.slow
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


# ----- issue 24: bags without a task, bad frames, what the report says -----------------------------------------
def _frames_at_random(count: int, seed: int = 0) -> list:
    """FrameResults as the tool produces them, in bulk, for the plots (decoding 10,000 frames would take minutes)."""
    from specvla_ros.bags.compare import FrameResult

    rng = np.random.default_rng(seed)
    ar = rng.integers(0, 255, (count, 7))
    spec = np.clip(ar + rng.integers(-3, 4, (count, 7)) * (rng.random((count, 7)) < 0.2), 0, 254)
    return [FrameResult(index=i, stamp_ns=i, instruction="pick", ar_bins=tuple(map(int, ar[i])),
                        spec_bins=tuple(map(int, spec[i])), ar_action=tuple(ar[i] / 254.0),
                        spec_action=tuple(spec[i] / 254.0), ar_ms=float(5 + rng.random()),
                        spec_ms=float(4 + rng.random()), spec_draft_ms=1.0, spec_verify_ms=2.0,
                        acceptance_length=float(1 + rng.random()), spec_forwards=4) for i in range(count)]


@pytest.mark.parametrize("count", [1, 10_000])
def test_plots_stay_readable_from_one_frame_to_ten_thousand(count) -> None:
    import time

    import matplotlib.pyplot as plt

    from specvla_ros.bags.compare_report import deviation_figure, timeline_figure

    frames = _frames_at_random(count)
    width = np.full(7, 1 / 254.0)
    summary = summarize(frames, (3,) * 7, width)
    started = time.perf_counter()
    timeline, deviation = timeline_figure(frames), deviation_figure(frames, summary)
    assert time.perf_counter() - started < 20
    try:
        latency_axis, acceptance_axis = timeline.axes
        low, high = acceptance_axis.get_xlim()
        ticks = [t for t in acceptance_axis.get_xticks() if low <= t <= high]
        assert ticks and all(float(t).is_integer() for t in ticks)  # no frame 0.2, 0.4, ...
        lines = latency_axis.get_lines()
        if count == 1:
            assert all(line.get_marker() == "o" for line in lines)  # a single point is drawn, not an invisible line
            assert low < 0 < high and high - low <= 2
        else:
            assert [line.get_label() for line in lines if "median" in line.get_label()] == [
                "autoregressive (median of 100 frames)", "Spec-VLA (median of 100 frames)"]
            assert max(line.get_linewidth() for line in lines if "median" not in line.get_label()) < 0.5
        for axis in deviation.axes[:2]:  # counts: whole numbers, a visible range even for one frame
            assert all(float(t).is_integer() for t in axis.get_yticks()) and axis.get_ylim()[1] >= 1
    finally:
        plt.close(timeline)
        plt.close(deviation)


def test_worst_frames_are_the_largest_moves_in_dimensions_that_have_width() -> None:
    from specvla_ros.bags.compare import FrameResult
    from specvla_ros.bags.compare_report import WorstFrames

    def result(index, moved):
        ar = (0.0,) * 7
        return FrameResult(index, index, "pick", (0,) * 7, (0,) * 7, ar, moved, 1.0, 1.0, 0.5, 0.5, 1.0, 7)

    width = np.array([0.1, 0.1, 0.1, 0.0, 0.0, 0.1, 0.01])
    worst = WorstFrames(width, count=2)
    image = np.zeros((480, 640, 3), np.uint8)
    worst.offer(result(0, (0.3, 0, 0, 0, 0, 0, 0)), image)      # 3 bins
    worst.offer(result(1, (0, 0, 0, 5.0, 5.0, 0, 0)), image)    # moves only zero-width dimensions: nothing
    worst.offer(result(2, (0, 0, 0, 0, 0, 0, 0.05)), image)     # 5 bins of the gripper
    worst.offer(result(3, (0.1, 0, 0, 0, 0, 0, 0)), image)      # 1 bin
    kept = worst.frames()
    assert [(w.frame.index, round(w.score, 6)) for w in kept] == [(2, 5.0), (0, 3.0)]
    assert kept[0].thumbnail.shape == (144, 192, 3)


@pytest.fixture(scope="module")
def camera_only_bag(tmp_path_factory):
    from test.bags import corpus

    return corpus.camera_only(tmp_path_factory.mktemp("camera_only"), count=6)


@pytest.mark.slow
def test_camera_only_bag_with_task_on_the_bundled_model_names_what_matters(camera_only_bag, tmp_path, capsys) -> None:
    out = tmp_path / "report"
    assert main(["bag-compare", str(camera_only_bag), "--out", str(out)]) == 1
    assert "no task topic '/vla/instruction'" in capsys.readouterr().err and not out.exists()
    code = main(["bag-compare", str(camera_only_bag), "--task", "pick up the red cube", "--relax-bins", "9",
                 "--threads", "1", "--out", str(out)])  # the bundled tabletop pair
    stdout, stderr = capsys.readouterr()
    assert code == 0, stderr
    assert "camera: /camera/image_raw (Image, rgb8 40x24, 6 frames) (the only image topic)" in stderr
    report = json.loads((out / "report.json").read_text())
    summary, frames = report["summary"], report["frames"]
    assert report["meta"]["task"] == "pick up the red cube" and report["meta"]["task_topic"] is None
    assert {f["instruction"] for f in frames} == {"pick up the red cube"}
    # The bundled model's statistics give roll and pitch zero width: the headline names them, counts actions.
    assert summary["zero_width_dimensions"] == ["droll", "dpitch"]
    assert "droll and dpitch have zero width in this model's action statistics" in stdout
    moved = [any(abs(a - s) > 0 for a, s in zip(f["ar_action"], f["spec_action"], strict=True)) for f in frames]
    assert summary["steps_moved_fraction"] == pytest.approx(np.mean(moved))
    assert f"the action differs from AR in {100 * np.mean(moved):.1f}% of steps" in stdout
    ar_bins = np.array([f["ar_bins"] for f in frames])
    for d, dim in enumerate(summary["dimensions"]):
        assert dim["saturation"]["autoregressive"] == pytest.approx(np.mean(np.isin(ar_bins[:, d], (0, 254))))
        assert dim["fraction_moved"] <= dim["fraction_differing"]
        if dim["zero_width"]:
            assert dim["fraction_moved"] == 0.0 and dim["metric_max"] == 0.0
    markdown = (out / "report.md").read_text()
    assert "| droll | 9 | 0 (zero width) |" in markdown and "tokens at bin 0 or 254: AR, Spec-VLA" in markdown
    assert ("worst_frames.png" in markdown) == (out / "worst_frames.png").exists() == any(moved)


def test_skip_bad_frames_reports_every_bad_frame_and_carries_on(checkpoints, tmp_path, capsys) -> None:
    from specvla_ros.bags import IMAGE, STRING, BagWriter, image_message, string_message

    target, draft = checkpoints
    written = frames(6)
    with BagWriter(tmp_path / "bag") as writer:
        writer.add_topic("/vla/instruction", STRING)
        writer.add_topic("/camera/image_raw", IMAGE)
        writer.write("/vla/instruction", 1, string_message(writer.store, "pick"))
        for index, (stamp, image, _) in enumerate(written):
            message = image_message(writer.store, image, stamp)
            if index in (2, 4):
                message = type(message)(header=message.header, height=message.height, width=message.width,
                                        encoding="rgb8", is_bigendian=0, step=message.step, data=message.data[:10])
            writer.write("/camera/image_raw", stamp, message)
    args = ["bag-compare", str(tmp_path / "bag"), "--model", str(target), "--draft", str(draft), "--out",
            str(tmp_path / "report")]
    assert main(args) == 1
    assert "camera frame 2" in (err := capsys.readouterr().err) and "--skip-bad-frames" in err
    assert main([*args, "--skip-bad-frames"]) == 0
    stdout, stderr = capsys.readouterr()
    assert "skipped frame 2 (bag time" in stderr and "skipped frame 4 (bag time" in stderr
    assert "2 bad frames skipped" in stdout
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert [f["stamp_ns"] for f in report["frames"]] == [written[i][0] for i in (0, 1, 3, 5)]
    assert [b["index"] for b in report["meta"]["bad_frames"]] == [2, 4]
    assert "- 2 frames could not be read and were skipped" in (tmp_path / "report" / "report.md").read_text()


@pytest.mark.slow
def test_camera_chosen_named_or_refused(checkpoints, tmp_path, capsys) -> None:
    from test.bags import corpus

    target, draft = checkpoints
    model = ["--model", str(target), "--draft", str(draft), "--max-frames", "2"]
    assert main(["bag-compare", str(corpus.multi_topic(tmp_path)), *model, "--out", str(tmp_path / "a")]) == 0
    assert "camera: /camera/color/image_raw" in capsys.readouterr().err
    two = corpus.multi_topic(tmp_path, second_colour_camera=True)
    assert main(["bag-compare", str(two), *model, "--out", str(tmp_path / "b")]) == 1
    assert "has 2 colour image topics: name one with --camera-topic" in capsys.readouterr().err
    assert main(["bag-compare", str(two), "--camera-topic", "/wrist/image_raw/compressed", *model,
                 "--out", str(tmp_path / "b")]) == 0
    capsys.readouterr()
    assert main(["bag-compare", str(corpus.depth_only(tmp_path)), *model, "--out", str(tmp_path / "c")]) == 1
    assert "'16UC1' is not a colour image" in capsys.readouterr().err


def test_help_shows_the_relax_bins_default(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["bag-compare", "--help"])
    assert "default: 0, exact (lossless)" in " ".join(capsys.readouterr().out.split())
