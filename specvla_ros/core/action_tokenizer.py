"""OpenVLA's action tokens: 7 dimensions, each one of 256 uniform bins on [-1, 1].

Token ids sit at the top of the vocabulary: token = vocab_size - digitize(a). Neighbouring ids
are neighbouring bins, which is what makes relaxed acceptance meaningful.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from specvla_ros.core.errors import InputError, NormStatsError

N_ACTION_DIMS = 7


class ActionTokenizer:
    """Normalized actions <-> action token ids, exactly as OpenVLA's ActionTokenizer."""

    def __init__(self, vocab_size: int = 32000, n_bins: int = 256) -> None:
        self.vocab_size = vocab_size
        self.n_bins = n_bins
        self.bin_edges = np.linspace(-1.0, 1.0, n_bins)
        self.bin_centers = (self.bin_edges[:-1] + self.bin_edges[1:]) / 2.0  # n_bins - 1 centres
        self.first_action_token = vocab_size - n_bins

    @property
    def action_token_ids(self) -> range:
        """The n_bins token ids the model emits for actions (the top of the vocabulary)."""
        return range(self.first_action_token, self.vocab_size)

    def is_action_token(self, token_id: int) -> bool:
        return self.first_action_token <= token_id < self.vocab_size

    def encode(self, normalized: np.ndarray) -> np.ndarray:
        """Normalized actions in [-1, 1] (clipped) -> token ids."""
        values = np.asarray(normalized, dtype=np.float64)
        if not np.all(np.isfinite(values)):
            raise InputError(f"cannot encode non-finite actions {values}: normalize real numbers")
        return self.vocab_size - np.digitize(np.clip(values, -1.0, 1.0), self.bin_edges)

    def token_to_bin(self, token_ids: np.ndarray) -> np.ndarray:
        """Token ids -> bin indices 0..n_bins-2 (OpenVLA clips the top edge into the last centre)."""
        return np.clip(self.vocab_size - np.asarray(token_ids) - 1, 0, self.n_bins - 2)

    def token_to_bin_tensor(self, token_ids: torch.Tensor) -> torch.Tensor:
        """token_to_bin on a torch tensor, on its device."""
        return (self.vocab_size - token_ids - 1).clamp(0, self.n_bins - 2)

    def bin_distance(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """|bin(a) - bin(b)|: how many bins apart two action tokens decode (elementwise)."""
        return np.abs(self.token_to_bin(a) - self.token_to_bin(b))

    def decode(self, token_ids: np.ndarray) -> np.ndarray:
        """Token ids -> normalized actions (bin centres)."""
        return self.bin_centers[self.token_to_bin(token_ids)]


@dataclass(frozen=True)
class NormStats:
    """Per-dimension action statistics; `mask` false leaves a dimension as is (the gripper)."""

    q01: np.ndarray
    q99: np.ndarray
    mask: np.ndarray

    @classmethod
    def from_checkpoint(cls, norm_stats: dict, unnorm_key: str | None) -> "NormStats":
        """Pick `norm_stats[unnorm_key]["action"]`; with no key, the checkpoint must hold exactly one."""
        known = sorted(norm_stats)
        if unnorm_key is None:
            if len(known) != 1:
                raise NormStatsError(f"this checkpoint has action statistics for {len(known)} datasets "
                                     f"({', '.join(known) or 'none'}); set unnorm_key to one of them")
            unnorm_key = known[0]
        if unnorm_key not in norm_stats:
            raise NormStatsError(f"unknown unnorm_key '{unnorm_key}'; this checkpoint knows: {', '.join(known)}")
        action = norm_stats[unnorm_key].get("action", {})
        try:
            q01 = np.asarray(action["q01"], dtype=np.float64)
            q99 = np.asarray(action["q99"], dtype=np.float64)
        except KeyError as missing:
            raise NormStatsError(f"norm_stats['{unnorm_key}']['action'] lacks {missing}") from None
        mask = np.asarray(action.get("mask", np.ones_like(q01, dtype=bool)), dtype=bool)
        for name, values in (("q01", q01), ("q99", q99), ("mask", mask)):
            if values.shape != (N_ACTION_DIMS,):
                raise NormStatsError(f"norm_stats['{unnorm_key}']['action']['{name}'] has shape {values.shape}, "
                                     f"expected ({N_ACTION_DIMS},)")
        if not (np.all(np.isfinite(q01)) and np.all(np.isfinite(q99))):
            raise NormStatsError(f"norm_stats['{unnorm_key}'] holds NaN or inf action statistics: "
                                 "recompute them from the training data")
        if np.any(q99 < q01):
            raise NormStatsError(f"norm_stats['{unnorm_key}'] has q99 < q01 in dimensions "
                                 f"{np.flatnonzero(q99 < q01).tolist()}: the quantiles are swapped or corrupt")
        return cls(q01=q01, q99=q99, mask=mask)

    def unnormalize(self, normalized: np.ndarray) -> np.ndarray:
        """a = 0.5 (x + 1)(q99 - q01) + q01 where mask, else x."""
        x = np.asarray(normalized, dtype=np.float64)
        return np.where(self.mask, 0.5 * (x + 1.0) * (self.q99 - self.q01) + self.q01, x)


def metric_bin_width(tokenizer: ActionTokenizer, stats: NormStats) -> np.ndarray:
    """One bin in the action's own units, per dimension: how far one bin of relaxation can move an action.

    Bin centres lie 2 / (n_bins - 1) apart on [-1, 1]; un-normalizing scales that by (q99 - q01) / 2
    where `mask` is set and leaves it as is where not (the gripper).
    """
    normalized = float(tokenizer.bin_centers[1] - tokenizer.bin_centers[0])
    return np.where(stats.mask, 0.5 * normalized * (stats.q99 - stats.q01), normalized)
