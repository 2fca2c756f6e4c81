"""OpenVLA's vision side: timm VisionTransformer featurizers (DINOv2, SigLIP) and the projector.

Module and parameter names equal the checkpoint's keys under `vision_backbone.` and `projector.`,
so weights load by name. The forward pass is timm 0.9.x's `get_intermediate_layers(n={depth - 2})`
(what OpenVLA calls): patch embedding, position embedding (added before or after the prefix tokens
depending on `no_embed_class`), the blocks up to the second-to-last, prefix tokens dropped, no final
norm. The last block, the final norm and SigLIP's attention pool are never used, so they are not
built (their checkpoint tensors are skipped). LayerScale's `gamma` is named `scale_factor`, as in
OpenVLA's HF export (it renames it because transformers rewrites parameter names containing 'gamma').
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from specvla_ros.core.openvla.config import OpenVLAConfig, ViTSpec

LAYER_NORM_EPS = 1e-6  # timm VisionTransformer's default norm layer: LayerNorm(eps=1e-6)


class PatchEmbed(nn.Module):
    def __init__(self, spec: ViTSpec) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, spec.embed_dim, kernel_size=spec.patch_size, stride=spec.patch_size)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.proj(pixels).flatten(2).transpose(1, 2)  # (B, patches, dim)


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, dim // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        x = F.scaled_dot_product_attention(q, k, v)  # timm's fused path; scale = head_dim ** -0.5
        return self.proj(x.transpose(1, 2).reshape(batch, tokens, dim))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()  # exact (erf) GELU: timm's default; OpenVLA overrides no activation
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class LayerScale(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.scale_factor = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale_factor


class Block(nn.Module):
    def __init__(self, spec: ViTSpec) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(spec.embed_dim, eps=LAYER_NORM_EPS)
        self.attn = Attention(spec.embed_dim, spec.num_heads)
        self.ls1 = LayerScale(spec.embed_dim) if spec.layer_scale else nn.Identity()
        self.norm2 = nn.LayerNorm(spec.embed_dim, eps=LAYER_NORM_EPS)
        self.mlp = Mlp(spec.embed_dim, spec.mlp_hidden)
        self.ls2 = LayerScale(spec.embed_dim) if spec.layer_scale else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class ViTFeaturizer(nn.Module):
    """Patch features of the second-to-last block, prefix (class / register) tokens removed."""

    def __init__(self, spec: ViTSpec) -> None:
        super().__init__()
        self.spec = spec
        self.patch_embed = PatchEmbed(spec)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, spec.embed_dim)) if spec.class_token else None
        self.reg_token = nn.Parameter(torch.zeros(1, spec.reg_tokens, spec.embed_dim)) if spec.reg_tokens else None
        positions = spec.num_patches + (0 if spec.no_embed_class else spec.num_prefix_tokens)
        self.pos_embed = nn.Parameter(torch.zeros(1, positions, spec.embed_dim))
        self.blocks = nn.ModuleList(Block(spec) for _ in range(spec.depth - 1))  # the last block is never used

    def unused_checkpoint_prefixes(self) -> tuple[str, ...]:
        """Tensors OpenVLA's checkpoint holds for this featurizer that its forward never reads."""
        return (f"blocks.{self.spec.depth - 1}.", "norm.", "attn_pool.")

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(pixels)
        prefix = [t.expand(x.shape[0], -1, -1) for t in (self.cls_token, self.reg_token) if t is not None]
        if self.spec.no_embed_class:
            x = torch.cat([*prefix, x + self.pos_embed], dim=1)
        else:
            x = torch.cat([*prefix, x], dim=1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return x[:, self.spec.num_prefix_tokens:]


class VisionBackbone(nn.Module):
    """`featurizer` (+ `fused_featurizer`): channel-stacked pixels -> concatenated patch features."""

    def __init__(self, config: OpenVLAConfig) -> None:
        super().__init__()
        self.featurizer = ViTFeaturizer(config.vision[0])
        self.fused_featurizer = ViTFeaturizer(config.vision[1]) if config.use_fused_vision_backbone else None

    def featurizers(self) -> dict[str, ViTFeaturizer]:
        named = {"featurizer": self.featurizer}
        if self.fused_featurizer is not None:
            named["fused_featurizer"] = self.fused_featurizer
        return named

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        if self.fused_featurizer is None:
            return self.featurizer(pixels)
        image, image_fused = torch.split(pixels, [3, 3], dim=1)
        return torch.cat([self.featurizer(image), self.fused_featurizer(image_fused)], dim=2)


class Projector(nn.Module):
    """Fused backbones: fc1 (D -> 4D), GELU, fc2 (4D -> H), GELU, fc3 (H -> H); single: fc1, GELU, fc2."""

    def __init__(self, vision_dim: int, llm_dim: int, fused: bool) -> None:
        super().__init__()
        self.fused = fused
        hidden = 4 * vision_dim if fused else llm_dim
        self.fc1 = nn.Linear(vision_dim, hidden)
        self.fc2 = nn.Linear(hidden, llm_dim)
        self.fc3 = nn.Linear(llm_dim, llm_dim) if fused else None
        self.act = nn.GELU()

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        x = self.fc2(self.act(self.fc1(patches)))
        return self.fc3(self.act(x)) if self.fc3 is not None else x
