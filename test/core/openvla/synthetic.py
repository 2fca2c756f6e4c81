"""Writes a tiny OpenVLA checkpoint in the real Hugging Face layout, for the loader tests.

Same file set and schemas as OpenVLA's export (config.json, preprocessor_config.json,
tokenizer.json + tokenizer_config.json, safetensors shards + model.safetensors.index.json), same
tensor names, including the ones the forward pass never reads (the ViTs' last block and final norm,
SigLIP's attention pool). The names and shapes are spelled out here from timm's VisionTransformer
and OpenVLA's converter, independently of the loader's modules; only the sizes are tiny, declared in
the documented `specvla_vision_overrides` field and an explicit text_config.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, normalizers, processors
from transformers import LlamaConfig, LlamaForCausalLM

DINO_ID = "vit_large_patch14_reg4_dinov2.lvd142m"
SIGLIP_ID = "vit_so400m_patch14_siglip_224"
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
WORDS = ("In", "What", "action", "should", "the", "robot", "take", "to", "Out", "pick", "up", "put", "red", "blue",
         "green", "cube", "plate", "on", "left", "push", "open", "drawer", "bowl", "black")


@dataclass(frozen=True)
class TinySpec:
    image_size: int = 56
    base_vocab: int = 1024          # plays Llama-2's 32000; the top 256 ids are the action tokens
    pad_to_multiple_of: int = 64
    hidden_size: int = 64
    intermediate_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    fused: bool = True
    dino: dict = field(default_factory=lambda: {"embed_dim": 32, "depth": 3, "num_heads": 2})
    siglip: dict = field(default_factory=lambda: {"embed_dim": 48, "depth": 3, "num_heads": 3, "mlp_ratio": 2.0})


NORM_STATS = {"bridge_orig": {"action": {
    "mean": [0.0] * 7, "std": [1.0] * 7, "max": [1.0] * 7, "min": [-1.0] * 7,
    "q01": [-0.03, -0.04, -0.02, -0.1, -0.1, -0.2, 0.0], "q99": [0.03, 0.04, 0.05, 0.1, 0.1, 0.2, 1.0],
    "mask": [True] * 6 + [False]}}}


def vit_tensors(prefix: str, dim: int, depth: int, mlp_hidden: int, patches: int, patch: int, dino: bool,
                generator: torch.Generator) -> dict[str, torch.Tensor]:
    """timm VisionTransformer state dict names (OpenVLA renames LayerScale gamma -> scale_factor)."""
    def randn(*shape: int, std: float = 1.0) -> torch.Tensor:
        return torch.randn(*shape, generator=generator) * std

    out = {f"{prefix}pos_embed": randn(1, patches, dim, std=0.5),
           f"{prefix}patch_embed.proj.weight": randn(dim, 3, patch, patch, std=(3 * patch * patch) ** -0.5),
           f"{prefix}patch_embed.proj.bias": randn(dim, std=0.1)}
    if dino:
        out[f"{prefix}cls_token"] = randn(1, 1, dim)
        out[f"{prefix}reg_token"] = randn(1, 4, dim)
    for i in range(depth):
        b = f"{prefix}blocks.{i}."
        for norm in ("norm1", "norm2"):
            out[f"{b}{norm}.weight"] = 1.0 + randn(dim, std=0.1)
            out[f"{b}{norm}.bias"] = randn(dim, std=0.1)
        out[f"{b}attn.qkv.weight"] = randn(3 * dim, dim, std=dim ** -0.5)
        out[f"{b}attn.qkv.bias"] = randn(3 * dim, std=0.1)
        out[f"{b}attn.proj.weight"] = randn(dim, dim, std=dim ** -0.5)
        out[f"{b}attn.proj.bias"] = randn(dim, std=0.1)
        out[f"{b}mlp.fc1.weight"] = randn(mlp_hidden, dim, std=dim ** -0.5)
        out[f"{b}mlp.fc1.bias"] = randn(mlp_hidden, std=0.1)
        out[f"{b}mlp.fc2.weight"] = randn(dim, mlp_hidden, std=mlp_hidden ** -0.5)
        out[f"{b}mlp.fc2.bias"] = randn(dim, std=0.1)
        if dino:
            out[f"{b}ls1.scale_factor"] = 0.5 + randn(dim, std=0.1)
            out[f"{b}ls2.scale_factor"] = 0.5 + randn(dim, std=0.1)
    out[f"{prefix}norm.weight"] = 1.0 + randn(dim, std=0.1)
    out[f"{prefix}norm.bias"] = randn(dim, std=0.1)
    if not dino:  # SigLIP's MAP head (global_pool='map'): in the checkpoint, unused by OpenVLA
        a = f"{prefix}attn_pool."
        out.update({f"{a}latent": randn(1, 1, dim), f"{a}q.weight": randn(dim, dim), f"{a}q.bias": randn(dim),
                    f"{a}kv.weight": randn(2 * dim, dim), f"{a}kv.bias": randn(2 * dim),
                    f"{a}proj.weight": randn(dim, dim), f"{a}proj.bias": randn(dim),
                    f"{a}norm.weight": randn(dim), f"{a}norm.bias": randn(dim),
                    f"{a}mlp.fc1.weight": randn(mlp_hidden, dim), f"{a}mlp.fc1.bias": randn(mlp_hidden),
                    f"{a}mlp.fc2.weight": randn(dim, mlp_hidden), f"{a}mlp.fc2.bias": randn(dim)})
    return out


def text_config(spec: TinySpec) -> dict:
    return {"model_type": "llama", "pad_token_id": spec.base_vocab, "torch_dtype": "bfloat16",
            "vocab_size": spec.base_vocab + spec.pad_to_multiple_of, "hidden_size": spec.hidden_size,
            "intermediate_size": spec.intermediate_size, "num_hidden_layers": spec.num_layers,
            "num_attention_heads": spec.num_heads}


def model_tensors(spec: TinySpec, seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    patches = (spec.image_size // 14) ** 2
    tensors: dict[str, torch.Tensor] = {}
    backbones = [("vision_backbone.featurizer.", spec.dino, True)]
    if spec.fused:
        backbones.append(("vision_backbone.fused_featurizer.", spec.siglip, False))
    for prefix, sizes, dino in backbones:
        dim = sizes["embed_dim"]
        tensors.update(vit_tensors(prefix, dim, sizes["depth"], int(dim * sizes.get("mlp_ratio", 4.0)), patches, 14,
                                   dino, generator))
    vision_dim = sum(sizes["embed_dim"] for _, sizes, _ in backbones)
    hidden = spec.hidden_size
    widths = [(vision_dim, 4 * vision_dim), (4 * vision_dim, hidden), (hidden, hidden)] if spec.fused else \
        [(vision_dim, hidden), (hidden, hidden)]
    for index, (fan_in, fan_out) in enumerate(widths, start=1):
        tensors[f"projector.fc{index}.weight"] = torch.randn(fan_out, fan_in, generator=generator) * fan_in ** -0.5
        tensors[f"projector.fc{index}.bias"] = torch.randn(fan_out, generator=generator) * 0.1
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        llm = LlamaForCausalLM(LlamaConfig(**{k: v for k, v in text_config(spec).items() if k != "model_type"},
                                           initializer_range=0.1))
    with torch.no_grad():  # like a trained VLA, emit action tokens only: a random action logit beats zero
        llm.lm_head.weight[: spec.base_vocab - 256] = 0.0
        llm.lm_head.weight[spec.base_vocab:] = 0.0
    tensors.update({f"language_model.{k}": v for k, v in llm.state_dict().items()})
    return tensors


def write_tokenizer(folder: Path, spec: TinySpec) -> None:
    """A Llama-2-shaped tokenizer.json: SentencePiece-style BPE, byte fallback, '▁' for spaces, <s> first."""
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    vocab.update({f"<0x{b:02X}>": 3 + b for b in range(256)})
    merges: list[tuple[str, str]] = []
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [chr(c) for c in range(ord("A"), ord("Z") + 1)]
    for piece in ["▁", ":", "?", ".", ","] + letters:
        vocab.setdefault(piece, len(vocab))
    for word in WORDS:
        for text in (f"▁{word}", word):
            for end in range(2, len(text) + 1):
                left, right = text[: end - 1], text[end - 1]
                if text[:end] not in vocab:
                    vocab[text[:end]] = len(vocab)
                    merges.append((left, right))
    while len(vocab) < spec.base_vocab:
        vocab[f"▁unused{len(vocab)}"] = len(vocab)
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tokenizer.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tokenizer.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                           decoders.Strip(" ", 1, 0)])
    tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tokenizer.add_special_tokens(["<unk>", "<s>", "</s>", "<PAD>"])  # <PAD> = base_vocab, as OpenVLA adds it
    tokenizer.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "add_bos_token": True, "add_eos_token": False, "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
        "pad_token": "<PAD>", "legacy": False, "model_max_length": 2048, "padding_side": "right",
        "tokenizer_class": "LlamaTokenizer", "processor_class": "PrismaticProcessor"}, indent=2))


def bf16_rounded(values: tuple[float, ...]) -> list[float]:
    """OpenVLA's export ran with torch's default dtype set to bfloat16, so the saved mean/std are bf16 values."""
    return torch.tensor(values, dtype=torch.bfloat16).float().tolist()


def preprocessor_config(spec: TinySpec) -> dict:
    size = spec.image_size
    means = [list(IMAGENET_MEAN), [0.5] * 3][: 1 + spec.fused]
    stds = [list(IMAGENET_STD), [0.5] * 3][: 1 + spec.fused]
    return {
        "image_processor_type": "PrismaticImageProcessor", "processor_class": "PrismaticProcessor",
        "image_resize_strategy": "resize-naive", "use_fused_vision_backbone": spec.fused,
        "input_sizes": [[3, size, size]] * len(means), "interpolations": ["bicubic"] * len(means),
        "means": means, "stds": stds,
        "tvf_resize_params": [{"antialias": True, "interpolation": 3, "max_size": None, "size": [size, size]}]
        * len(means),
        "tvf_crop_params": [{"output_size": [size, size]}] * len(means),
        "tvf_normalize_params": [{"inplace": False, "mean": bf16_rounded(tuple(m)), "std": bf16_rounded(tuple(s))}
                                 for m, s in zip(means, stds, strict=True)],
        "tvf_do_letterbox": False, "tvf_letterbox_fill": None,
    }


def write_openvla_checkpoint(folder: str | Path, spec: TinySpec | None = None, seed: int = 0) -> Path:
    """Write the checkpoint; weights in bf16 (as released), split over two shards with an index."""
    folder, spec = Path(folder), spec or TinySpec()
    folder.mkdir(parents=True, exist_ok=True)
    ids = [DINO_ID, SIGLIP_ID] if spec.fused else [DINO_ID]
    config = {
        "architectures": ["OpenVLAForActionPrediction"], "model_type": "openvla",
        "auto_map": {"AutoConfig": "configuration_prismatic.OpenVLAConfig",
                     "AutoModelForVision2Seq": "modeling_prismatic.OpenVLAForActionPrediction"},
        "arch_specifier": "no-align+fused-gelu-mlp" if spec.fused else "no-align+gelu-mlp",
        "vision_backbone_id": "dinosiglip-vit-so-224px" if spec.fused else "dinov2-vit-l",
        "llm_backbone_id": "llama2-7b-pure", "hf_llm_id": "meta-llama/Llama-2-7b-hf", "llm_max_length": 2048,
        "use_fused_vision_backbone": spec.fused, "timm_model_ids": ids,
        "timm_override_act_layers": [None] * len(ids), "image_sizes": [spec.image_size] * len(ids),
        "image_resize_strategy": "resize-naive", "n_action_bins": 256, "norm_stats": NORM_STATS,
        "output_projector_states": False, "pad_to_multiple_of": spec.pad_to_multiple_of,
        "pad_token_id": spec.base_vocab, "text_config": text_config(spec), "torch_dtype": "bfloat16",
        "transformers_version": "4.40.1",
        "specvla_vision_overrides": [spec.dino, spec.siglip][: len(ids)],
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    (folder / "preprocessor_config.json").write_text(json.dumps(preprocessor_config(spec), indent=2))
    write_tokenizer(folder, spec)
    tensors = {k: v.to(torch.bfloat16).contiguous() for k, v in model_tensors(spec, seed).items()}
    names = list(tensors)
    split = names.index("language_model.model.layers.1.self_attn.q_proj.weight")
    weight_map, total = {}, 0
    for number, part in enumerate((names[:split], names[split:]), start=1):
        shard = f"model-{number:05d}-of-00002.safetensors"
        save_file({k: tensors[k] for k in part}, folder / shard, metadata={"format": "pt"})
        weight_map.update({k: shard for k in part})
        total += sum(tensors[k].numel() * tensors[k].element_size() for k in part)
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    return folder


def write_eagle_draft(folder: str | Path, head_state: dict[str, torch.Tensor], config: dict) -> Path:
    """A draft head in EAGLE-1/2's layout: fc.*, layers.0.* (no input norm), a copy of embed_tokens."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for name, value in head_state.items():
        if name.startswith("layer.input_layernorm."):
            continue
        tensors[("layers.0." + name[len("layer."):]) if name.startswith("layer.") else name] = value.contiguous()
    save_file(tensors, folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama",
                                                    "num_hidden_layers": 1, **config}, indent=2))
    return folder
