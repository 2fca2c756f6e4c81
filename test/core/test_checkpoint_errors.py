"""Bad checkpoint configs are typed errors that name the file (target or draft), never a raw traceback."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from specvla_ros.core.config import DecoderConfig
from specvla_ros.core.errors import CheckpointError
from specvla_ros.core.loading import load_decoder
from specvla_ros.models import BUNDLED


@pytest.fixture
def pair(tmp_path) -> Path:
    shutil.copytree(BUNDLED, tmp_path / "pair")
    return tmp_path / "pair"


def _edit(path: Path, **changes) -> None:
    meta = json.loads(path.read_text())
    for key, value in changes.items():
        if key == "config":
            meta["config"].update(value)
        else:
            meta[key] = value
    path.write_text(json.dumps(meta))


@pytest.mark.parametrize("num_heads", [0, -1, 5, "4", 1.5, None])
def test_draft_config_with_bad_heads_is_a_checkpoint_error_naming_the_draft(pair, num_heads) -> None:
    _edit(pair / "draft" / "config.json", num_heads=num_heads)
    with pytest.raises(CheckpointError, match=r"draft head config .*draft/config.json.*num_heads"):
        load_decoder(pair / "target", pair / "draft", DecoderConfig())


def test_negative_intermediate_size_is_a_checkpoint_error(pair) -> None:
    _edit(pair / "draft" / "config.json", intermediate_size=-3)
    with pytest.raises(CheckpointError, match="intermediate_size must be a positive integer"):
        load_decoder(pair / "target", pair / "draft", DecoderConfig())


def test_config_disagreeing_with_tensors_names_whose_weights(pair) -> None:
    _edit(pair / "draft" / "config.json", intermediate_size=100)
    with pytest.raises(CheckpointError, match=r"^draft head weights .*draft/model.safetensors: .*disagrees"):
        load_decoder(pair / "target", pair / "draft", DecoderConfig())
    _edit(pair / "draft" / "config.json", intermediate_size=192)
    _edit(pair / "target" / "config.json", config={"num_layers": 5})
    with pytest.raises(CheckpointError, match=r"^target model weights .*target/model.safetensors lacks tensor"):
        load_decoder(pair / "target", pair / "draft", DecoderConfig())
