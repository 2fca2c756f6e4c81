"""Retrieval drafts: the datastore proposes what followed the nearest demonstrated actions, its file
round-trips without pickle, `specvla build-datastore` builds one from demonstrations and from a bag,
and guesses from it leave r = 0 lossless (fused prefill)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from specvla_ros.core.action_tokenizer import ActionTokenizer
from specvla_ros.core.config import DecoderConfig
from specvla_ros.core.decoder import build_decoder
from specvla_ros.core.errors import CheckpointError, ConfigError
from specvla_ros.core.retrieval_draft import ActionDatastore
from specvla_ros.core.temporal_draft import TemporalDraftConfig
from test.core.test_prefill_drafts import _frames
from test.models import make_pair

TOKENIZER = ActionTokenizer(vocab_size=1000)


def tokens(bins) -> tuple[int, ...]:
    return tuple(TOKENIZER.vocab_size - 1 - int(b) for b in bins)


def test_proposes_what_followed_the_nearest_demonstrated_actions() -> None:
    walk = np.array([[10 * step + dim for dim in range(7)] for step in range(8)], dtype=np.uint8)
    other = np.full((5, 7), 200, dtype=np.uint8)
    store = ActionDatastore.from_episodes([walk, other])
    assert len(store) == 13
    # The last two actions were steps 2 and 3 of the walk: step 4 follows.
    assert store.propose([tokens(walk[2]), tokens(walk[3])], 1, TOKENIZER) == [tokens(walk[4])]
    # One action of history, a little off step 5: step 6 still follows the nearest key.
    near = walk[5].astype(int) + 1
    assert store.propose([tokens(near)], 2, TOKENIZER)[0] == tokens(walk[6])
    assert store.propose([tokens(other[0])], 1, TOKENIZER) == [tokens(other[1])]
    assert store.propose([], 2, TOKENIZER) == []  # no history, no key
    # An episode's first action follows nothing: never proposed after the end of another episode.
    assert tokens(other[0]) not in store.propose([tokens(walk[7])], 5, TOKENIZER)


def test_datastore_file_round_trips_and_bad_files_are_named(tmp_path) -> None:
    store = ActionDatastore.from_episodes([np.arange(21, dtype=np.uint8).reshape(3, 7)])
    loaded = ActionDatastore.load(store.save(tmp_path / "store.safetensors"))
    np.testing.assert_array_equal(loaded.actions, store.actions)
    with pytest.raises(CheckpointError, match="not found.*build-datastore"):
        ActionDatastore.load(tmp_path / "missing.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"not a file")
    with pytest.raises(CheckpointError, match="not a readable datastore"):
        ActionDatastore.load(tmp_path / "bad.safetensors")
    with pytest.raises(ConfigError, match="retrieved"):
        TemporalDraftConfig(enabled=True, datastore=str(tmp_path / "store.safetensors"), retrieved=0)


def test_retrieval_guesses_keep_r0_lossless_and_get_accepted(tmp_path) -> None:
    target, head = make_pair(11, train_steps=20)
    frames = _frames(11, (24, 40, 3), 8)
    autoregressive = build_decoder(target, None, DecoderConfig(mode="autoregressive"))
    with torch.inference_mode():
        demonstrated = np.array([autoregressive.decode(image, "pick it up").bins for image in frames], dtype=np.uint8)
    path = ActionDatastore.from_episodes([demonstrated]).save(tmp_path / "store.safetensors")
    temporal = TemporalDraftConfig(enabled=True, draft_head=False, proposals=(), datastore=str(path), retrieved=2)
    decoder = build_decoder(target, None, DecoderConfig(temporal=temporal, prefill_drafts=True))
    accepted = 0
    for index, image in enumerate(frames):
        result = decoder.decode(image, "pick it up", time_s=0.1 * index)
        assert result.token_ids == autoregressive.decode(image, "pick it up").token_ids
        accepted += result.stats.prefill_accepted
    assert accepted >= 6 * 6  # the demonstration is this very run: its next action is the right guess


def test_build_datastore_from_demonstrations_and_from_a_bag(tmp_path) -> None:
    from rclpy.serialization import serialize_message
    from specvla_ros.msg import DecodeStats

    from specvla_ros.bags.writer import BagWriter
    from specvla_ros.cli import main

    target, _ = make_pair(12)
    target.save(tmp_path / "target")
    demos = tmp_path / "demos"
    demos.mkdir()
    rng = np.random.default_rng(0)
    for index in range(2):
        np.savez(demos / f"pick_{index:06d}.npz", actions=rng.uniform(-0.02, 0.02, (5, 7)).astype(np.float32))
    assert main(["build-datastore", "--data", str(demos), "--target", str(tmp_path / "target"),
                 "--out", str(tmp_path / "demos.safetensors")]) == 0
    store = ActionDatastore.load(tmp_path / "demos.safetensors")
    assert len(store) == 10 and store.episodes.tolist() == [0] * 5 + [1] * 5

    with BagWriter(tmp_path / "run") as writer:
        writer.add_topic("/specvla_node/decode_stats", "specvla_ros/msg/DecodeStats")
        for index, time_ns in enumerate([0, 10**8, 2 * 10**8, 5 * 10**9, 5 * 10**9 + 10**8]):
            message = DecodeStats(token_ids=np.full(7, 520 - index, dtype=np.int32))
            writer.write_raw("/specvla_node/decode_stats", time_ns, serialize_message(message))
    assert main(["build-datastore", "--data", str(tmp_path / "run"), "--target", str(tmp_path / "target"),
                 "--out", str(tmp_path / "bag.safetensors")]) == 0
    store = ActionDatastore.load(tmp_path / "bag.safetensors")
    assert store.episodes.tolist() == [0, 0, 0, 1, 1]  # a 4.8 s pause starts a new episode
    assert store.actions[:, 0].tolist() == [7, 8, 9, 10, 11]  # bin = 527 - token in the 528-token vocabulary
