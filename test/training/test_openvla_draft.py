"""The 7B path's steps on an OpenVLA checkpoint in the real layout (tiny sizes): a LeRobot dataset,
extract-features, train-draft from the cache (the target found through the cache), and the head the
node loads decoding exactly like AR at r = 0."""
from __future__ import annotations

import json

from specvla_ros.cli import main as cli_main
from specvla_ros.core.config import DecoderConfig
from specvla_ros.core.loading import load_decoder
from specvla_ros.training.datasets import load_observations, read_images
from test.training.lerobot_layout import write_lerobot_dataset
from test.training.test_lerobot import _episodes


def test_openvla_checkpoint_to_a_head_the_node_loads(openvla_checkpoint, tmp_path) -> None:
    dataset = write_lerobot_dataset(tmp_path / "dataset", _episodes(count=4, length=4, seed=2))
    features, draft = tmp_path / "features", tmp_path / "draft"
    assert cli_main(["extract-features", "--target", str(openvla_checkpoint), "--data", str(dataset), "--out",
                     str(features), "--held-out", "3", "--shard-frames", "8"]) == 0
    index = json.loads((features / "index.json").read_text())
    assert len(index["frames"]) == 13 and index["hidden_size"] == 64
    assert cli_main(["train-draft", "--features", str(features), "--out", str(draft), "--steps", "8",
                     "--batch-size", "2", "--eval-every", "8", "--relax-bins", "2"]) == 0
    report = json.loads((draft / "report.json").read_text())
    assert report["target"] == str(openvla_checkpoint.resolve()) and len(report["losses"]) == 8

    speculative = load_decoder(openvla_checkpoint, draft, DecoderConfig(relax_bins=0))
    autoregressive = load_decoder(openvla_checkpoint, None, DecoderConfig(mode="autoregressive"))
    data = load_observations(dataset)
    for image, index in zip(read_images(data, [0, 9]), [0, 9], strict=True):
        text = data.instructions[index]
        assert speculative.decode(image, text).token_ids == autoregressive.decode(image, text).token_ids
