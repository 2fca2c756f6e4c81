"""Dataclass configs for the draft tree and the decoder, validated on construction (a backbone's own
config lives beside its model: core/tiny/config.py, core/openvla/config.py)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from numbers import Integral
from typing import Literal

from specvla_ros.core.action_tokenizer import N_ACTION_DIMS
from specvla_ros.core.errors import ConfigError
from specvla_ros.core.temporal_draft import TemporalDraftConfig

DecoderMode = Literal["autoregressive", "speculative"]
MAX_RELAX_BINS = 254


PAPER_TREE = {"top_k": 8, "depth": 4, "total_tokens": 50}  # the Spec-VLA authors' runs


def relax_setting(values: Sequence[int]) -> int | tuple[int, ...]:
    """`--relax-bins` / `decoder.relax_bins` (one value for every dimension, or one per dimension) as
    DecoderConfig.relax_bins takes it; DecoderConfig checks the count and the range."""
    values = tuple(int(r) for r in values)
    return values[0] if len(values) == 1 else values


@dataclass(frozen=True)
class TreeConfig:
    """EAGLE-2 dynamic draft tree. chain=True drafts a single path of `depth` tokens.

    auto: choose top_k / depth / total_tokens on this machine at start-up (core/tree_tuning.py);
    with auto, those given as 0 are free and the others fixed.
    """

    top_k: int = 8
    depth: int = 4
    total_tokens: int = 50
    chain: bool = False
    restrict_to_action_tokens: bool = True
    auto: bool = False

    def __post_init__(self) -> None:
        if not (self.auto and self.depth == 0) and not 1 <= self.depth <= N_ACTION_DIMS - 1:
            raise ConfigError(f"tree depth must be 1..{N_ACTION_DIMS - 1} (7 action tokens, the first comes "
                              f"from prefill), got {self.depth}")
        if min(self.top_k, self.total_tokens) < (0 if self.auto else 1):
            raise ConfigError(f"top_k and total_tokens must be >= 1, got {self.top_k} and {self.total_tokens}")

    @property
    def fixed(self) -> dict[str, int]:
        """With auto: the shape values the user set (non-zero), which the choice must keep."""
        return {name: getattr(self, name) for name in PAPER_TREE if getattr(self, name)}


@dataclass(frozen=True)
class DecoderConfig:
    """How to decode: plain greedy, or Spec-VLA with per-dimension relaxation thresholds (bins).

    temporal: extra draft branches from the robot's recent actions (speculative mode only; off by default).
    action_tokens_only: the target's greedy choice is taken among the action tokens only (constrained
    greedy), so a text or padding id can never be emitted; r = 0 then equals constrained AR.
    prefill_drafts: the temporal guesses (known before the frame) are appended to the prompt and
    verified inside the prefill forward: a guess accepted in full costs one target forward.
    """

    mode: DecoderMode = "speculative"
    relax_bins: tuple[int, ...] | int = 0
    tree: TreeConfig = field(default_factory=TreeConfig)
    unnorm_key: str | None = None
    temporal: TemporalDraftConfig = field(default_factory=TemporalDraftConfig)
    action_tokens_only: bool = False
    prefill_drafts: bool = False

    @property
    def uses_draft_head(self) -> bool:
        """Speculative decoding needs a draft head unless it drafts from temporal branches only."""
        return self.mode == "speculative" and (not self.temporal.enabled or self.temporal.draft_head)

    def __post_init__(self) -> None:
        if self.mode not in ("autoregressive", "speculative"):
            raise ConfigError(f"decoder mode must be 'autoregressive' or 'speculative', got '{self.mode}'")
        relax = self.relax_bins
        if isinstance(relax, Integral):
            relax = (relax,) * N_ACTION_DIMS
        if isinstance(relax, (str, bytes)) or not hasattr(relax, "__len__"):
            raise ConfigError(f"relax_bins must be an int or {N_ACTION_DIMS} ints, got {self.relax_bins!r}")
        if any(isinstance(r, bool) or not isinstance(r, Integral) for r in relax):
            raise ConfigError(f"relax_bins must hold whole numbers of bins, got {list(relax)}")
        relax = tuple(int(r) for r in relax)
        if len(relax) != N_ACTION_DIMS:
            raise ConfigError(f"relax_bins needs one value or {N_ACTION_DIMS} (one per action dimension), "
                              f"got {len(relax)}")
        if any(not 0 <= r <= MAX_RELAX_BINS for r in relax):
            raise ConfigError(f"relax_bins values must lie in 0..{MAX_RELAX_BINS}, got {list(relax)}")
        object.__setattr__(self, "relax_bins", relax)
