"""The shipped tabletop pair: loads, fits the size budget, and decodes losslessly at r = 0."""
from __future__ import annotations

import numpy as np

from specvla_ros.core.config import DecoderConfig
from specvla_ros.core.loading import load_decoder
from specvla_ros.embedded_model import BUNDLED, embedded_model


def test_embedded_default_is_the_shipped_trained_pair_and_says_what_it_is() -> None:
    model = embedded_model()
    assert model.target_path == BUNDLED / "target" and model.draft_path == BUNDLED / "draft"
    assert any("56 of 60" in line for line in model.caveats)
    size = sum(path.stat().st_size for path in BUNDLED.rglob("*") if path.is_file())
    assert size < 25e6


def test_shipped_pair_decodes_like_its_target_at_r0() -> None:
    with np.load(BUNDLED.parents[2] / "bench" / "data" / "tabletop_frames.npz") as frames:
        images, instructions = frames["images"][::4], [str(text) for text in frames["instructions"][::4]]
    model = embedded_model()
    speculative = load_decoder(model.target_path, model.draft_path, DecoderConfig(relax_bins=0))
    autoregressive = load_decoder(model.target_path, None, DecoderConfig(mode="autoregressive"))
    lengths = []
    for image, instruction in zip(images, instructions, strict=True):
        spec = speculative.decode(image, instruction)
        assert spec.token_ids == autoregressive.decode(image, instruction).token_ids
        lengths.append(spec.stats.mean_acceptance_length)
    assert np.mean(lengths) > 1.3       # a trained head: most verify steps accept at least one draft
