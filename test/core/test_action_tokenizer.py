"""OpenVLA's action-token scheme and dataset un-normalization."""
from __future__ import annotations

import numpy as np
import pytest

from specvla_ros.core.action_tokenizer import ActionTokenizer, NormStats, metric_bin_width
from specvla_ros.core.errors import NormStatsError


def test_openvla_token_ids() -> None:
    tokenizer = ActionTokenizer(vocab_size=32000)
    assert list(tokenizer.action_token_ids)[:1] == [31744] and tokenizer.action_token_ids[-1] == 31999
    # digitize(-1.0) = 1 -> 31999; digitize(1.0) = 256 -> 31744 (decodes into the last bin centre).
    np.testing.assert_array_equal(tokenizer.encode(np.array([-1.0, 1.0])), [31999, 31744])
    np.testing.assert_array_equal(tokenizer.token_to_bin(np.array([31999, 31745, 31744])), [0, 254, 254])


def test_round_trip_lands_on_bin_centres() -> None:
    tokenizer = ActionTokenizer(vocab_size=32000)
    centres = tokenizer.bin_centers
    assert centres.shape == (255,)
    np.testing.assert_allclose(tokenizer.decode(tokenizer.encode(centres)), centres)
    values = np.random.default_rng(0).uniform(-1, 1, size=500)
    decoded = tokenizer.decode(tokenizer.encode(values))
    assert np.max(np.abs(decoded - values)) <= (2.0 / 255) + 1e-9  # within one bin width


def test_out_of_range_actions_are_clipped() -> None:
    tokenizer = ActionTokenizer(vocab_size=32000)
    np.testing.assert_array_equal(tokenizer.encode(np.array([-7.0, 3.0])), tokenizer.encode(np.array([-1.0, 1.0])))


def test_neighbouring_tokens_are_neighbouring_bins() -> None:
    tokenizer = ActionTokenizer(vocab_size=1000)
    tokens = np.arange(745, 999)
    assert np.all(np.diff(tokenizer.token_to_bin(tokens)) == -1)


STATS = {"bridge": {"action": {"q01": [-1.0, 0.0, -0.5, 0, 0, 0, 0], "q99": [1.0, 2.0, 0.5, 1, 1, 1, 1],
                               "mask": [True, True, True, True, True, True, False]}},
         "libero": {"action": {"q01": [0] * 7, "q99": [1] * 7}}}


def test_unnormalize_matches_hand_computation() -> None:
    stats = NormStats.from_checkpoint(STATS, "bridge")
    action = stats.unnormalize(np.array([0.5, -1.0, 1.0, 0.0, 0.0, 0.0, 0.3]))
    # a = 0.5 (x + 1)(q99 - q01) + q01; the gripper (mask false) stays raw
    np.testing.assert_allclose(action, [0.5, 0.0, 0.5, 0.5, 0.5, 0.5, 0.3])


def test_metric_bin_width_is_in_the_actions_units() -> None:
    stats = NormStats(q01=np.array([-0.02, -0.01, 0.0, -0.1, -0.1, -0.1, 0.0]),
                      q99=np.array([0.02, 0.03, 0.0, 0.1, 0.1, 0.1, 1.0]), mask=np.array([True] * 6 + [False]))
    width = metric_bin_width(ActionTokenizer(vocab_size=32000), stats)
    assert width[6] == pytest.approx(2 / 255)  # gripper: not normalized, one bin of [-1, 1]
    np.testing.assert_allclose(width[:6], (stats.q99 - stats.q01)[:6] / 255)
    assert width[2] == 0.0  # q01 = q99: its bins have no width, whatever the tokens do
    step = stats.unnormalize(np.full(7, 2 / 255)) - stats.unnormalize(np.zeros(7))
    np.testing.assert_allclose(width, step)  # = what un-normalizing moves one bin by


def test_unknown_unnorm_key_lists_known_keys() -> None:
    with pytest.raises(NormStatsError, match="bridge, libero"):
        NormStats.from_checkpoint(STATS, "widowx")
    with pytest.raises(NormStatsError, match="set unnorm_key"):
        NormStats.from_checkpoint(STATS, None)


def test_nan_statistics_are_refused() -> None:
    bad = {"d": {"action": {"q01": [0.0] * 6 + [float("nan")], "q99": [1.0] * 7}}}
    with pytest.raises(NormStatsError, match="NaN"):
        NormStats.from_checkpoint(bad, "d")


def test_misshapen_statistics_are_refused() -> None:
    with pytest.raises(NormStatsError, match="shape"):
        NormStats.from_checkpoint({"d": {"action": {"q01": [0.0] * 6, "q99": [1.0] * 6}}}, None)


def test_swapped_quantiles_are_refused() -> None:
    swapped = {"d": {"action": {"q01": [1.0] * 7, "q99": [0.0] * 7}}}
    with pytest.raises(NormStatsError, match="q99 < q01"):
        NormStats.from_checkpoint(swapped, "d")


def test_non_finite_actions_cannot_be_encoded() -> None:
    from specvla_ros.core.errors import InputError

    with pytest.raises(InputError, match="non-finite"):
        ActionTokenizer().encode(np.array([0.0, np.nan]))


def test_bin_distance_is_zero_between_the_two_top_ids() -> None:
    tokenizer = ActionTokenizer(vocab_size=32000)
    np.testing.assert_array_equal(tokenizer.bin_distance(np.array([31744, 31999, 31800]),
                                                         np.array([31745, 31990, 31803])), [0, 9, 3])
