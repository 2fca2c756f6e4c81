"""Dataclass configs for the tiny VLA, the draft tree and the decoder, validated on construction."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from numbers import Integral
from typing import Literal

from specvla_ros.core.action_tokenizer import N_ACTION_DIMS
from specvla_ros.core.errors import ConfigError
from specvla_ros.core.temporal_draft import TemporalDraftConfig

DecoderMode = Literal["autoregressive", "speculative"]
MAX_RELAX_BINS = 254


FILM_KEYPOINT_TOKENS = 4  # tokens carrying the FiLM stem's spatial-softmax keypoints (core/vision.py)


@dataclass(frozen=True)
class TinyVLAConfig:
    """A small OpenVLA-shaped model: patch encoder -> projector -> Llama with action tokens on top."""

    image_size: int = 64
    patch_size: int = 16
    vision_dim: int = 64
    vision_layers: int = 1
    hidden_size: int = 64
    intermediate_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 4
    vocab_size: int = 640          # byte tokens (0..258) + unused + 256 action tokens at the top
    n_action_bins: int = 256
    max_position_embeddings: int = 512
    init_std: float = 0.1          # weight init scale; large enough that a random model reacts to its inputs
    text_pieces: tuple[str, ...] = ()  # whole-word tokenizer pieces (ids after the bytes); () = bytes only
    vision_stem: str = "patch"     # "patch": one strided conv per patch; "conv": a small CNN (3x3, stride 2);
                                   # "film": an instruction-conditioned CNN with keypoint tokens (core/vision.py)

    def __post_init__(self) -> None:
        if isinstance(self.text_pieces, str) or not all(isinstance(p, str) and p for p in self.text_pieces):
            raise ConfigError(f"TinyVLAConfig.text_pieces must be a list of non-empty strings, "
                              f"got {self.text_pieces!r}")
        object.__setattr__(self, "text_pieces", tuple(self.text_pieces))  # JSON gives a list
        for name in ("image_size", "patch_size", "vision_dim", "vision_layers", "hidden_size", "intermediate_size",
                     "num_layers", "num_heads", "num_kv_heads", "n_action_bins", "max_position_embeddings"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
                raise ConfigError(f"TinyVLAConfig.{name} must be a positive integer, got {value!r}")
        if self.vision_dim % 4:
            raise ConfigError(f"vision_dim {self.vision_dim} must be divisible by 4 (the patch encoder's 4 heads)")
        if self.vision_stem not in ("patch", "conv", "film"):
            raise ConfigError(f"vision_stem must be 'patch', 'conv' or 'film', got {self.vision_stem!r}")
        if self.vision_stem == "conv" and self.patch_size & (self.patch_size - 1):
            raise ConfigError(f"the conv stem halves the image per layer: patch_size must be a power of 2, "
                              f"got {self.patch_size}")
        if self.image_size % self.patch_size:
            raise ConfigError(f"image_size {self.image_size} must be a multiple of patch_size {self.patch_size}")
        if self.hidden_size % self.num_heads or self.num_heads % self.num_kv_heads:
            raise ConfigError("hidden_size must divide into num_heads, and num_heads into num_kv_heads")
        text_ids = 259 + len(self.text_pieces)
        if self.vocab_size < text_ids + self.n_action_bins:
            raise ConfigError(f"vocab_size {self.vocab_size} leaves no room for {text_ids} text tokens (bytes and "
                              f"pieces) and {self.n_action_bins} action tokens")

    @property
    def num_vision_tokens(self) -> int:
        """Image tokens in the prefix: the patch grid, plus the FiLM stem's keypoint tokens."""
        grid = (self.image_size // self.patch_size) ** 2
        return grid + FILM_KEYPOINT_TOKENS if self.vision_stem == "film" else grid

    def to_dict(self) -> dict:
        return asdict(self)


PAPER_TREE = {"top_k": 8, "depth": 4, "total_tokens": 50}  # the Spec-VLA authors' runs


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
