"""Files each DecodeStats message under the episode whose frame it decoded.

A bridge steps its simulator on the node's command and, when the episode ends, reports it. The
decode statistics of the same frame travel on another topic, and DDS orders nothing across topics:
the last frame's statistics can arrive after the command that ended the episode (seen in CI, an
episode reported with 3 of its 4 acceptance lengths). So statistics are matched to episodes by
their `image_stamp`, and an ended episode is reported once the statistics of every frame the model
answered are in, or after a grace period (a node whose statistics never come must not stall a run).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from specvla_ros.sim.metrics import EpisodeRecord

STATS_GRACE_S = 2.0  # how long an ended episode waits for its last frames' statistics


@dataclass
class _Episode:
    record: EpisodeRecord
    frames: list[int] = field(default_factory=list)    # stamps of the frames published, in order
    answered: set[int] = field(default_factory=set)    # frames a model command was decoded from
    stats: dict[int, list[tuple[float, float]]] = field(default_factory=dict)  # frame -> (total_ms, acceptance)
    ended_at_s: float | None = None

    def complete(self) -> bool:
        return self.answered <= self.stats.keys()

    def filled_record(self) -> EpisodeRecord:
        """The record with latency and acceptance in the order the frames were published."""
        for frame in self.frames:
            for total_ms, acceptance in self.stats.get(frame, []):
                self.record.latency_ms.append(total_ms)
                self.record.acceptance_length.append(acceptance)
        return self.record


class EpisodeStatsLedger:
    """Open and ended episodes, in order; `ready` hands out the ended ones whose statistics are in."""

    def __init__(self, grace_s: float = STATS_GRACE_S) -> None:
        self._grace_s = grace_s
        self._episodes: list[_Episode] = []
        self._owner: dict[int, _Episode] = {}  # frame stamp -> its episode

    def start(self, record: EpisodeRecord) -> None:
        self._episodes.append(_Episode(record))

    def frame_published(self, frame_ns: int) -> None:
        episode = self._episodes[-1]
        episode.frames.append(frame_ns)
        self._owner[frame_ns] = episode

    def model_answered(self, frame_ns: int) -> None:
        """A model command decoded from this frame arrived: its statistics are to be waited for."""
        episode = self._owner.get(frame_ns)
        if episode is not None:
            episode.answered.add(frame_ns)

    def add_stats(self, frame_ns: int, total_ms: float, acceptance_length: float) -> None:
        episode = self._owner.get(frame_ns)
        if episode is not None:  # a frame of no episode here (another publisher, or one already reported)
            episode.stats.setdefault(frame_ns, []).append((total_ms, acceptance_length))

    def end(self, now_s: float) -> None:
        """The newest episode is over: no more frames; its statistics may still come."""
        self._episodes[-1].ended_at_s = now_s

    def ready(self, now_s: float) -> list[EpisodeRecord]:
        """Ended episodes, oldest first, whose statistics are all in or whose grace has run out."""
        done: list[EpisodeRecord] = []
        while self._episodes and self._episodes[0].ended_at_s is not None:
            episode = self._episodes[0]
            if not episode.complete() and now_s - episode.ended_at_s < self._grace_s:
                break  # later episodes wait too: reports stay in order
            self._episodes.pop(0)
            for frame in episode.frames:
                del self._owner[frame]
            done.append(episode.filled_record())
        return done

    @property
    def waiting(self) -> bool:
        """An ended episode is still waiting for statistics."""
        return any(episode.ended_at_s is not None for episode in self._episodes)
