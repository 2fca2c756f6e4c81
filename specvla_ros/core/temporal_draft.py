"""Temporal drafting: guess the current action from the robot's own recent actions.

Robot actions change smoothly from one control step to the next, so the action decoded at the
previous step (or a straight-line extrapolation of the last two) is often close to the one the
target is about to produce, and it costs no draft forward at all. Each guess is a complete
7-token candidate; the decoder grafts the part of it still missing onto the draft tree as one
chain from the root, beside the draft head's branches, and verifies everything in the same target
forward with the same acceptance rule (so r = 0 stays lossless: a guess only changes the speed).

The history belongs to one episode of one task: it resets when the instruction changes, when a
frame is older than a bound when decoding starts, when consecutive frames lie too far apart (or
go back in time), and on `reset()` (the simulation harness calls it at every episode start).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal

from specvla_ros.core.action_tokenizer import N_ACTION_DIMS, ActionTokenizer
from specvla_ros.core.errors import ConfigError
from specvla_ros.core.retrieval_draft import ActionDatastore

Proposal = Literal["previous", "linear", "before"]
PROPOSALS: tuple[str, ...] = ("previous", "linear", "before")
# Measured on whole tabletop episodes (docs/benchmarks.md): "before" is accepted in full more often
# than "linear", and each more guess costs prefill and verify rows.
DEFAULT_PROPOSALS: tuple[str, ...] = ("previous", "before")
MAX_HISTORY = 64


@dataclass(frozen=True)
class TemporalDraftConfig:
    """Temporal draft branches (off by default).

    proposals: "previous" = the last decoded action; "linear" = extrapolate the last two (scaled
    by their time stamps when known); "before" = the action before the last (motions that alternate). draft_head False = temporal branches only: no draft-head
    forwards, and no draft head is needed. Time bounds in seconds; 0 disables a bound.
    datastore: a retrieval datastore (core/retrieval_draft.py) whose demonstrations add up to
    `retrieved` more guesses, keyed on the same history; "" = none.
    """

    enabled: bool = False
    history: int = 4
    proposals: tuple[str, ...] = DEFAULT_PROPOSALS
    draft_head: bool = True
    max_frame_age_s: float = 1.0
    max_gap_s: float = 1.0
    datastore: str = ""
    retrieved: int = 2

    def __post_init__(self) -> None:
        if isinstance(self.proposals, str):
            object.__setattr__(self, "proposals", (self.proposals,))
        object.__setattr__(self, "proposals", tuple(self.proposals))  # YAML / JSON give lists
        unknown = [p for p in self.proposals if p not in PROPOSALS]
        if unknown or (self.enabled and not self.proposals and not self.datastore):
            raise ConfigError(f"temporal_draft.proposals must be a subset of {list(PROPOSALS)}, non-empty "
                              f"without a datastore, got {list(self.proposals)}")
        if isinstance(self.retrieved, bool) or not isinstance(self.retrieved, int) or not 1 <= self.retrieved <= 8:
            raise ConfigError(f"temporal_draft.retrieved must be 1..8 guesses, got {self.retrieved!r}")
        if isinstance(self.history, bool) or not isinstance(self.history, int) or not 1 <= self.history <= MAX_HISTORY:
            raise ConfigError(f"temporal_draft.history must be 1..{MAX_HISTORY} past actions, got {self.history!r}")
        needs_two = [p for p in self.proposals if p in ("linear", "before")]
        if needs_two and self.history < 2:
            raise ConfigError(f"temporal_draft proposals {needs_two} need history >= 2 (two past actions)")
        if self.max_frame_age_s < 0 or self.max_gap_s < 0:
            raise ConfigError(f"temporal_draft.max_frame_age_s and max_gap_s must be >= 0 (0 = no bound), got "
                              f"{self.max_frame_age_s} and {self.max_gap_s}")


@dataclass(frozen=True)
class PastAction:
    token_ids: tuple[int, ...]  # the 7 decoded tokens
    time_s: float | None        # the camera frame's stamp, when known


class TemporalHistory:
    """The last K decoded actions of the current episode and task, and the candidates they imply.

    Call `begin(instruction, time_s, frame_age_s)` before a decode (it applies the reset rules),
    `candidates()` for the guesses, and `record(token_ids)` with the decoded action.
    """

    def __init__(self, config: TemporalDraftConfig, tokenizer: ActionTokenizer) -> None:
        self.config = config
        self.tokenizer = tokenizer
        self.datastore = ActionDatastore.load(config.datastore) if config.datastore else None
        self._past: deque[PastAction] = deque(maxlen=config.history)
        self._instruction: str | None = None
        self._time_s: float | None = None
        self.last_reset_reason: str | None = None

    def __len__(self) -> int:
        return len(self._past)

    def reset(self, reason: str = "reset") -> None:
        """Forget every past action (new episode, new task, stale frame, or a gap)."""
        if self._past:
            self.last_reset_reason = reason
        self._past.clear()

    def begin(self, instruction: str, time_s: float | None = None, frame_age_s: float | None = None) -> None:
        """Apply the reset rules for the frame about to be decoded."""
        config = self.config
        last = self._past[-1].time_s if self._past else None
        if instruction != self._instruction:
            self.reset("task changed")
        elif config.max_frame_age_s and frame_age_s is not None and frame_age_s > config.max_frame_age_s:
            self.reset(f"frame {frame_age_s:.2f} s old")
        elif time_s is not None and last is not None and (
                time_s < last or (config.max_gap_s and time_s - last > config.max_gap_s)):
            self.reset(f"gap of {time_s - last:.2f} s between frames")
        self._instruction = instruction
        self._time_s = time_s

    def record(self, token_ids: tuple[int, ...] | list[int]) -> None:
        """Remember the action just decoded for the frame given to `begin`."""
        self._past.append(PastAction(tuple(int(t) for t in token_ids), self._time_s))

    @property
    def slots(self) -> int:
        """The most guesses one frame can get (the decoder sizes its trees for them)."""
        return len(self.config.proposals) + (self.config.retrieved if self.datastore is not None else 0)

    def candidates(self) -> list[tuple[int, ...]]:
        """Distinct complete 7-token guesses for the current frame: `config.proposals` in order,
        then the datastore's."""
        found: list[tuple[int, ...]] = []
        guesses = [self._guess(proposal) for proposal in self.config.proposals]
        if self.datastore is not None:
            recent = [past.token_ids for past in self._past]
            guesses += self.datastore.propose(recent, self.config.retrieved, self.tokenizer)
        for guess in guesses:
            if guess is not None and guess not in found:
                found.append(guess)
        return found

    def _guess(self, proposal: str) -> tuple[int, ...] | None:
        if proposal == "previous":
            return self._past[-1].token_ids if self._past else None
        if proposal == "before":
            return self._past[-2].token_ids if len(self._past) >= 2 else None
        return self._linear()

    def _linear(self) -> tuple[int, ...] | None:
        """last + (last - before) * dt_now / dt_past, per dimension, in bins (clipped to the bin range)."""
        if len(self._past) < 2:
            return None
        before, last = self._past[-2], self._past[-1]
        scale = 1.0  # unknown stamps: assume a steady control rate
        if None not in (before.time_s, last.time_s, self._time_s) and last.time_s > before.time_s:
            scale = min(3.0, max(0.0, (self._time_s - last.time_s) / (last.time_s - before.time_s)))
        tokenizer = self.tokenizer
        top_bin = tokenizer.n_bins - 2  # 255 bin centres: bins 0..254
        guess = []
        for old, new in zip(before.token_ids, last.token_ids, strict=True):
            if not (tokenizer.is_action_token(old) and tokenizer.is_action_token(new)):
                guess.append(new)  # not a bin: nothing to extrapolate
                continue
            old_bin, new_bin = (min(top_bin, tokenizer.vocab_size - 1 - t) for t in (old, new))
            predicted = min(top_bin, max(0, round(new_bin + scale * (new_bin - old_bin))))
            guess.append(tokenizer.vocab_size - 1 - predicted)
        return tuple(guess[:N_ACTION_DIMS])
