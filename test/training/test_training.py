"""Training: draft heads learn their target; the CLIs write loadable checkpoints and reports."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from specvla_ros.cli import main as cli_main
from specvla_ros.core.config import DecoderConfig
from specvla_ros.core.decoder import build_decoder
from specvla_ros.core.loading import load_decoder
from specvla_ros.sim.demos import generate_demos
from specvla_ros.sim.env import EnvConfig
from specvla_ros.sim.scene import CameraConfig, SceneConfig
from specvla_ros.training.datasets import action_norm_stats, load_demo_folder, normalize_actions
from specvla_ros.training.draft_trainer import collect_sequence, train_draft_head
from test.models import make_pair, observations


def _held_out_acceptance(target, head, relax: int = 0) -> float:
    decoder = build_decoder(target, head, DecoderConfig(relax_bins=relax))
    return float(np.mean([decoder.decode(image, text).stats.mean_acceptance_length
                          for image, text in observations(77, 8)]))


def test_draft_training_lowers_loss_and_raises_acceptance() -> None:
    target, head = make_pair(4)
    before = _held_out_acceptance(target, head)
    sequences = [collect_sequence(target, image, text) for image, text in observations(4, 6)]
    losses = train_draft_head(head, sequences, steps=120, seed=0)
    assert np.mean(losses[-20:]) < 0.7 * losses[0]
    assert _held_out_acceptance(target, head) > before


def test_normalization_round_trips_through_norm_stats() -> None:
    from specvla_ros.core.action_tokenizer import NormStats

    actions = np.random.default_rng(0).uniform(-0.02, 0.02, size=(200, 7))
    actions[:, 6] = np.random.default_rng(1).integers(0, 2, 200)
    stats = action_norm_stats(actions, "demo")
    normalized = normalize_actions(actions, stats)
    inside = np.all((actions >= stats["demo"]["action"]["q01"]) & (actions <= stats["demo"]["action"]["q99"]), axis=1)
    back = NormStats.from_checkpoint(stats, None).unnormalize(normalized)
    np.testing.assert_allclose(back[inside], actions[inside], atol=1e-9)
    assert stats["demo"]["action"]["mask"] == [True] * 6 + [False]


@pytest.fixture(scope="module")
def demo_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demos")
    camera = replace(CameraConfig(), width=48, height=48)
    generate_demos(folder, tasks=["pick"], episodes_per_task=2, seed=0,
                   env_config=EnvConfig(scene=SceneConfig(camera=camera)))
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("extra", [[], ["--vision-stem", "film", "--input-noise", "4", "--state-loss", "1"]],
                         ids=["patch", "film"])
def test_train_vla_then_train_draft_cli(demo_folder, tmp_path, extra) -> None:
    data = load_demo_folder(demo_folder)
    assert len(data) > 10 and data.images.shape[1:] == (48, 48, 3)
    target_dir, draft_dir = tmp_path / "target", tmp_path / "draft"
    assert cli_main(["train-vla", "--demos", str(demo_folder), "--out", str(target_dir), "--steps", "40",
                     "--batch-size", "8", "--image-size", "32", "--patch-size", "16", "--hidden-size", "32",
                     "--layers", "1", "--lr", "3e-3", *extra]) == 0
    report = json.loads((target_dir / "report.json").read_text())
    assert np.mean(report["losses"][-10:]) < np.mean(report["losses"][:10])
    assert (target_dir / "curve.png").stat().st_size > 1000

    assert cli_main(["train-draft", "--target", str(target_dir), "--demos", str(demo_folder), "--out",
                     str(draft_dir), "--steps", "40", "--frames", "12", "--held-out", "4", "--eval-every", "20",
                     "--relax-bins", "2"]) == 0
    draft_report = json.loads((draft_dir / "report.json").read_text())
    assert [e["step"] for e in draft_report["evaluations"]] == [0, 20, 40]
    assert {"acceptance_length_r0", "acceptance_length_r2"} <= set(draft_report["evaluations"][0])

    speculative = load_decoder(target_dir, draft_dir, DecoderConfig(relax_bins=0))
    autoregressive = load_decoder(target_dir, None, DecoderConfig(mode="autoregressive"))
    for index in range(0, len(data), 7):
        image, text = data.images[index], data.instructions[index]
        assert speculative.decode(image, text).token_ids == autoregressive.decode(image, text).token_ids


def test_missing_demos_fail_clearly(tmp_path) -> None:
    from specvla_ros.core.errors import InputError

    with pytest.raises(InputError, match="no demonstrations"):
        load_demo_folder(tmp_path)


def test_soft_targets_are_gaussians_over_neighbouring_bins() -> None:
    import torch

    from specvla_ros.training.vla_trainer import soft_targets

    tokens = torch.tensor([[600, 384, 639]])
    targets = soft_targets(tokens, 640, 384, sigma=1.5)
    torch.testing.assert_close(targets.sum(-1), torch.ones(1, 3))
    assert targets[..., :384].sum() == 0 and targets.argmax(-1).tolist() == tokens.tolist()
    assert targets[0, 0, 599] == targets[0, 0, 601] and targets[0, 0, 601] > targets[0, 0, 602] > 0
    assert torch.equal(soft_targets(tokens, 640, 384, sigma=0), torch.nn.functional.one_hot(tokens, 640).float())


def test_shift_images_moves_content_and_keeps_shape() -> None:
    import torch

    from specvla_ros.training.vla_trainer import shift_images

    pixels = torch.zeros(16, 3, 12, 12)
    pixels[:, :, 6, 6] = 1.0
    shifted = shift_images(pixels, 2, np.random.default_rng(0))
    assert shifted.shape == pixels.shape
    spots = [tuple(torch.nonzero(image[0])[0].tolist()) for image in shifted]
    assert all(4 <= y <= 8 and 4 <= x <= 8 for y, x in spots) and len(set(spots)) > 3
    assert torch.equal(shift_images(pixels, 0, np.random.default_rng(0)), pixels)


def test_corrupted_action_inputs_stay_in_range_and_move_by_about_sigma() -> None:
    from specvla_ros.training.vla_trainer import corrupt_action_inputs

    tokens = np.random.default_rng(0).integers(384, 640, size=(2000, 7))
    noisy = corrupt_action_inputs(tokens, 8.0, 384, 639, np.random.default_rng(1))
    assert noisy.shape == tokens.shape and noisy.min() >= 384 and noisy.max() <= 639
    inside = (tokens > 420) & (tokens < 600)  # away from the clipped ends
    assert 6.0 < np.std((noisy - tokens)[inside]) < 10.0
    assert corrupt_action_inputs(tokens, 0.0, 384, 639, np.random.default_rng(1)) is tokens


def test_train_vla_resumes_where_it_stopped(demo_folder, tmp_path) -> None:
    out = tmp_path / "target"
    common = ["train-vla", "--demos", str(demo_folder), "--out", str(out), "--batch-size", "4", "--image-size",
              "32", "--patch-size", "16", "--hidden-size", "32", "--layers", "1"]
    assert cli_main([*common, "--steps", "10", "--stop-at", "6"]) == 0  # the schedule spans 10 steps
    first = json.loads((out / "training_state.json").read_text())
    assert first["step"] == 6 and len(first["losses"]) == 6
    assert cli_main([*common, "--steps", "10", "--resume"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert len(report["losses"]) == 10 and report["losses"][:6] == first["losses"]
    assert json.loads((out / "training_state.json").read_text())["step"] == 10

    again = tmp_path / "continued"                     # a new run that starts from those weights
    assert cli_main([*common[:4], str(again), *common[5:], "--steps", "3", "--init-from", str(out)]) == 0
    assert json.loads((again / "config.json").read_text())["config"] == json.loads(
        (out / "config.json").read_text())["config"]
    assert len(json.loads((again / "report.json").read_text())["losses"]) == 3


def test_optimizer_state_round_trips_without_pickle(tmp_path) -> None:
    import torch

    from specvla_ros.core.errors import CheckpointError
    from specvla_ros.training.checkpointing import TrainingState, load_training_state, save_training_state

    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    save_training_state(tmp_path, optimizer, TrainingState(step=1, losses=[0.5]))
    assert not list(tmp_path.glob("*.pt")) and not list(tmp_path.glob("*.bin"))
    again = torch.optim.AdamW(model.parameters(), lr=0.01)
    assert load_training_state(tmp_path, again) == TrainingState(step=1, losses=[0.5])
    for before, after in zip(optimizer.state.values(), again.state.values(), strict=True):
        torch.testing.assert_close(before["exp_avg_sq"], after["exp_avg_sq"])
    with pytest.raises(CheckpointError, match="does not fit"):
        load_training_state(tmp_path, torch.optim.AdamW(torch.nn.Linear(4, 2).parameters()))
    with pytest.raises(CheckpointError, match="start without --resume"):
        load_training_state(tmp_path / "empty", again)


def test_train_draft_from_an_image_folder_and_resume(demo_folder, tmp_path) -> None:
    from PIL import Image

    from specvla_ros.training.datasets import load_observations

    frames = load_demo_folder(demo_folder)
    folder = tmp_path / "images"
    folder.mkdir()
    rows = []
    for index in range(0, 24, 2):
        Image.fromarray(frames.images[index]).save(folder / f"{index:03d}.png")
        rows.append({"image": f"{index:03d}.png", "instruction": frames.instructions[index]})
    (folder / "manifest.json").write_text(json.dumps(rows))
    loaded = load_observations(folder)
    assert len(loaded) == 12 and np.array_equal(loaded.images[1], frames.images[2])

    target_dir, draft_dir = tmp_path / "target", tmp_path / "draft"
    target, _ = make_pair(5)
    target.save(target_dir)
    common = ["train-draft", "--target", str(target_dir), "--data", str(folder), "--out", str(draft_dir),
              "--frames", "8", "--held-out", "4", "--eval-every", "5"]
    assert cli_main([*common, "--steps", "5"]) == 0
    assert cli_main([*common, "--steps", "10", "--resume"]) == 0
    report = json.loads((draft_dir / "report.json").read_text())
    assert [e["step"] for e in report["evaluations"]] == [0, 5, 10] and len(report["losses"]) == 10


@pytest.mark.parametrize("manifest, reason", [
    ("[{\"image\": \"missing.png\", \"instruction\": \"pick\"}]", "cannot read image"),
    ("[{\"image\": \"x.png\"}]", "needs a non-empty 'image' and 'instruction'"),
    ("{\"image\": 1}", "must be a list"),
    ("[]", "lists no images"),
])
def test_bad_image_folders_fail_clearly(tmp_path, manifest, reason) -> None:
    from specvla_ros.core.errors import InputError
    from specvla_ros.training.datasets import load_observations

    (tmp_path / "manifest.json").write_text(manifest)
    with pytest.raises(InputError, match=reason):
        load_observations(tmp_path)
    with pytest.raises(InputError, match="is not a demonstrations folder"):
        load_observations(tmp_path / "..")


def test_state_targets_locate_the_named_objects(demo_folder) -> None:
    from specvla_ros.sim.demos import load_episode
    from specvla_ros.training.state_targets import STATE_TARGET_NAMES, state_targets

    episode = load_episode(sorted(demo_folder.glob("*.npz"))[0])
    targets = state_targets(episode.states, episode.instruction)
    assert targets.shape == (len(episode), len(STATE_TARGET_NAMES)) and targets.dtype == np.float32
    cube = episode.states[f"{episode.instruction.split()[3]}_cube_pos"]
    np.testing.assert_allclose(targets[:, :3], (cube - episode.states["ee_pos"]) * 10, rtol=1e-5)
    np.testing.assert_allclose(targets[:, 6:8], targets[:, :2])  # a pick's destination is its cube
    place = {**episode.states, "green_plate_pos": episode.states["ee_pos"] + 0.1}
    np.testing.assert_allclose(state_targets(place, "put the red cube on the green plate")[:, 6:8], 1.0, rtol=1e-5)
    assert load_demo_folder(demo_folder).state_targets.shape[1] == len(STATE_TARGET_NAMES)
