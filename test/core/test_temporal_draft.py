"""Temporal drafting: history and reset rules, candidates, grafting onto the tree, and the decoder.

The principle stays the one every speculative decoder is held to: at r = 0 the output equals
plain greedy decoding token for token, whatever the temporal branches propose.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from specvla_ros.core.action_tokenizer import ActionTokenizer
from specvla_ros.core.config import DecoderConfig, TreeConfig
from specvla_ros.core.decoder import SOURCE_HEAD, SOURCE_TEMPORAL, build_decoder
from specvla_ros.core.draft_head import DraftHead
from specvla_ros.core.draft_tree import CHAIN_LENGTH, DraftTree, cat_trees, chain_nodes
from specvla_ros.core.errors import ConfigError
from specvla_ros.core.temporal_draft import TemporalDraftConfig, TemporalHistory
from specvla_ros.core.tiny.config import TinyVLAConfig
from specvla_ros.core.tiny.model import TinyVLA
from test.core.test_properties import cloned_draft_head, property_settings
from test.models import make_pair, observations

TOKENIZER = ActionTokenizer(vocab_size=528)
TOP = 527  # the token of bin 0


def tokens_of(bins: list[int]) -> tuple[int, ...]:
    return tuple(TOP - b for b in bins)


def history(**config) -> TemporalHistory:
    return TemporalHistory(TemporalDraftConfig(enabled=True, **config), TOKENIZER)


# ----- history, candidates, reset rules ---------------------------------------------------------
def test_previous_and_linear_candidates() -> None:
    past = history(proposals=("previous", "linear"))
    past.begin("pick", 0.0)
    assert past.candidates() == []
    past.record(tokens_of([10, 20, 30, 40, 50, 60, 0]))
    past.begin("pick", 0.1)
    assert past.candidates() == [tokens_of([10, 20, 30, 40, 50, 60, 0])]  # linear needs two
    past.record(tokens_of([12, 20, 28, 40, 50, 253, 0]))
    past.begin("pick", 0.2)
    previous, linear = past.candidates()
    assert previous == tokens_of([12, 20, 28, 40, 50, 253, 0])
    assert linear == tokens_of([14, 20, 26, 40, 50, 254, 0])  # extrapolated, clipped to the last bin


def test_linear_scales_with_frame_stamps_and_dedupes() -> None:
    past = history(proposals=("previous", "linear"))
    for stamp, bins in ((0.0, [10] * 7), (0.1, [12] * 7)):
        past.begin("pick", stamp)
        past.record(tokens_of(bins))
    past.begin("pick", 0.3)  # a dropped frame: two periods since the last action
    assert past.candidates()[1] == tokens_of([16] * 7)
    steady = history(proposals=("previous", "linear"))
    for bins in ([10] * 7, [10] * 7):
        steady.begin("pick")
        steady.record(tokens_of(bins))
    steady.begin("pick")
    assert steady.candidates() == [tokens_of([10] * 7)]  # linear = previous: offered once


def test_before_is_the_action_before_the_last() -> None:
    past = history()  # the default proposals: previous, before
    for stamp, bins in ((0.0, [10] * 7), (0.1, [12] * 7)):
        past.begin("pick", stamp)
        assert len(past.candidates()) == int(stamp * 10)  # "before" needs two past actions
        past.record(tokens_of(bins))
    past.begin("pick", 0.2)
    assert past.candidates() == [tokens_of([12] * 7), tokens_of([10] * 7)]


@pytest.mark.parametrize(("instruction", "stamp", "age", "reason"), [
    ("push", 0.2, None, "task changed"),
    ("pick", 0.2, 5.0, "old"),
    ("pick", 9.0, None, "gap"),
    ("pick", 0.05, None, "gap"),  # back in time (a replayed bag, a new episode)
])
def test_history_resets(instruction: str, stamp: float, age: float | None, reason: str) -> None:
    past = history(max_frame_age_s=1.0, max_gap_s=1.0)
    for time_s in (0.0, 0.1):
        past.begin("pick", time_s)
        past.record(tokens_of([5] * 7))
    past.begin(instruction, stamp, age)
    assert len(past) == 0 and past.candidates() == []
    assert reason in past.last_reset_reason


def test_history_keeps_within_bounds_and_explicit_reset() -> None:
    past = history(history=2, max_frame_age_s=0, max_gap_s=0)  # 0 = no bound
    for time_s in (0.0, 50.0, 100.0):
        past.begin("pick", time_s, frame_age_s=30.0)
        past.record(tokens_of([5] * 7))
    assert len(past) == 2  # K = 2 kept
    past.reset()
    assert len(past) == 0


@pytest.mark.parametrize("config", [dict(proposals=("ahead",)), dict(history=0), dict(history=1),
                                    dict(max_gap_s=-1.0), dict(proposals=())])
def test_config_refuses_bad_values(config: dict) -> None:
    with pytest.raises(ConfigError):
        TemporalDraftConfig(enabled=True, **config)


# ----- grafting chains onto the tree ------------------------------------------------------------
def test_chain_slots_follow_the_head_nodes_and_keep_tree_invariants() -> None:
    head_tree = DraftTree(tokens=torch.tensor([7, 8, 9]), parents=torch.tensor([-1, -1, 0]),
                          depths=torch.tensor([1, 1, 2]), valid=torch.tensor([True, True, True]))
    chains = chain_nodes([[7, 9, 4], [8]], slots=3, device=torch.device("cpu"))
    assert len(chains) == 3 * CHAIN_LENGTH
    tree = cat_trees(head_tree, chains)
    used = [3, 4, 5, 3 + CHAIN_LENGTH]  # chain 1: 7 -> 9 -> 4; chain 2: 8; slot 3 unused
    assert tree.tokens[used].tolist() == [7, 9, 4, 8]
    assert tree.parents[used].tolist() == [-1, 3, 4, -1]
    assert tree.depths[used].tolist() == [1, 2, 3, 1]
    assert tree.valid.sum() == 3 + 4 and all(tree.valid[used].tolist())
    mask = tree.attention_mask(max_depth=CHAIN_LENGTH)
    assert torch.nonzero(mask[1 + 5]).flatten().tolist() == [0, 4, 5, 6]  # node 5 (token 4): root, 7, 9, itself
    unused = 3 + 2 * CHAIN_LENGTH
    assert torch.nonzero(mask[1 + unused]).flatten().tolist() == [1 + unused]  # an unused slot sees only itself
    assert not bool(mask[:, 1 + unused].sum() > 1)  # ... and nobody sees it
    assert tree.position_offsets()[[0, 1 + 5]].tolist() == [0, 3]


# ----- the decoder ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pair() -> tuple[TinyVLA, DraftHead]:
    return make_pair(3, train_steps=20)


@pytest.mark.parametrize("use_head", [True, False])
def test_branch_equal_to_the_target_is_accepted_in_full(pair, use_head: bool) -> None:
    target, head = pair
    image, text = observations(5, 1)[0]
    config = DecoderConfig(relax_bins=0, temporal=TemporalDraftConfig(enabled=True, draft_head=use_head))
    decoder = build_decoder(target, head if use_head else None, config)
    reference = build_decoder(target, None, DecoderConfig(mode="autoregressive")).decode(image, text)
    first = decoder.decode(image, text)
    assert first.stats.temporal_candidates == 0
    again = decoder.decode(image, text)  # same frame: the previous action is exactly the target's output
    assert again.token_ids == first.token_ids == reference.token_ids
    assert again.stats.temporal_candidates == 1
    assert again.stats.accepted_per_step == (5,)        # tokens 2..6 drafted and accepted, 7 = bonus
    assert again.stats.target_forward_passes == 2       # prefill + one verify: no further step
    assert again.stats.path_sources[0] & SOURCE_TEMPORAL
    assert again.stats.mean_acceptance_length == 6.0


def test_task_change_and_reset_clear_the_history(pair) -> None:
    target, head = pair
    (image, _), = observations(6, 1)
    decoder = build_decoder(target, head, DecoderConfig(temporal=TemporalDraftConfig(enabled=True)))
    decoder.decode(image, "pick up the red cube")
    assert decoder.decode(image, "pick up the red cube").stats.temporal_candidates == 1
    assert decoder.decode(image, "push the blue cube").stats.temporal_candidates == 0
    assert decoder.decode(image, "push the blue cube").stats.temporal_candidates == 1
    decoder.reset()
    assert decoder.decode(image, "push the blue cube").stats.temporal_candidates == 0
    stale = decoder.decode(image, "push the blue cube", time_s=1.0, frame_age_s=9.0)
    assert stale.stats.temporal_candidates == 0


def test_temporal_only_needs_no_draft_head_and_off_is_unchanged(pair) -> None:
    target, head = pair
    with pytest.raises(ConfigError):
        build_decoder(target, None, DecoderConfig(temporal=TemporalDraftConfig(enabled=True)))
    decoder = build_decoder(target, None, DecoderConfig(temporal=TemporalDraftConfig(enabled=True, draft_head=False)))
    (image, text), = observations(7, 1)
    cold = decoder.decode(image, text)
    assert cold.stats.target_forward_passes == 7  # no history, no draft head: one token per forward, like AR
    off = build_decoder(target, head, DecoderConfig()).decode(image, text)
    assert off.stats.temporal_candidates == 0 and all(s in (0, SOURCE_HEAD) for s in off.stats.path_sources)


@st.composite
def temporal_cases(draw):
    heads = draw(st.sampled_from([2, 4]))
    config = TinyVLAConfig(image_size=32, patch_size=16, vision_dim=32, hidden_size=heads * 8,
                           num_layers=draw(st.sampled_from([1, 2])), intermediate_size=64, num_heads=heads,
                           num_kv_heads=heads, vocab_size=draw(st.sampled_from([515, 528])),
                           init_std=draw(st.sampled_from([0.05, 0.1, 0.2])))
    seed = draw(st.integers(0, 10_000))
    draft = draw(st.sampled_from(["none", "random", "clone", "noisy clone"]))
    temporal = TemporalDraftConfig(enabled=True, history=draw(st.integers(2, 5)),
                                   proposals=draw(st.sampled_from([("previous",), ("linear",), ("previous", "linear"),
                                                                   ("linear", "previous")])),
                                   draft_head=draft != "none")
    tree = TreeConfig(top_k=draw(st.integers(1, 8)), depth=draw(st.integers(1, 6)),
                      total_tokens=draw(st.integers(1, 40)), chain=draw(st.booleans()))
    # An episode: frames that repeat or drift slightly, so the guesses are sometimes right, sometimes not.
    frames = draw(st.lists(st.sampled_from(["same", "drift", "new"]), min_size=3, max_size=5))
    return config, seed, draft, temporal, tree, frames


@given(temporal_cases())
@property_settings(12)
def test_r0_with_temporal_branches_equals_greedy(case) -> None:
    config, seed, draft, temporal, tree, frames = case
    target = TinyVLA.random(config, seed)
    head = None
    if draft == "random":
        head = DraftHead.random(target, seed + 1, num_heads=2)
    elif draft != "none":
        head = cloned_draft_head(target, seed + 1, noise=0.3 if draft == "noisy clone" else 0.0)
    speculative = build_decoder(target, head, DecoderConfig(relax_bins=0, tree=tree, temporal=temporal))
    greedy = build_decoder(target, None, DecoderConfig(mode="autoregressive"))
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
    for step, change in enumerate(frames):
        if change == "drift":
            image = np.clip(image.astype(int) + rng.integers(-6, 7, image.shape), 0, 255).astype(np.uint8)
        elif change == "new":
            image = rng.integers(0, 256, image.shape, dtype=np.uint8)
        result = speculative.decode(image, "pick up the red cube", time_s=0.1 * step)
        assert result.token_ids == greedy.decode(image, "pick up the red cube").token_ids
        assert len(result.stats.path_sources) == len(result.stats.accepted_per_step)
        needed = 1 if "previous" in temporal.proposals else 2  # past actions before a guess exists
        assert (result.stats.temporal_candidates == 0) == (step < needed)
