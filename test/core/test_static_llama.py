"""The lean static-cache forward against Hugging Face's own LlamaModel (float32, <= 1e-5), and the
cache surgery a verify step needs."""
from __future__ import annotations

import inspect

import pytest
import torch
from transformers import DynamicCache
from transformers.models.llama.modeling_llama import LlamaModel

from specvla_ros.core.backbone import causal_mask
from specvla_ros.core.loading import load_backbone
from specvla_ros.core.static_llama import causal_visibility
from specvla_ros.core.tiny.config import TinyVLAConfig
from specvla_ros.core.tiny.model import TinyVLA
from specvla_ros.models import BUNDLED
from test.models import SMALL, make_pair, observations

TOLERANCE = 1e-5
# transformers 5.24 calls the cache argument `cache`; older 5.x (the GPU machine's 5.17) `past_key_values`.
CACHE = "cache" if "cache" in inspect.signature(LlamaModel.forward).parameters else "past_key_values"
GQA = TinyVLAConfig(image_size=32, patch_size=16, vision_dim=32, hidden_size=48, intermediate_size=96,
                    num_layers=3, num_heads=6, num_kv_heads=2, vocab_size=600)


def _targets(request) -> dict:
    return {"shipped": lambda: load_backbone(BUNDLED / "target"), "small": lambda: TinyVLA.random(SMALL, 1),
            "gqa": lambda: TinyVLA.random(GQA, 2),
            "openvla": lambda: load_backbone(request.getfixturevalue("openvla_checkpoint"))}


def _causal_lm(target):
    return target.language.causal_lm


@torch.inference_mode()
def _hf_prefill(target, image, text):
    """The sequence run through HF's LlamaModel with a DynamicCache: the reference."""
    ours = target.prefill(image, text)
    embeds = torch.cat([ours.next_embeds[:0], _embeds(target, ours)])
    cache = DynamicCache()
    hidden = _causal_lm(target).model(inputs_embeds=embeds[None], use_cache=True, **{CACHE: cache}).last_hidden_state[0]
    return ours, cache, hidden


def _embeds(target, prefill):
    """Rebuild the prefix inputs: position 0 is BOS (not in next_embeds), then next_embeds."""
    bos = target.embed_tokens(torch.tensor([1], device=target.device))
    return torch.cat([bos, prefill.next_embeds])


@pytest.mark.parametrize("name", ["shipped", "small", "gqa", "openvla"])
@torch.inference_mode()
def test_prefill_and_tree_forward_logits_equal_hf(name, request) -> None:
    target = _targets(request)[name]()
    lm = _causal_lm(target)
    for image, text in observations(3, 2):
        ours, cache, hf_hidden = _hf_prefill(target, image, text)
        torch.testing.assert_close(ours.hidden, hf_hidden, atol=TOLERANCE, rtol=0)
        torch.testing.assert_close(ours.logits_last, lm.lm_head(hf_hidden[-1]), atol=TOLERANCE, rtol=0)
        # A tree: root, two children, a grandchild under the first child.
        first = target.action_tokenizer.first_action_token
        tokens = torch.tensor([first + 10, first + 20, first + 21, first + 30])
        tree_mask = torch.tensor([[1, 0, 0, 0], [1, 1, 0, 0], [1, 0, 1, 0], [1, 1, 0, 1]], dtype=torch.bool)
        positions = ours.prefix_len + torch.tensor([0, 1, 1, 2])
        logits, hidden = target.forward(ours.cache, tokens, positions, tree_mask)
        mask = torch.zeros(4, ours.prefix_len + 4)
        mask[:, ours.prefix_len:].masked_fill_(~tree_mask, torch.finfo(torch.float32).min)
        hf = lm.model(input_ids=tokens[None], position_ids=positions[None], attention_mask=mask[None, None],
                      use_cache=True, **{CACHE: cache}).last_hidden_state[0]
        torch.testing.assert_close(hidden, hf, atol=TOLERANCE, rtol=0)
        torch.testing.assert_close(logits, lm.lm_head(hf), atol=TOLERANCE, rtol=0)


def test_draft_head_step_equals_its_training_forward() -> None:
    target, head = make_pair(4, train_steps=10)
    with torch.inference_mode():
        _check_step_equals_forward(target, head)


def _check_step_equals_forward(target, head) -> None:
    prefill = target.prefill(*observations(4, 1)[0])
    count = prefill.prefix_len
    positions = torch.arange(count)
    expected = head(prefill.next_embeds, prefill.hidden[:-1], positions[:-1])
    cache = head.new_cache(count + 8)
    got = head.step(cache, prefill.next_embeds, prefill.hidden[:-1], positions[:-1],
                    causal_visibility(cache, count - 1, "cpu"))
    torch.testing.assert_close(got, expected, atol=TOLERANCE, rtol=0)
    assert cache.length == count - 1


@torch.inference_mode()
def test_commit_moves_the_accepted_entries_into_place() -> None:
    target = TinyVLA.random(SMALL, 5)
    image, text = observations(5, 1)[0]
    prefill = target.prefill(image, text)
    start = prefill.prefix_len
    keys_before = prefill.cache.keys[:, :, :start].clone()
    first = target.action_tokenizer.first_action_token
    tokens = torch.tensor([first, first + 1, first + 2, first + 3, first + 4])
    target.forward(prefill.cache, tokens, start + torch.tensor([0, 1, 1, 2, 2]),
                   torch.tensor([[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [1, 0, 1, 0, 0], [1, 0, 1, 1, 0],
                                 [1, 1, 0, 0, 1]], dtype=torch.bool))
    written = prefill.cache.keys[:, :, start:start + 5].clone()
    target.commit(prefill.cache, start, torch.tensor([0, 2, 3]))  # root -> node 2 -> node 3
    assert prefill.cache.length == start + 3
    torch.testing.assert_close(prefill.cache.keys[:, :, :start], keys_before, atol=0, rtol=0)
    torch.testing.assert_close(prefill.cache.keys[:, :, start:start + 3], written[:, :, [0, 2, 3]], atol=0, rtol=0)
    # continuing after the commit equals a chain computed from scratch
    after, _ = target.forward(prefill.cache, torch.tensor([first + 9]), torch.tensor([start + 3]),
                              causal_mask(1, "cpu"))
    scratch = target.prefill(image, text)
    chain = torch.tensor([first, first + 2, first + 3, first + 9])
    expected, _ = target.forward(scratch.cache, chain, start + torch.arange(4), causal_mask(4, "cpu"))
    torch.testing.assert_close(after[0], expected[3], atol=TOLERANCE, rtol=0)


@torch.inference_mode()
def test_a_full_cache_is_refused_and_a_longer_prompt_gets_a_larger_one() -> None:
    target = TinyVLA.random(SMALL, 6)
    image, _ = observations(6, 1)[0]
    short = target.prefill(image, "pick", reserve=1)
    with pytest.raises(ValueError, match="KV cache full"):
        target.forward(short.cache, torch.arange(short.cache.capacity), torch.arange(short.cache.capacity),
                       causal_mask(short.cache.capacity, "cpu"))
    again = target.prefill(image, "pick", cache=short.cache, reserve=1)
    assert again.cache is short.cache  # reused when it has room
    longer = target.prefill(image, "pick " * 40, cache=short.cache, reserve=1)
    assert longer.cache is not short.cache and longer.cache.capacity >= longer.prefix_len + 1
