"""Decoding correctness: AR equals a slow reference; Spec-VLA at r = 0 equals AR token for token;
relaxed acceptance only accepts tokens within r bins of the target's own choice."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from specvla_ros.core.acceptance import accept_relaxed, deepest_accepted_chain
from specvla_ros.core.config import DecoderConfig, TreeConfig
from specvla_ros.core.decoder import build_decoder
from test.models import make_pair, observations

TREES = [TreeConfig(), TreeConfig(top_k=2, depth=6, total_tokens=12), TreeConfig(top_k=10, depth=6, total_tokens=80),
         TreeConfig(top_k=4, depth=1), TreeConfig(chain=True, depth=3),
         TreeConfig(top_k=5, depth=4, restrict_to_action_tokens=False)]


@torch.inference_mode()
def reference_greedy(target, image, instruction, prefix_tokens=()) -> list[int]:
    """Slow and obvious: recompute the whole sequence without a KV cache for every token."""
    prefill = target.prefill(image, instruction)
    tokens = list(prefix_tokens) or [int(prefill.logits_last.argmax())]
    while len(tokens) < 7:
        fresh = target.prefill(image, instruction)
        ids = torch.tensor(tokens)
        logits, _ = target.forward(fresh.cache, ids, fresh.prefix_len + torch.arange(len(tokens)),
                                   torch.ones(len(tokens), len(tokens), dtype=torch.bool).tril())
        tokens.append(int(logits[-1].argmax()))
    return tokens


@torch.inference_mode()
def target_choice_after(target, image, instruction, prefix: list[int]) -> int:
    """The target's greedy token after `prefix` (full recompute)."""
    fresh = target.prefill(image, instruction)
    if not prefix:
        return int(fresh.logits_last.argmax())
    ids = torch.tensor(prefix)
    logits, _ = target.forward(fresh.cache, ids, fresh.prefix_len + torch.arange(len(prefix)),
                               torch.ones(len(prefix), len(prefix), dtype=torch.bool).tril())
    return int(logits[-1].argmax())


def test_autoregressive_matches_slow_reference() -> None:
    target, _ = make_pair(7)
    decoder = build_decoder(target, None, DecoderConfig(mode="autoregressive"))
    for image, text in observations(7, 5):
        result = decoder.decode(image, text)
        assert list(result.token_ids) == reference_greedy(target, image, text)
        assert result.stats.target_forward_passes == 7 and result.stats.mean_acceptance_length == 1.0


def test_r0_speculative_equals_autoregressive_over_200_cases(trained_pair) -> None:
    """Random and trained draft heads, shallow/deep/wide/chain trees: identical tokens every time."""
    cases = accepted = 0
    pairs = [trained_pair] + [make_pair(seed, train_steps=30 if seed % 2 else 0) for seed in range(1, 9)]
    for index, (target, head) in enumerate(pairs):
        autoregressive = build_decoder(target, None, DecoderConfig(mode="autoregressive"))
        for image, text in observations(100 + index, 4):
            expected = autoregressive.decode(image, text).token_ids
            for tree in TREES:
                result = build_decoder(target, head, DecoderConfig(tree=tree, relax_bins=0)).decode(image, text)
                assert result.token_ids == expected, f"pair {index}, tree {tree}"
                assert sum(result.stats.accepted_per_step) + len(result.stats.accepted_per_step) + 1 >= 7
                accepted += sum(result.stats.accepted_per_step)
                cases += 1
    assert cases >= 200
    assert accepted > 0.2 * cases  # the check covers accepted paths, not only rejections


@pytest.mark.parametrize("relax", [1, 3, (2, 2, 2, 1, 1, 1, 0), 254])
def test_relaxed_tokens_stay_within_r_bins_of_target_choice(trained_pair, relax) -> None:
    target, head = trained_pair
    config = DecoderConfig(relax_bins=relax, tree=TreeConfig(top_k=4, depth=6, total_tokens=30))
    decoder = build_decoder(target, head, config)
    tokenizer = target.action_tokenizer
    for image, text in observations(11, 4):
        result = decoder.decode(image, text)
        assert len(result.token_ids) == 7 and result.action.shape == (7,) and np.all(np.isfinite(result.action))
        tokens = list(result.token_ids)
        for position, token in enumerate(tokens):
            choice = target_choice_after(target, image, text, tokens[:position])
            if token != choice:  # only action tokens are relaxed, and r counts bins, not token ids
                assert tokenizer.is_action_token(token) and tokenizer.is_action_token(choice), (position, token, choice)
                assert tokenizer.bin_distance(token, choice) <= config.relax_bins[position], (position, token, choice)


def test_relaxed_rule_accepts_a_superset_of_exact() -> None:
    generator = torch.Generator().manual_seed(0)
    target, _ = make_pair(0)
    tokenizer = target.action_tokenizer
    first = tokenizer.first_action_token
    draft = torch.randint(first - 5, tokenizer.vocab_size, (2000,), generator=generator)
    truth = torch.randint(first - 5, tokenizer.vocab_size, (2000,), generator=generator)
    truth[:500] = draft[:500]
    exact = accept_relaxed(draft, truth, torch.zeros(2000, dtype=torch.long), tokenizer)
    relaxed = accept_relaxed(draft, truth, torch.full((2000,), 20), tokenizer)
    assert torch.equal(exact, draft == truth)
    assert bool((relaxed >= exact).all()) and relaxed.sum() > exact.sum()
    non_action = (draft < first) | (truth < first)
    assert torch.equal(relaxed[non_action], exact[non_action])  # only action tokens are relaxed


def test_relaxed_accepts_more_on_the_first_step(trained_pair) -> None:
    target, head = trained_pair
    first_steps = {}
    for relax in (0, 5):
        decoder = build_decoder(target, head, DecoderConfig(relax_bins=relax))
        first_steps[relax] = [decoder.decode(image, text).stats.accepted_per_step[0]
                              for image, text in observations(21, 12)]
    assert all(r >= e for r, e in zip(first_steps[5], first_steps[0], strict=True))
    assert sum(first_steps[5]) > sum(first_steps[0])


def test_longest_path_prefers_depth_then_confidence() -> None:
    parents, depths = torch.tensor([-1, -1, 0, 1, 3]), torch.tensor([1, 1, 2, 2, 3])

    def path(accepted: list[bool]) -> list[int]:
        chain = deepest_accepted_chain(parents, depths, torch.tensor(accepted), max_depth=3).tolist()
        return [node for node in chain if node >= 0][::-1]

    assert path([True, True, True, True, True]) == [1, 3, 4]
    assert path([True, True, True, True, False]) == [0, 2]
    assert path([False, True, True, False, True]) == [1]
    assert path([False] * 5) == []
    assert path([False, False, True, True, True]) == []  # accepted nodes below a rejected parent do not count


def test_decoding_is_deterministic_and_reports_stats(trained_pair) -> None:
    target, head = trained_pair
    decoder = build_decoder(target, head, DecoderConfig(relax_bins=2))
    image, text = observations(3, 1)[0]
    first, second = decoder.decode(image, text), decoder.decode(image, text)
    assert first.token_ids == second.token_ids
    np.testing.assert_array_equal(first.action, second.action)
    stats = first.stats
    assert stats.mode == "speculative" and stats.relax_bins == (2,) * 7
    assert stats.total_ms >= stats.prefill_ms + stats.draft_ms + stats.verify_ms - 1e-6
    assert stats.target_forward_passes == 1 + len(stats.accepted_per_step)
    assert stats.mean_acceptance_length == pytest.approx(
        (sum(stats.accepted_per_step) + len(stats.accepted_per_step)) / len(stats.accepted_per_step))
    assert first.bins == tuple(int(b) for b in target.action_tokenizer.token_to_bin(np.array(first.token_ids)))


def test_relaxed_rule_uses_bins_and_stays_exact_at_r0() -> None:
    from specvla_ros.core.action_tokenizer import ActionTokenizer

    tokenizer = ActionTokenizer(vocab_size=1000)
    draft, target = torch.tensor([744, 745, 800, 100]), torch.tensor([745, 744, 803, 101])
    # 744 and 745 share the last bin: accepted at r >= 1, never at r = 0 (r = 0 is exact)
    assert accept_relaxed(draft, target, torch.zeros(4, dtype=torch.long), tokenizer).tolist() == [False] * 4
    assert accept_relaxed(draft, target, torch.full((4,), 3), tokenizer).tolist() == [True, True, True, False]


def test_phase_times_add_up_within_the_total(trained_pair) -> None:
    target, head = trained_pair
    for config in (DecoderConfig(mode="autoregressive", relax_bins=3), DecoderConfig(relax_bins=3)):
        stats = build_decoder(target, head, config).decode(*observations(4, 1)[0]).stats
        assert 0 < stats.prefill_ms and 0 <= stats.draft_ms and 0 < stats.verify_ms
        assert stats.prefill_ms + stats.draft_ms + stats.verify_ms <= stats.total_ms + 1e-6
        assert stats.relax_bins == ((0,) * 7 if config.mode == "autoregressive" else (3,) * 7)


def test_nonfinite_logits_are_reported(trained_pair) -> None:
    target, head = make_pair(5)
    image, text = observations(5, 1)[0]
    for config in (DecoderConfig(mode="autoregressive"), DecoderConfig()):
        assert not build_decoder(target, head, config).decode(image, text).stats.nonfinite_logits
    with torch.no_grad():
        target.lm_head.weight[-3:] = float("nan")  # a broken checkpoint: some logits are NaN
    for config in (DecoderConfig(mode="autoregressive"), DecoderConfig()):
        assert build_decoder(target, head, config).decode(image, text).stats.nonfinite_logits
