"""The shipped tabletop pair: loads, fits the size budget, and decodes losslessly at r = 0; and how commands
choose between it and the user's --model/--draft."""
from __future__ import annotations

import numpy as np
import pytest

from specvla_ros import models
from specvla_ros.core.config import DecoderConfig
from specvla_ros.core.errors import CheckpointError
from specvla_ros.core.loading import load_decoder
from specvla_ros.models import BUNDLED, embedded_pair, model_pair


def test_embedded_default_is_the_shipped_trained_pair_and_says_what_it_is() -> None:
    model = embedded_pair()
    assert model.target_path == BUNDLED / "target" and model.draft_path == BUNDLED / "draft"
    assert any("56 of 60" in line for line in model.caveats)
    size = sum(path.stat().st_size for path in BUNDLED.rglob("*") if path.is_file())
    assert size < 25e6


def test_shipped_pair_decodes_like_its_target_at_r0() -> None:
    with np.load(BUNDLED.parents[2] / "bench" / "data" / "tabletop_frames.npz") as frames:
        images, instructions = frames["images"][::4], [str(text) for text in frames["instructions"][::4]]
    model = embedded_pair()
    speculative = load_decoder(model.target_path, model.draft_path, DecoderConfig(relax_bins=0))
    autoregressive = load_decoder(model.target_path, None, DecoderConfig(mode="autoregressive"))
    lengths = []
    for image, instruction in zip(images, instructions, strict=True):
        spec = speculative.decode(image, instruction)
        assert spec.token_ids == autoregressive.decode(image, instruction).token_ids
        lengths.append(spec.stats.mean_acceptance_length)
    assert np.mean(lengths) > 1.3       # a trained head: most verify steps accept at least one draft


def test_model_pair_takes_the_users_folders_and_never_mixes_a_draft_into_another_target(tmp_path) -> None:
    lines: list[str] = []
    given = model_pair(tmp_path / "vla", None, log=lines.append)
    assert (given.target_path, given.draft_path, given.embedded) == (tmp_path / "vla", None, False)
    assert lines == []  # nothing to say about a model the user chose
    default = model_pair(None, None, log=lines.append)
    assert (default.target_path, default.draft_path, default.embedded) == (BUNDLED / "target", BUNDLED / "draft", True)
    assert lines == [f"model: {default.description}"]
    own_draft = model_pair(None, tmp_path / "head")
    assert (own_draft.target_path, own_draft.draft_path) == (BUNDLED / "target", tmp_path / "head")


def test_a_package_installed_without_its_models_says_how_to_fix_it(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(models, "BUNDLED", tmp_path / "tabletop")
    with pytest.raises(CheckpointError, match="reinstall specvla_ros with its package data.*--model and --draft"):
        model_pair(None, None)
