"""Decode statistics go to the episode whose frame they decoded, however late they arrive."""
from __future__ import annotations

from specvla_ros.ros.episode_stats import EpisodeStatsLedger
from specvla_ros.sim.metrics import EpisodeRecord


def _record(seed: int) -> EpisodeRecord:
    return EpisodeRecord(task="pick", seed=seed, instruction="pick", success=False, steps=0)


def test_statistics_after_the_episode_ended_still_count_in_frame_order() -> None:
    ledger = EpisodeStatsLedger(grace_s=10.0)
    ledger.start(_record(0))
    for frame in (1, 2, 3):
        ledger.frame_published(frame)
        ledger.model_answered(frame)
    ledger.add_stats(2, 20.0, 2.0)
    ledger.add_stats(1, 10.0, 1.0)
    ledger.end(now_s=0.0)
    assert ledger.ready(now_s=1.0) == [] and ledger.waiting  # frame 3's statistics are still on the way
    ledger.add_stats(3, 30.0, 3.0)
    [record] = ledger.ready(now_s=1.0)
    assert record.acceptance_length == [1.0, 2.0, 3.0] and record.latency_ms == [10.0, 20.0, 30.0]
    assert not ledger.waiting


def test_missing_statistics_release_the_episode_after_the_grace_period() -> None:
    ledger = EpisodeStatsLedger(grace_s=2.0)
    ledger.start(_record(0))
    ledger.frame_published(1)
    ledger.model_answered(1)
    ledger.end(now_s=0.0)
    assert ledger.ready(now_s=1.9) == []
    [record] = ledger.ready(now_s=2.0)
    assert record.acceptance_length == []


def test_reports_keep_episode_order_and_ignore_foreign_frames() -> None:
    ledger = EpisodeStatsLedger(grace_s=5.0)
    ledger.start(_record(0))
    ledger.frame_published(1)
    ledger.model_answered(1)
    ledger.end(now_s=0.0)
    ledger.start(_record(1))
    ledger.frame_published(2)
    ledger.model_answered(2)
    ledger.add_stats(2, 5.0, 2.0)
    ledger.add_stats(99, 5.0, 9.0)  # a frame no episode here published
    ledger.end(now_s=0.0)
    assert ledger.ready(now_s=1.0) == []  # the second is complete, but the first comes first
    ledger.add_stats(1, 5.0, 1.0)
    assert [r.seed for r in ledger.ready(now_s=1.0)] == [0, 1]
    ledger.model_answered(1)  # a late command for a reported episode changes nothing
    ledger.add_stats(1, 5.0, 1.0)
    assert not ledger.waiting
