"""LeRobot datasets as a data source: frames and tasks read back from the real layout, and a head
trained end to end from one."""
from __future__ import annotations

import json

import numpy as np
import pytest

from specvla_ros.cli import main as cli_main
from specvla_ros.core.config import DecoderConfig
from specvla_ros.core.errors import InputError
from specvla_ros.core.loading import load_decoder
from specvla_ros.training.datasets import load_observations, read_images
from test.models import INSTRUCTIONS, make_pair
from test.training.lerobot_layout import CAMERA, write_lerobot_dataset

SIZE = (32, 48)


def _episodes(count: int, length: int, seed: int = 0) -> list[tuple[str, np.ndarray]]:
    """Frame g of the dataset (in order) is a flat image of level 8 + 8 g (g < 30): what the decoder returns is
    identifiable through a lossy codec. Odd episodes get a textured half, as camera images have."""
    rng = np.random.default_rng(seed)
    episodes, level = [], 8
    for number in range(count):
        frames = np.zeros((length, *SIZE, 3), dtype=np.uint8)
        for k in range(length):
            frames[k] = level
            level += 8
        if number % 2:
            frames[:, :, : SIZE[1] // 4] = rng.integers(0, 256, (length, SIZE[0], SIZE[1] // 4, 3), dtype=np.uint8)
        episodes.append((INSTRUCTIONS[number % len(INSTRUCTIONS)], frames))
    return episodes


@pytest.mark.parametrize("version, store", [("v3.0", "video"), ("v2.1", "video"), ("v3.0", "image")])
def test_frames_and_tasks_read_back_in_dataset_order(tmp_path, version, store) -> None:
    episodes = _episodes(count=5, length=4)
    root = write_lerobot_dataset(tmp_path / "dataset", episodes, version=version, store=store)
    data = load_observations(root)
    assert len(data) == 20
    assert data.instructions == [task for task, frames in episodes for _ in frames]
    wanted = [17, 3, 3, 0, 19, 8, 12, 4]  # unsorted, across files and episodes, one twice
    images = read_images(data, wanted)
    assert all(image.shape == (*SIZE, 3) and image.dtype == np.uint8 for image in images)
    levels = [float(np.median(image[:, SIZE[1] // 2:])) for image in images]  # the flat half
    np.testing.assert_allclose(levels, [8 + 8 * g for g in wanted], atol=3)
    exact = [np.concatenate([frames for _, frames in episodes])[g] for g in wanted]
    if store == "image":  # PNG: lossless
        assert all(np.array_equal(a, b) for a, b in zip(images, exact, strict=True))
    assert np.array_equal(data.images[8], images[5])


def test_unknown_camera_and_unsupported_versions_fail_clearly(tmp_path) -> None:
    root = write_lerobot_dataset(tmp_path / "dataset", _episodes(2, 2), version="v3.0")
    with pytest.raises(InputError, match=f"choose --camera-key from {CAMERA}"):
        load_observations(root, camera_key="observation.images.wrist")
    info = json.loads((root / "meta/info.json").read_text())
    (root / "meta/info.json").write_text(json.dumps({**info, "codebase_version": "v1.6"}))
    with pytest.raises(InputError, match="v1.6' is not supported"):
        load_observations(root)


@pytest.mark.slow
def test_a_lerobot_dataset_trains_a_head_end_to_end(tmp_path) -> None:
    root = write_lerobot_dataset(tmp_path / "dataset", _episodes(count=6, length=5, seed=1), version="v3.0")
    target, _ = make_pair(5)
    target_dir, draft_dir = target.save(tmp_path / "target"), tmp_path / "draft"
    assert cli_main(["train-draft", "--target", str(target_dir), "--data", str(root), "--camera-key", CAMERA,
                     "--out", str(draft_dir), "--frames", "16", "--held-out", "4", "--shard-frames", "8",
                     "--steps", "24", "--batch-size", "2", "--eval-every", "12", "--relax-bins", "2"]) == 0
    report = json.loads((draft_dir / "report.json").read_text())
    assert report["train_frames"] == 16 and report["held_out_frames"] == 4
    assert [e["step"] for e in report["evaluations"]] == [0, 12, 24]
    assert np.mean(report["losses"][-6:]) < np.mean(report["losses"][:6])
    index = json.loads((draft_dir / "features/index.json").read_text())
    assert len(index["shards"]) == 2 and str(root.resolve()) in index["source"]

    data = load_observations(root)
    speculative = load_decoder(target_dir, draft_dir, DecoderConfig(relax_bins=0))
    autoregressive = load_decoder(target_dir, None, DecoderConfig(mode="autoregressive"))
    for image, text in zip(read_images(data, [0, 7, 29]), [data.instructions[i] for i in (0, 7, 29)], strict=True):
        assert speculative.decode(image, text).token_ids == autoregressive.decode(image, text).token_ids
