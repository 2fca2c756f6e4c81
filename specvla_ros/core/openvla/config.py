"""OpenVLA's config.json (Prismatic / OpenVLA schema) as validated dataclasses.

Field names and meanings follow openvla/openvla `prismatic/extern/hf/configuration_prismatic.py`
and `vla-scripts/extern/convert_openvla_weights_to_hf.py` (see docs/openvla.md for what was checked).
The ViT architectures are the timm model definitions OpenVLA names by id (timm 0.9.x
`vision_transformer.py`), written out here because timm needs torchvision, which cannot be
installed next to the CPU build of torch this project pins.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from transformers import LlamaConfig

from specvla_ros.core.checkpoint import CONFIG_FILE, read_json
from specvla_ros.core.errors import CheckpointError, ConfigError

PREPROCESSOR_FILE = "preprocessor_config.json"
MODEL_TYPE = "openvla"
# Our own optional config.json fields (never in a released OpenVLA checkpoint):
OVERRIDES_FIELD = "specvla_vision_overrides"   # per-backbone timm.create_model size kwargs (tests)
CENTER_CROP_FIELD = "specvla_center_crop"      # bool: LIBERO-style 0.9-area centre crop before the processor
QUANTIZATION_FIELD = "specvla_quantization"    # "none" | "8bit" | "4bit"
OVERRIDABLE = ("embed_dim", "depth", "num_heads", "mlp_ratio", "patch_size")

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
INCEPTION_MEAN, INCEPTION_STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class ViTSpec:
    """One timm VisionTransformer as OpenVLA builds it (num_classes=0, img_size from the config)."""

    timm_id: str
    patch_size: int
    embed_dim: int
    depth: int
    num_heads: int
    mlp_ratio: float
    class_token: bool
    reg_tokens: int
    no_embed_class: bool
    layer_scale: bool
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bicubic"
    image_size: int = 224

    @property
    def num_prefix_tokens(self) -> int:
        return int(self.class_token) + self.reg_tokens

    @property
    def mlp_hidden(self) -> int:
        return int(self.embed_dim * self.mlp_ratio)  # timm's Block: int(dim * mlp_ratio)

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2


_DINOV2_L = ViTSpec("vit_large_patch14_reg4_dinov2.lvd142m", patch_size=14, embed_dim=1024, depth=24, num_heads=16,
                    mlp_ratio=4.0, class_token=True, reg_tokens=4, no_embed_class=True, layer_scale=True,
                    mean=IMAGENET_MEAN, std=IMAGENET_STD)
_SIGLIP_SO400M = ViTSpec("vit_so400m_patch14_siglip_224", patch_size=14, embed_dim=1152, depth=27, num_heads=16,
                         mlp_ratio=3.7362, class_token=False, reg_tokens=0, no_embed_class=False, layer_scale=False,
                         mean=INCEPTION_MEAN, std=INCEPTION_STD)
# timm ids OpenVLA's released checkpoints use (dinosiglip-vit-so-224px), plus SigLIP at 384 px.
KNOWN_VITS: dict[str, ViTSpec] = {
    _DINOV2_L.timm_id: _DINOV2_L,
    "vit_large_patch14_reg4_dinov2": replace(_DINOV2_L, timm_id="vit_large_patch14_reg4_dinov2"),
    _SIGLIP_SO400M.timm_id: _SIGLIP_SO400M,
    "vit_so400m_patch14_siglip_224.webli": replace(_SIGLIP_SO400M, timm_id="vit_so400m_patch14_siglip_224.webli"),
    "vit_so400m_patch14_siglip_384": replace(_SIGLIP_SO400M, timm_id="vit_so400m_patch14_siglip_384", image_size=384),
}

# transformers 4.40.1's LlamaConfig() defaults (= Llama-2-7B). OpenVLA's converter builds text_config from
# LlamaConfig() and saves only the fields that differ, so these fill in whatever config.json leaves out.
# Spelled out so that a future transformers release changing its defaults cannot change the model.
LLAMA_DEFAULTS: dict[str, Any] = {
    "vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
    "num_attention_heads": 32, "num_key_value_heads": None, "hidden_act": "silu", "max_position_embeddings": 2048,
    "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "rope_scaling": None, "attention_bias": False,
    "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": None,
}
LLAMA_BACKBONES = ("llama2-7b-pure", "llama2-13b-pure", "llama2-7b-chat", "llama2-13b-chat", "vicuna-v15-7b",
                   "vicuna-v15-13b")


@dataclass(frozen=True)
class OpenVLAConfig:
    """What the loader needs from config.json; validated on construction."""

    timm_model_ids: tuple[str, ...]
    image_sizes: tuple[int, ...]
    use_fused_vision_backbone: bool
    text_config: dict[str, Any]
    norm_stats: dict
    n_action_bins: int = 256
    pad_to_multiple_of: int = 64
    image_resize_strategy: str = "resize-naive"
    timm_override_act_layers: tuple[str | None, ...] = (None, None)
    llm_backbone_id: str = "llama2-7b-pure"
    vision_overrides: tuple[dict[str, Any], ...] = ()
    center_crop: bool | None = None
    quantization: str = "none"
    vision: tuple[ViTSpec, ...] = field(default=(), init=False)

    def __post_init__(self) -> None:
        expected = 2 if self.use_fused_vision_backbone else 1
        for name in ("timm_model_ids", "image_sizes", "timm_override_act_layers"):
            if len(getattr(self, name)) != expected:
                raise ConfigError(f"config.json: {name} needs {expected} entries (use_fused_vision_backbone is "
                                  f"{self.use_fused_vision_backbone}), got {list(getattr(self, name))}")
        if self.vision_overrides and len(self.vision_overrides) != expected:
            raise ConfigError(f"config.json: {OVERRIDES_FIELD} needs {expected} entries, one per vision backbone")
        if self.image_resize_strategy != "resize-naive":
            raise ConfigError(f"config.json: image_resize_strategy '{self.image_resize_strategy}' is not "
                              "supported; OpenVLA checkpoints use 'resize-naive' (letterbox / resize-crop are "
                              "Prismatic VLM options)")
        if self.llm_backbone_id not in LLAMA_BACKBONES or self.text_config.get("model_type", "llama") != "llama":
            raise ConfigError(f"config.json: LLM backbone '{self.llm_backbone_id}' is not supported; this loader "
                              f"builds Llama backbones ({', '.join(LLAMA_BACKBONES)})")
        if self.text_config.get("rope_scaling"):
            raise ConfigError("config.json: text_config.rope_scaling is set; Llama-2 OpenVLA checkpoints use none, "
                              "and this loader supports none")
        if self.n_action_bins < 2 or self.pad_to_multiple_of < 0:
            raise ConfigError(f"config.json: n_action_bins {self.n_action_bins} / pad_to_multiple_of "
                              f"{self.pad_to_multiple_of} are out of range")
        if self.action_vocab_size < self.n_action_bins:
            raise ConfigError(f"config.json: text_config.vocab_size {self.text_config['vocab_size']} minus "
                              f"pad_to_multiple_of {self.pad_to_multiple_of} leaves no room for {self.n_action_bins} "
                              "action tokens")
        if self.quantization not in ("none", "8bit", "4bit"):
            raise ConfigError(f"quantization must be 'none', '8bit' or '4bit', got '{self.quantization}'")
        specs = tuple(self._vit_spec(i) for i in range(expected))
        if len({s.num_patches for s in specs}) != 1:
            raise ConfigError(f"config.json: the vision backbones give different patch counts "
                              f"{[s.num_patches for s in specs]}; fused backbones must agree")
        object.__setattr__(self, "vision", specs)

    def _vit_spec(self, index: int) -> ViTSpec:
        timm_id = self.timm_model_ids[index]
        if timm_id not in KNOWN_VITS:
            raise ConfigError(f"config.json: vision backbone '{timm_id}' is not supported; supported timm ids: "
                              f"{', '.join(sorted(KNOWN_VITS))}")
        if self.timm_override_act_layers[index] is not None:
            raise ConfigError(f"config.json: timm_override_act_layers[{index}] = "
                              f"'{self.timm_override_act_layers[index]}' is not supported (OpenVLA uses null)")
        spec = replace(KNOWN_VITS[timm_id], image_size=int(self.image_sizes[index]))
        overrides = self.vision_overrides[index] if self.vision_overrides else {}
        unknown = sorted(set(overrides) - set(OVERRIDABLE))
        if unknown:
            raise ConfigError(f"config.json: {OVERRIDES_FIELD} may set {', '.join(OVERRIDABLE)}; got {unknown}")
        spec = replace(spec, **overrides)
        if spec.image_size % spec.patch_size or spec.embed_dim % spec.num_heads or spec.depth < 2:
            raise ConfigError(f"config.json: backbone {index} ({timm_id}): image size {spec.image_size} must be a "
                              f"multiple of patch size {spec.patch_size}, embed_dim {spec.embed_dim} of num_heads "
                              f"{spec.num_heads}, and depth {spec.depth} >= 2 (features come from the second-to-last "
                              "block)")
        return spec

    # ----- derived -----------------------------------------------------------------------
    @property
    def vision_dim(self) -> int:
        return sum(spec.embed_dim for spec in self.vision)

    @property
    def num_patches(self) -> int:
        return self.vision[0].num_patches

    @property
    def action_vocab_size(self) -> int:
        """The tokenizer's base vocabulary (32000): OpenVLA's predict_action undoes the padding this way."""
        return int(self.text_config["vocab_size"]) - self.pad_to_multiple_of

    def llama_config(self, attn_implementation: str = "sdpa") -> LlamaConfig:
        keys = [k for k in LLAMA_DEFAULTS if k != "rope_scaling"]
        values = {k: self.text_config[k] for k in keys if self.text_config.get(k) is not None}
        return LlamaConfig(**values, attn_implementation=attn_implementation)

    # ----- reading ------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, meta: dict, center_crop: bool | None = None, quantization: str | None = None
                  ) -> "OpenVLAConfig":
        required = ("timm_model_ids", "image_sizes", "n_action_bins")
        missing = [key for key in required if key not in meta]
        if missing:
            raise CheckpointError(f"config.json lacks {missing}: not an OpenVLA checkpoint config (expected the "
                                  "fields written by OpenVLA's HF export: timm_model_ids, image_sizes, text_config, "
                                  "norm_stats, n_action_bins, ...)")
        text = {**LLAMA_DEFAULTS, **(meta.get("text_config") or {})}
        if text.get("num_key_value_heads") is None:
            text["num_key_value_heads"] = text["num_attention_heads"]
        fused = meta.get("use_fused_vision_backbone")
        if fused is None:  # PrismaticConfig's rule when the field is absent
            fused = str(meta.get("vision_backbone_id", "")).startswith(("dinoclip", "dinosiglip"))
        crop = center_crop if center_crop is not None else meta.get(CENTER_CROP_FIELD)
        try:
            return cls(
                timm_model_ids=tuple(meta["timm_model_ids"]), image_sizes=tuple(int(s) for s in meta["image_sizes"]),
                use_fused_vision_backbone=bool(fused), text_config=text, norm_stats=meta.get("norm_stats") or {},
                n_action_bins=int(meta["n_action_bins"]), pad_to_multiple_of=int(meta.get("pad_to_multiple_of", 64)),
                image_resize_strategy=meta.get("image_resize_strategy", "resize-naive"),
                timm_override_act_layers=tuple(meta.get("timm_override_act_layers")
                                               or [None] * len(meta["timm_model_ids"])),
                llm_backbone_id=meta.get("llm_backbone_id", "llama2-7b-pure"),
                vision_overrides=tuple(meta.get(OVERRIDES_FIELD) or ()),
                center_crop=None if crop is None else bool(crop),
                quantization=quantization or meta.get(QUANTIZATION_FIELD) or "none",
            )
        except (TypeError, ValueError) as bad:
            if isinstance(bad, ConfigError):
                raise
            raise CheckpointError(f"config.json holds a malformed OpenVLA field ({bad})") from None


def is_openvla_config(meta: dict) -> bool:
    """True for OpenVLA's HF export (model_type 'openvla', or its fields without a model_type)."""
    if meta.get("model_type") == MODEL_TYPE:
        return True
    return "timm_model_ids" in meta and "n_action_bins" in meta


def load_config(folder: str | Path, center_crop: bool | None = None, quantization: str | None = None
                ) -> tuple[OpenVLAConfig, dict]:
    """(config, preprocessor_config.json contents or {}) of an OpenVLA checkpoint folder.

    Like OpenVLA's evaluation code, a dataset_statistics.json beside the weights replaces the
    config's norm_stats (fine-tunes ship their statistics there).
    """
    folder = Path(folder)
    meta = read_json(folder / CONFIG_FILE, "model config")
    stats_file = folder / "dataset_statistics.json"
    if stats_file.is_file():
        meta = {**meta, "norm_stats": read_json(stats_file, "dataset statistics")}
    config = OpenVLAConfig.from_dict(meta, center_crop=center_crop, quantization=quantization)
    preprocessor = folder / PREPROCESSOR_FILE
    return config, (read_json(preprocessor, "image processor config") if preprocessor.is_file() else {})
