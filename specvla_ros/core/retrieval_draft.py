"""Retrieval drafts: whole-action guesses looked up in demonstrations, keyed on the robot's last actions.

HeiSD retrieves drafts from a datastore of action sequences; here the key is what is known before
the frame arrives (the last one or two decided actions), so the guesses can be verified inside the
prefill (decoder.prefill_drafts). The datastore holds every demonstration action as 7 bins with
the one or two actions before it; `propose` returns the actions that followed the nearest keys
(L1 distance in bins), most often seen first, so a robot repeating a demonstrated motion gets the
demonstration's next step as a guess. Guesses only change the speed: r = 0 stays lossless.

File: safetensors (no pickle) with `actions` (N, 7) uint8 bins and `episodes` (N,) int32.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from specvla_ros.core.action_tokenizer import N_ACTION_DIMS, ActionTokenizer
from specvla_ros.core.errors import CheckpointError

FORMAT = "specvla-action-datastore"
NEIGHBOURS = 16  # keys looked at per query; their continuations are voted on


class ActionDatastore:
    """Demonstration actions as bins, with the keys (previous one / two actions) they followed."""

    def __init__(self, actions: np.ndarray, episodes: np.ndarray) -> None:
        if actions.ndim != 2 or actions.shape[1] != N_ACTION_DIMS or len(actions) != len(episodes):
            raise CheckpointError(f"a datastore holds (N, {N_ACTION_DIMS}) action bins and N episode numbers, "
                                  f"got {actions.shape} and {episodes.shape}")
        self.actions = actions.astype(np.uint8)
        self.episodes = episodes.astype(np.int32)
        # An action can be proposed when its episode has an action before it; its keys are that
        # previous action, and the two before it (the previous one twice when there is only one).
        same_episode_as_previous = np.r_[False, self.episodes[1:] == self.episodes[:-1]]
        follows = np.flatnonzero(same_episode_as_previous)
        has_two_before = same_episode_as_previous[follows - 1]
        before = np.where(has_two_before, follows - 2, follows - 1)
        self._next = follows
        self._key_one = self.actions[follows - 1].astype(np.int16)
        self._key_two = np.concatenate([self.actions[before], self.actions[follows - 1]], axis=1).astype(np.int16)

    def __len__(self) -> int:
        return len(self.actions)

    @classmethod
    def from_episodes(cls, episodes: list[np.ndarray]) -> "ActionDatastore":
        """Episodes of (T, 7) action bins, in time order."""
        kept = [episode for episode in episodes if len(episode)]
        if not kept:
            raise CheckpointError("no actions to build a datastore from")
        numbers = np.concatenate([np.full(len(episode), index) for index, episode in enumerate(kept)])
        return cls(np.concatenate(kept), numbers)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({"actions": self.actions, "episodes": self.episodes}, path, metadata={"format": FORMAT})
        return path

    @classmethod
    def load(cls, path: str | Path) -> "ActionDatastore":
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"datastore {path} not found: build one with `specvla build-datastore`")
        try:
            tensors = load_file(path)
        except (SafetensorError, OSError) as bad:
            raise CheckpointError(f"{path} is not a readable datastore ({bad})") from None
        if set(tensors) != {"actions", "episodes"}:
            raise CheckpointError(f"{path} holds {sorted(tensors)}, not a datastore's actions and episodes")
        return cls(tensors["actions"], tensors["episodes"])

    def propose(self, recent: list[tuple[int, ...]], count: int, tokenizer: ActionTokenizer) -> list[tuple[int, ...]]:
        """Up to `count` distinct next actions (token ids) after the recent actions (oldest first)."""
        if not recent or not len(self._next) or count < 1:
            return []
        bins = [tokenizer.token_to_bin(np.asarray(action)).astype(np.int16) for action in recent[-2:]]
        if len(bins) == 2:
            distance = np.abs(self._key_two - np.concatenate(bins)).sum(axis=1)
        else:
            distance = np.abs(self._key_one - bins[0]).sum(axis=1)
        nearest = np.argsort(distance, kind="stable")[:NEIGHBOURS]
        closest = distance[nearest[0]]
        votes = Counter(self.actions[self._next[index]].tobytes() for index in nearest
                        if distance[index] <= closest + N_ACTION_DIMS)  # about as near as the best
        top_bin = tokenizer.n_bins - 2
        guesses = []
        for key, _ in votes.most_common(count):
            action = np.minimum(np.frombuffer(key, dtype=np.uint8).astype(int), top_bin)
            guesses.append(tuple(int(token) for token in tokenizer.vocab_size - 1 - action))
        return guesses
