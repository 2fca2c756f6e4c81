"""The feature cache: cached pairs train exactly like collected ones, extraction resumes after a kill
without redoing finished shards, and a cache refuses a target or arguments it was not made with."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from specvla_ros.cli import main as cli_main
from specvla_ros.core.config import DecoderConfig
from specvla_ros.core.decoder import build_decoder
from specvla_ros.training.datasets import Observations
from specvla_ros.training.distributed import Workers
from specvla_ros.training.draft_trainer import collect_sequence, pair_loss
from specvla_ros.training.extraction import ExtractionConfig, extract_features
from specvla_ros.training.feature_cache import FeatureCache, FeatureCacheError, check_target, same_features
from test.models import make_pair, observations
from test.training.image_folder import write_image_folder

REPO = Path(__file__).resolve().parents[2]


def _extract(target, data, out, **config) -> FeatureCache:
    extract_features(target, data, out, ExtractionConfig(**config), Workers(), source="memory", progress=False)
    return FeatureCache(out)


def test_cached_frames_train_exactly_like_collected_sequences(tmp_path) -> None:
    target, head = make_pair(4)
    images, texts = zip(*observations(3, 7), strict=True)
    data = Observations(list(images), list(texts))
    cache = _extract(target, data, tmp_path / "cache", held_out=2, shard_frames=2)
    assert len(cache) == 5 and len(cache.index["shards"]) == 3
    decoder = build_decoder(target, None, DecoderConfig(mode="autoregressive"))
    for i, source in enumerate(cache.index["frames"]):
        frame = cache.frame(i)
        direct = collect_sequence(target, images[source], texts[source])
        cached = frame.sequence(head.lm_head, torch.device("cpu"), torch.float32)
        assert torch.equal(cached.features, direct.features) and torch.equal(cached.embeds, direct.embeds)
        assert cached.first_action_pair == direct.first_action_pair
        assert frame.tokens.tolist() == list(decoder.decode(images[source], texts[source]).token_ids)
        losses = [pair_loss(head, head.lm_head, sequence, 0.0, 1.0, 0.1, torch.Generator())
                  for sequence in (cached, direct)]
        torch.testing.assert_close(losses[0], losses[1], rtol=1e-6, atol=1e-7)
    held_images, held_texts = cache.held_out()
    assert [texts[i] for i in cache.index["held_out"]] == held_texts
    assert all(np.array_equal(images[i], image) for i, image in zip(cache.index["held_out"], held_images, strict=True))


def test_bfloat16_cache_is_half_the_size_and_knows_its_target(tmp_path) -> None:
    target, _ = make_pair(4)
    data = Observations(*map(list, zip(*observations(5, 10), strict=True)))
    full = _extract(target, data, tmp_path / "fp32", held_out=2, shard_frames=4)
    half = _extract(target, data, tmp_path / "bf16", held_out=2, shard_frames=4, dtype="bfloat16")
    assert half.frame(0).features.dtype == torch.bfloat16
    assert 0.45 < half.index["bytes"] / full.index["bytes"] < 0.55
    check_target(half, target)  # bfloat16 storage still matches its own target
    other, _ = make_pair(6)
    probe = half.probe()
    from specvla_ros.training.draft_trainer import collect_frame

    assert not same_features(probe.features, collect_frame(other, probe.image, probe.instruction).features)
    with pytest.raises(FeatureCacheError, match="another target"):
        check_target(half, other)


def test_size_estimate_is_printed_first_and_close(tmp_path, capsys) -> None:
    target, _ = make_pair(4)
    target_dir, images = target.save(tmp_path / "target"), write_image_folder(tmp_path / "images", 12, seed=2)
    assert cli_main(["extract-features", "--target", str(target_dir), "--data", str(images), "--out",
                     str(tmp_path / "cache"), "--held-out", "2", "--shard-frames", "4"]) == 0
    printed = capsys.readouterr().out
    assert printed.index("about") < printed.index("wrote")
    index = json.loads((tmp_path / "cache/index.json").read_text())
    estimate = float(printed.split("about ")[1].split(" kB")[0]) * 1e3
    assert abs(estimate - index["bytes"]) / index["bytes"] < 0.02  # shard headers are not counted


_KILLED_RUN = """
import os, signal, sys
from pathlib import Path
from specvla_ros.core.loading import load_backbone
from specvla_ros.training.datasets import load_observations
from specvla_ros.training.distributed import Workers
from specvla_ros.training.extraction import ExtractionConfig, extract_features

target, data, out = map(Path, sys.argv[1:4])

def kill_after_shard_1(shard):
    if shard == 1:
        os.kill(os.getpid(), signal.SIGKILL)

extract_features(load_backbone(target), load_observations(data), out,
                 ExtractionConfig(frames=12, held_out=3, shard_frames=3), Workers(), source=str(data.resolve()),
                 target_path=str(target.resolve()), on_shard=kill_after_shard_1)
"""


@pytest.mark.slow
def test_extract_features_resumes_after_a_kill_without_redoing_finished_shards(tmp_path, capsys) -> None:
    target, _ = make_pair(4)
    target_dir, images = target.save(tmp_path / "target"), write_image_folder(tmp_path / "images", 16, seed=3)
    out = tmp_path / "cache"
    killed = subprocess.run([sys.executable, "-c", _KILLED_RUN, str(target_dir), str(images), str(out)], cwd=REPO,
                            capture_output=True, text=True, timeout=240)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    finished = {path.name: (path.stat().st_ino, path.stat().st_mtime_ns) for path in out.glob("shard-*.safetensors")}
    assert sorted(finished) == ["shard-00000.safetensors", "shard-00001.safetensors"]
    assert not (out / "index.json").exists()
    with pytest.raises(FeatureCacheError, match="did not finish"):
        FeatureCache(out)

    args = ["extract-features", "--target", str(target_dir), "--data", str(images), "--out", str(out), "--frames",
            "12", "--held-out", "3", "--shard-frames", "3"]
    assert cli_main(args) == 0
    printed = capsys.readouterr().out
    assert "2 shard(s) already finished" in printed and "this run extracted 6 frames" in printed
    for name, identity in finished.items():
        assert ((out / name).stat().st_ino, (out / name).stat().st_mtime_ns) == identity
    cache = FeatureCache(out)
    assert len(cache) == 12 and [s["frames"] for s in cache.index["shards"]] == [3, 3, 3, 3]
    assert not list(out.glob("*.tmp"))

    (out / "shard-00003.safetensors").write_bytes(b"cut short")  # a damaged shard is redone, not trusted
    assert cli_main(args) == 0
    assert "3 shard(s) already finished" in capsys.readouterr().out
    assert FeatureCache(out).frame(11).features.shape[1] == target.hidden_size

    with pytest.raises(FeatureCacheError, match="started with other arguments or data"):
        cli_main([*args[:-6], "--frames", "10", "--held-out", "3", "--shard-frames", "3"])
    os.remove(out / "index.json")
    with pytest.raises(FeatureCacheError, match="run the same extract-features command again"):
        FeatureCache(out)


def test_train_draft_refuses_what_it_cannot_do(tmp_path) -> None:
    from specvla_ros.core.errors import ConfigError
    from specvla_ros.training.cached_training import CachedDraftTrainer, DraftTrainConfig

    with pytest.raises(ConfigError, match="needs --data"):
        cli_main(["train-draft", "--out", str(tmp_path / "draft")])
    with pytest.raises(ConfigError, match="--data needs --target"):
        cli_main(["train-draft", "--data", str(tmp_path), "--out", str(tmp_path / "draft")])
    with pytest.raises(ConfigError, match="run extract-features first"):
        cli_main(["train-draft", "--features", str(tmp_path), "--out", str(tmp_path / "draft")])
    target, head = make_pair(4)
    data = Observations(*map(list, zip(*observations(5, 4), strict=True)))
    cache = _extract(target, data, tmp_path / "cache", held_out=1, shard_frames=4)
    with pytest.raises(ConfigError, match="multiple of the number of ranks"):
        CachedDraftTrainer(head, cache, DraftTrainConfig(batch_size=3), Workers(rank=0, world_size=2))
