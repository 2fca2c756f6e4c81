"""Demonstrations on disk: shapes, dtypes, alignment and determinism by seed."""

import json
from pathlib import Path

import numpy as np
import pytest

from specvla_ros.cli import main as cli_main
from specvla_ros.sim.demos import generate_demos, load_episode, relabel_demos
from specvla_ros.sim.expert import ExpertConfig
from specvla_ros.sim.video import save_gif


def test_generate_and_load_demos(small_render_config, tmp_path: Path) -> None:
    paths = generate_demos(tmp_path / "a", ["pick", "push"], 1, seed=3, env_config=small_render_config)
    assert [p.name for p in paths] == ["pick_000003.npz", "push_000003.npz"]
    episode = load_episode(paths[0])
    steps = len(episode)
    assert episode.success and episode.task == "pick" and episode.seed == 3
    assert episode.instruction.startswith("pick up the ")
    assert episode.images.shape == (steps, 64, 80, 3) and episode.images.dtype == np.uint8
    assert episode.actions.shape == (steps, 7) and episode.actions.dtype == np.float32
    assert episode.proprio.shape == (steps, 7)
    assert episode.states["ee_pos"].shape == (steps, 3)
    # Step-aligned: the first proprio is the reset pose, gripper open.
    assert episode.proprio[0, 6] > 0.95
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert [m["file"] for m in manifest] == ["pick_000003.npz", "push_000003.npz"]

    again = generate_demos(tmp_path / "b", ["pick"], 1, seed=3, env_config=small_render_config)
    repeat = load_episode(again[0])
    np.testing.assert_array_equal(repeat.actions, episode.actions)
    np.testing.assert_array_equal(repeat.images, episode.images)


def test_save_gif_is_small_and_animated(tmp_path: Path) -> None:
    frames = [np.full((32, 32, 3), i * 20, np.uint8) for i in range(10)]
    path = save_gif(frames, tmp_path / "x.gif", every=2)
    from PIL import Image

    with Image.open(path) as gif:
        assert gif.n_frames == 6  # every 2nd frame plus the final one
        assert gif.size == (32, 32)


@pytest.mark.slow
def test_dagger_recording_labels_the_states_the_actor_visits(small_render_config, tmp_path: Path) -> None:
    """With an actor driving, the expert's action for each visited state is recorded, not the actor's,
    and a failed episode is kept (it is the data DAgger wants)."""
    seen: list[str] = []

    def frozen_policy(image: np.ndarray, instruction: str) -> np.ndarray:
        seen.append(instruction)
        return np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0])  # never moves

    (path,) = generate_demos(tmp_path / "d", ["pick"], 1, seed=3, env_config=small_render_config,
                             actor=frozen_policy, expert_share=0.0)
    episode = load_episode(path)
    assert not episode.success and len(seen) == len(episode)
    # The robot stayed where it started while the labels keep saying where the expert would go.
    np.testing.assert_allclose(episode.states["ee_pos"], episode.states["ee_pos"][:1].repeat(len(episode), 0),
                               atol=2e-3)
    assert np.all(np.abs(episode.actions[:, :3]).max(axis=1) > 0.005)

    (expert_only,) = generate_demos(tmp_path / "e", ["pick"], 1, seed=3, env_config=small_render_config,
                                    actor=frozen_policy, expert_share=1.0)
    reference = load_episode(generate_demos(tmp_path / "f", ["pick"], 1, seed=3, env_config=small_render_config)[0])
    np.testing.assert_array_equal(load_episode(expert_only).actions, reference.actions)


def test_relabel_reproduces_live_labels_and_follows_a_changed_expert(small_render_config, tmp_path: Path) -> None:
    """Stepping the expert through the stored states gives the labels it recorded live; a different
    expert configuration gives its own labels for the very same states (nothing re-simulated)."""
    paths = generate_demos(tmp_path / "d", ["place", "push"], 1, seed=5, env_config=small_render_config)
    relabelled = relabel_demos([tmp_path / "d"], tmp_path / "r")
    assert [p.name for p in relabelled] == sorted(p.name for p in paths)
    for path in paths:
        live, again = load_episode(path), load_episode(tmp_path / "r" / path.name)
        np.testing.assert_allclose(again.actions, live.actions, atol=1e-6)
        np.testing.assert_array_equal(again.images, live.images)
    slow = relabel_demos([tmp_path / "d"], tmp_path / "s", ExpertConfig(push_standoff_m=0.09))
    push = [p for p in slow if p.name.startswith("push")][0]
    assert not np.allclose(load_episode(push).actions, load_episode(tmp_path / "d" / push.name).actions)


def test_sim_demos_verb_writes_seeded_episodes_at_the_asked_size_and_relabels_them(tmp_path: Path) -> None:
    out = tmp_path / "demos"
    assert cli_main(["sim-demos", "--tasks", "push", "--episodes", "1", "--seed", "4", "--image-size", "48", "64",
                     "--out", str(out)]) == 0
    episode = load_episode(out / "push_000004.npz")
    assert episode.success and episode.images.shape[1:] == (48, 64, 3)
    assert cli_main(["sim-demos", "--relabel", str(out), "--out", str(tmp_path / "relabelled")]) == 0
    relabelled = load_episode(tmp_path / "relabelled" / "push_000004.npz")
    np.testing.assert_allclose(relabelled.actions, episode.actions, atol=1e-5)  # the same expert labels its own run
