"""Guesses verified inside the prefill (decoder.prefill_drafts): one target forward for a right
guess, and r = 0 still equal to AR token for token, with and without the draft head."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from specvla_ros.core.config import DecoderConfig, TreeConfig
from specvla_ros.core.decoder import build_decoder
from specvla_ros.core.draft_head import DraftHead
from specvla_ros.core.loading import load_backbone
from specvla_ros.core.temporal_draft import TemporalDraftConfig
from test.core.test_properties import build, cases, property_settings
from test.models import make_pair, observations


def fused(tree: TreeConfig = TreeConfig(), head: bool = True, relax=0, proposals=("previous", "linear"),
          datastore: str = "") -> DecoderConfig:
    return DecoderConfig(tree=tree, relax_bins=relax, prefill_drafts=True,
                         temporal=TemporalDraftConfig(enabled=True, draft_head=head, proposals=proposals,
                                                      datastore=datastore))


def random_datastore(folder, seed: int) -> str:
    """A datastore of random action bins: its guesses are mostly wrong, which r = 0 must survive."""
    from specvla_ros.core.retrieval_draft import ActionDatastore

    bins = np.random.default_rng(seed).integers(0, 255, (40, 7)).astype(np.uint8)
    return str(ActionDatastore.from_episodes([bins[:20], bins[20:]]).save(folder / f"random_{seed}.safetensors"))


def test_a_right_guess_costs_one_target_forward() -> None:
    target, head = make_pair(3, train_steps=20)
    image, text = observations(5, 1)[0]
    reference = build_decoder(target, None, DecoderConfig(mode="autoregressive")).decode(image, text)
    for use_head in (True, False):
        decoder = build_decoder(target, head, fused(head=use_head))
        first = decoder.decode(image, text, time_s=0.0)
        assert first.stats.prefill_accepted == 0 and first.stats.temporal_candidates == 0  # no history yet
        again = decoder.decode(image, text, time_s=0.1)  # the previous action is exactly the target's
        assert again.token_ids == reference.token_ids
        assert again.stats.target_forward_passes == 1 and again.stats.prefill_accepted == 6
        assert again.stats.accepted_per_step == ()


def test_a_wrong_guess_falls_back_to_speculative_steps() -> None:
    target, head = make_pair(4, train_steps=20)
    (image, text), (other, _) = observations(6, 2)
    decoder = build_decoder(target, head, fused())
    autoregressive = build_decoder(target, None, DecoderConfig(mode="autoregressive"))
    decoder.decode(other, text, time_s=0.0)
    result = decoder.decode(image, text, time_s=0.1)  # the guess comes from another frame
    assert result.token_ids == autoregressive.decode(image, text).token_ids
    assert result.stats.target_forward_passes == 1 + len(result.stats.accepted_per_step)
    assert result.stats.prefill_accepted + len(result.stats.accepted_per_step) + sum(result.stats.accepted_per_step) \
        == 6


def _episode_equals_ar(target, head, config: DecoderConfig, images, instruction: str) -> int:
    """Decode consecutive frames; each must equal AR. Returns guessed tokens accepted in prefills."""
    decoder = build_decoder(target, head if config.uses_draft_head else None, config)
    autoregressive = build_decoder(target, None, DecoderConfig(mode="autoregressive"))
    accepted = 0
    for index, image in enumerate(images):
        result = decoder.decode(image, instruction, time_s=0.1 * index)
        assert result.token_ids == autoregressive.decode(image, instruction).token_ids, index
        accepted += result.stats.prefill_accepted
    return accepted


def _frames(seed: int, shape: tuple[int, int, int], count: int) -> list[np.ndarray]:
    """A slowly changing scene: consecutive frames differ a little, some repeat exactly."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, shape, dtype=np.uint8)
    frames = []
    for index in range(count):
        noise = rng.integers(-8, 9, shape) if index % 3 else 0
        frames.append(np.clip(base.astype(int) + noise, 0, 255).astype(np.uint8))
    return frames


@pytest.mark.slow
@property_settings(80)
@given(cases(), st.booleans(), st.sampled_from([("previous", "before"), ("previous",), ("linear", "before"), ()]))
def test_r0_fused_prefill_equals_autoregressive(tmp_path_factory, case, use_head: bool, proposals) -> None:
    """80 cases x 3 frames: the first frame has no guesses, the next two do (160 fused decodes, 200+
    with the OpenVLA-layout test below); proposals () = retrieval guesses alone, and every fourth
    case adds a datastore to the temporal guesses."""
    config, seed, draft, text_logit_scale, tree, shape, instruction = case
    target, head = build(config, seed, draft, text_logit_scale)
    datastore = random_datastore(tmp_path_factory.mktemp("store"), seed) if not proposals or seed % 4 == 0 else ""
    _episode_equals_ar(target, head, fused(tree, use_head, proposals=proposals, datastore=datastore),
                       _frames(seed, shape, 3), instruction)


@pytest.mark.parametrize("use_head", [True, False])
def test_r0_fused_prefill_on_an_openvla_layout(openvla_checkpoint, use_head: bool) -> None:
    target = load_backbone(openvla_checkpoint)
    head = DraftHead.random(target, seed=5, num_heads=4)
    accepted = 0
    for seed in range(6):
        frames = _frames(seed, (56, 56, 3), 6)
        accepted += _episode_equals_ar(target, head, fused(TreeConfig(top_k=4, depth=3, total_tokens=12), use_head),
                                       frames, "pick up the red cube")
    assert accepted > 0  # the check covers accepted guesses, not only rejections


@pytest.mark.parametrize("relax", [2, (0, 3, 3, 3, 3, 3, 0)])
def test_relaxed_fused_prefill_keeps_each_token_within_r_of_the_target(relax) -> None:
    from test.core.test_properties import target_choice_after

    target, head = make_pair(8, train_steps=20)
    config = fused(relax=relax)
    decoder = build_decoder(target, head, config)
    for index, image in enumerate(_frames(8, (24, 40, 3), 6)):
        result = decoder.decode(image, "pick up the red cube", time_s=0.1 * index)
        tokens = list(result.token_ids)
        for position, token in enumerate(tokens):
            choice = target_choice_after(target, image, "pick up the red cube", tokens[:position])
            bins = target.action_tokenizer.token_to_bin(np.array([token, choice]))
            assert abs(int(bins[0]) - int(bins[1])) <= config.relax_bins[position]


def test_prefill_drafts_read_the_host_once_per_forward() -> None:
    from test.core.test_compiled import HostReads

    target, head = make_pair(9, train_steps=20)
    decoder = build_decoder(target, head, fused())
    for index, image in enumerate(_frames(9, (24, 40, 3), 4)):
        with HostReads() as reads, torch.inference_mode():
            result = decoder.decode(image, "pick it up", time_s=0.1 * index)
        fused_prefill = result.stats.temporal_candidates > 0  # the first frame has no guesses yet
        assert reads.count == len(result.stats.accepted_per_step) + fused_prefill
