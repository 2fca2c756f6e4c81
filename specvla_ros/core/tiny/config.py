"""The tiny VLA's config: sizes of its image encoder, projector and Llama, validated on construction."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from numbers import Integral

from specvla_ros.core.errors import ConfigError

FILM_KEYPOINT_TOKENS = 4  # tokens carrying the FiLM stem's spatial-softmax keypoints (core/tiny/vision.py)


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
    vision_stem: str = "patch"     # "patch": one strided conv per patch; "film": an instruction-conditioned
                                   # CNN with keypoint tokens (core/tiny/vision.py)

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
        if self.vision_stem not in ("patch", "film"):
            raise ConfigError(f"vision_stem must be 'patch' or 'film', got {self.vision_stem!r}")
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
