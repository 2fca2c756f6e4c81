"""Property tests over many random tiny VLAs, draft heads, observations and tree shapes.

The principle every good speculative decoder is held to: at r = 0 its tokens equal plain greedy
decoding token for token; at r > 0 every token lies within r bins (per dimension) of the target's
own greedy choice after the same prefix.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from specvla_ros.core.backbone import causal_mask
from specvla_ros.core.config import DecoderConfig, TreeConfig
from specvla_ros.core.decoder import build_decoder
from specvla_ros.core.draft_head import DraftHead
from specvla_ros.core.tiny.config import TinyVLAConfig
from specvla_ros.core.tiny.model import TinyVLA


def property_settings(examples: int) -> settings:
    """Deterministic (CI reruns see the same cases), no deadline (a case builds a model)."""
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))


def cloned_draft_head(target: TinyVLA, seed: int, noise: float) -> DraftHead:
    """A draft head that copies the target's first layer and reads only the token embedding.

    For a one-layer target it drafts almost exactly what the target will say (it misses only the
    BOS entry), so many drafted paths are accepted; `noise` perturbs it into partial agreement.
    """
    config = target.config
    head = DraftHead.random(target, seed, num_heads=config.num_heads, intermediate_size=config.intermediate_size)
    with torch.no_grad():
        head.layer.load_state_dict(target.llm.model.layers[0].state_dict())
        head.fc.weight.zero_()
        head.fc.weight[:, : config.hidden_size] = torch.eye(config.hidden_size)
        head.fc.bias.zero_()
        generator = torch.Generator().manual_seed(seed)
        for parameter in head.parameters():
            parameter.add_(noise * parameter.abs().mean() * torch.randn(parameter.shape, generator=generator))
    return head


@st.composite
def cases(draw):
    heads = draw(st.sampled_from([2, 4]))
    kv_heads = draw(st.sampled_from([heads, heads, 1]))
    patch = draw(st.sampled_from([8, 16]))
    config = TinyVLAConfig(
        image_size=32 if patch == 16 else draw(st.sampled_from([16, 32])), patch_size=patch, vision_dim=32,
        hidden_size=heads * draw(st.sampled_from([8, 16])), num_layers=draw(st.sampled_from([1, 1, 2])),
        intermediate_size=64, num_heads=heads, num_kv_heads=kv_heads, vocab_size=draw(st.sampled_from([515, 528, 700])),
        init_std=draw(st.sampled_from([0.05, 0.1, 0.2])))
    seed = draw(st.integers(0, 10_000))
    draft = draw(st.sampled_from(["random", "clone", "clone", "noisy clone"])) if kv_heads == heads else "random"
    text_logit_scale = draw(st.sampled_from([0.0, 0.0, 0.5, 1.0]))  # > 0: the target may emit non-action tokens
    tree = TreeConfig(top_k=draw(st.integers(1, 12)), depth=draw(st.integers(1, 6)),
                      total_tokens=draw(st.integers(1, 90)), chain=draw(st.booleans()),
                      restrict_to_action_tokens=draw(st.booleans()))
    shape = (draw(st.integers(2, 48)), draw(st.integers(2, 48)), 3)
    instruction = draw(st.text(min_size=1, max_size=30).filter(str.strip))
    return config, seed, draft, text_logit_scale, tree, shape, instruction


def build(config, seed, draft, text_logit_scale):
    target = TinyVLA.random(config, seed)
    if text_logit_scale:
        first = target.action_tokenizer.first_action_token
        weight = target.lm_head.weight
        with torch.no_grad():
            generator = torch.Generator().manual_seed(seed)
            weight[:first] = text_logit_scale * weight[first:].std() * torch.randn(weight[:first].shape,
                                                                                     generator=generator)
    if draft == "random":
        return target, DraftHead.random(target, seed + 1, num_heads=2)
    return target, cloned_draft_head(target, seed + 1, noise=0.3 if draft == "noisy clone" else 0.0)


@torch.inference_mode()
def target_choice_after(target, image, instruction, prefix: list[int]) -> int:
    """The target's greedy token after `prefix`, recomputed from scratch (no cache reuse)."""
    fresh = target.prefill(image, instruction)
    if not prefix:
        return int(fresh.logits_last.argmax())
    logits, _ = target.forward(fresh.cache, torch.tensor(prefix), fresh.prefix_len + torch.arange(len(prefix)),
                               causal_mask(len(prefix), "cpu"))
    return int(logits[-1].argmax())


@pytest.mark.slow
@property_settings(220)
@given(cases())
def test_r0_speculative_equals_autoregressive(case) -> None:
    config, seed, draft, text_logit_scale, tree, shape, instruction = case
    target, head = build(config, seed, draft, text_logit_scale)
    image = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    expected = build_decoder(target, None, DecoderConfig(mode="autoregressive")).decode(image, instruction)
    trace: list = []
    result = build_decoder(target, head, DecoderConfig(tree=tree)).decode(image, instruction, trace=trace)
    assert result.token_ids == expected.token_ids
    assert result.stats.target_forward_passes == 1 + len(trace)
    emitted = 1
    for step in trace:  # never verifies deeper than the tokens still missing minus the bonus
        assert step.max_depth == 6 - emitted
        assert not bool((step.tree.valid & (step.tree.depths > step.max_depth)).any())
        assert not bool((step.accepted & ~step.tree.valid).any())
        emitted += len(step.path) + 1
    assert emitted == 7


def test_cloned_draft_heads_get_accepted() -> None:
    """The property cases above exercise accepted paths, not only rejections: cloned heads agree."""
    config = TinyVLAConfig(image_size=32, patch_size=16, vision_dim=32, hidden_size=32, intermediate_size=64,
                           num_layers=1, num_heads=4, num_kv_heads=4, vocab_size=528)
    accepted = []
    for seed in range(8):
        target, head = build(config, seed, "clone", 0.0)
        image = np.random.default_rng(seed).integers(0, 256, (24, 24, 3), dtype=np.uint8)
        accepted.append(sum(build_decoder(target, head, DecoderConfig()).decode(image, "pick it up")
                            .stats.accepted_per_step))
    assert np.mean(accepted) >= 2.0, accepted


@pytest.mark.slow
@property_settings(40)
@given(cases(), st.sampled_from([1, 3, (2, 2, 2, 1, 1, 1, 0), (0, 5, 0, 5, 0, 5, 0)]))
def test_relaxed_tokens_within_r_bins_of_the_target_choice(case, relax) -> None:
    config, seed, draft, text_logit_scale, tree, shape, instruction = case
    target, head = build(config, seed, draft, text_logit_scale)
    image = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    decoder_config = DecoderConfig(tree=tree, relax_bins=relax)
    result = build_decoder(target, head, decoder_config).decode(image, instruction)
    assert len(result.token_ids) == 7 and np.all(np.isfinite(result.action))
    tokenizer = target.action_tokenizer
    tokens = list(result.token_ids)
    for position, token in enumerate(tokens):
        choice = target_choice_after(target, image, instruction, tokens[:position])
        if token != choice:
            assert tokenizer.is_action_token(token) and tokenizer.is_action_token(choice)
            assert abs(int(tokenizer.token_to_bin(token)) - int(tokenizer.token_to_bin(choice))) \
                <= decoder_config.relax_bins[position]


@torch.inference_mode()
def constrained_reference(target, image, instruction) -> list[int]:
    """Greedy among the action tokens only, recomputed from scratch for every token."""
    first = target.action_tokenizer.first_action_token
    tokens: list[int] = []
    while len(tokens) < 7:
        fresh = target.prefill(image, instruction)
        if tokens:
            logits, _ = target.forward(fresh.cache, torch.tensor(tokens), fresh.prefix_len + torch.arange(len(tokens)),
                                       causal_mask(len(tokens), "cpu"))
            row = logits[-1]
        else:
            row = fresh.logits_last
        tokens.append(int(row[first:target.action_tokenizer.vocab_size].argmax()) + first)
    return tokens


@pytest.mark.slow
@property_settings(30)
@given(cases())
def test_action_tokens_only_emits_actions_and_r0_equals_constrained_ar(case) -> None:
    config, seed, draft, _, tree, shape, instruction = case
    target, head = build(config, seed, draft, text_logit_scale=1.0)  # a target that often prefers text ids
    image = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    expected = constrained_reference(target, image, instruction)
    for decoder_config in (DecoderConfig(mode="autoregressive", action_tokens_only=True),
                           DecoderConfig(tree=tree, action_tokens_only=True)):
        result = build_decoder(target, head, decoder_config).decode(image, instruction)
        assert list(result.token_ids) == expected
        assert result.stats.non_action_tokens == 0


def test_non_action_tokens_are_counted() -> None:
    config = TinyVLAConfig(image_size=32, patch_size=16, vision_dim=32, hidden_size=32, intermediate_size=64,
                           num_layers=1, num_heads=4, num_kv_heads=4, vocab_size=528)
    counted = 0
    for seed in range(6):
        target, head = build(config, seed, "random", text_logit_scale=2.0)
        image = np.random.default_rng(seed).integers(0, 256, (24, 24, 3), dtype=np.uint8)
        for decoder_config in (DecoderConfig(mode="autoregressive"), DecoderConfig()):
            result = build_decoder(target, head, decoder_config).decode(image, "pick it up")
            outside = sum(not target.action_tokenizer.is_action_token(t) for t in result.token_ids)
            assert result.stats.non_action_tokens == outside
            counted += outside
    assert counted > 0  # the check saw non-action tokens, not only clean actions
