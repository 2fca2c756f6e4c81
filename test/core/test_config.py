"""Configs refuse bad values with typed errors."""
from __future__ import annotations

import pytest

from specvla_ros.core.config import DecoderConfig, TreeConfig
from specvla_ros.core.errors import ConfigError
from specvla_ros.core.tiny.config import TinyVLAConfig


def test_relax_bins_broadcast_and_validated() -> None:
    assert DecoderConfig(relax_bins=3).relax_bins == (3,) * 7
    assert DecoderConfig(relax_bins=(1, 1, 1, 2, 2, 2, 0)).relax_bins == (1, 1, 1, 2, 2, 2, 0)
    with pytest.raises(ConfigError, match="one value or 7"):
        DecoderConfig(relax_bins=(1, 2))
    with pytest.raises(ConfigError, match="0..254"):
        DecoderConfig(relax_bins=-1)


@pytest.mark.parametrize("make", [
    lambda: DecoderConfig(mode="beam"),
    lambda: TreeConfig(depth=7),
    lambda: TreeConfig(top_k=0),
    lambda: TinyVLAConfig(image_size=30, patch_size=16),
    lambda: TinyVLAConfig(vocab_size=300),
    lambda: TinyVLAConfig(text_pieces=("ok", "")),
    lambda: TinyVLAConfig(text_pieces="pick"),
    lambda: TinyVLAConfig(vocab_size=515, text_pieces=("pick",)),   # 259 bytes + 1 piece + 256 bins = 516
    lambda: TinyVLAConfig(vision_stem="resnet"),
    lambda: TinyVLAConfig(vision_stem="conv"),   # gone: no faster than patch (docs/training.md, run 3)
])
def test_bad_values_raise_config_error(make) -> None:
    with pytest.raises(ConfigError):
        make()


@pytest.mark.parametrize("relax", [1.7, True, "3", (1, 2, 3, 4, 5, 6, 7.5), None])
def test_relax_bins_must_be_whole_numbers(relax) -> None:
    with pytest.raises(ConfigError, match="relax_bins"):
        DecoderConfig(relax_bins=relax)


@pytest.mark.parametrize("field, value", [("vision_layers", 0), ("vision_dim", 30), ("hidden_size", 0),
                                          ("num_layers", 1.5)])
def test_tiny_vla_sizes_are_validated(field, value) -> None:
    with pytest.raises(ConfigError, match=field if field != "vision_dim" else "divisible by 4"):
        TinyVLAConfig(**{field: value})
