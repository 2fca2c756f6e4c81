"""The tiny VLA's image encoders: (B, 3, S, S) pixels in [-1, 1] + prompt ids -> (B, P, vision_dim) tokens.

* "patch": one linear map per patch (ViT-style), then a transformer block;
* "film": a language-conditioned CNN (RT-1's FiLM idea) with spatial-softmax keypoint tokens.

Why "film" exists: a tiny VLA trained from scratch on a CPU has to learn to find *the named* cube and
the gripper in a 64 px image before any action can be right. The patch encoder leaves that binding
(colour word -> pixels) to the language model, which took tens of thousands of steps to learn it only
partly. With FiLM the instruction modulates every convolution (feature-wise affine), so filters can
light up the named object directly; coordinate channels let a filter know where it is; and a spatial
softmax turns each feature map into an expected (x, y), the precise sub-pixel quantity a
delta-position policy needs. Its tokens: the feature map average-pooled to the usual patch grid
(with a position code), then `keypoint_tokens` tokens carrying the keypoint coordinates.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from specvla_ros.core.tiny.config import FILM_KEYPOINT_TOKENS, TinyVLAConfig


def grid_position_code(side: int, dim: int) -> torch.Tensor:
    """(side*side, dim) 2-D sine-cosine code of each patch's row and column (ViT/MAE style).

    Starting the learned position embedding here instead of at zero lets a fresh model tell where a
    patch is from step 0; learning that from scratch was most of the early training time.
    """
    quarter = dim // 4
    frequencies = 1.0 / (100.0 ** (torch.arange(quarter, dtype=torch.float32) / max(1, quarter)))
    rows, cols = torch.meshgrid(torch.arange(side, dtype=torch.float32), torch.arange(side, dtype=torch.float32),
                                indexing="ij")
    parts = []
    for coordinate in (rows.reshape(-1), cols.reshape(-1)):
        angles = coordinate[:, None] * frequencies[None]
        parts += [torch.sin(angles), torch.cos(angles)]
    return torch.cat(parts, dim=1)


class PatchEncoder(nn.Module):
    """Image (B, 3, S, S) in [-1, 1] -> (B, P, vision_dim) patch features (the "patch" stem)."""

    def __init__(self, config: TinyVLAConfig) -> None:
        super().__init__()
        self.patchify = nn.Conv2d(3, config.vision_dim, kernel_size=config.patch_size, stride=config.patch_size)
        side = config.image_size // config.patch_size
        self.position = nn.Parameter(grid_position_code(side, config.vision_dim))
        layer = nn.TransformerEncoderLayer(config.vision_dim, nhead=4, dim_feedforward=2 * config.vision_dim,
                                           dropout=0.0, batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, config.vision_layers, enable_nested_tensor=False)

    def forward_batch(self, pixels: torch.Tensor, prompt_ids: list[torch.Tensor]) -> torch.Tensor:
        """(B, 3, S, S) -> (B, P, vision_dim). The prompt is not used: this encoder sees pixels only."""
        patches = self.patchify(pixels).flatten(2).transpose(1, 2) + self.position
        return self.blocks(patches)


MAX_PROMPT_TOKENS = 128  # position table size for the instruction pooling (prompts are ~30 pieces)


class InstructionEncoder(nn.Module):
    """Prompt token ids -> one vector: a per-token MLP over (token, position) embeddings, mean-pooled.

    Position matters: in "put the red cube on the green plate" the colour before "cube" names the
    cube. Far cheaper than running the language model twice, and owned by the vision tower so the
    LLM's own embeddings stay as OpenVLA's.
    """

    def __init__(self, vocab_size: int, dim: int) -> None:
        super().__init__()
        self.tokens = nn.Embedding(vocab_size, dim)
        self.positions = nn.Embedding(MAX_PROMPT_TOKENS, dim)
        self.mix = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))

    def forward(self, prompt_ids: list[torch.Tensor]) -> torch.Tensor:
        """B prompts of any length -> (B, dim); one padded batch, padding masked out of the mean."""
        prompt_ids = [ids[:MAX_PROMPT_TOKENS] for ids in prompt_ids]
        length = max(len(ids) for ids in prompt_ids)
        device = prompt_ids[0].device
        padded = torch.zeros(len(prompt_ids), length, dtype=torch.long, device=device)
        mask = torch.zeros(len(prompt_ids), length, 1, device=device)
        for row, ids in enumerate(prompt_ids):
            padded[row, : len(ids)] = ids
            mask[row, : len(ids)] = 1.0
        where = torch.arange(length, device=device)
        mixed = self.mix(self.tokens(padded) + self.positions(where)) * mask.to(self.tokens.weight.dtype)
        return mixed.sum(1) / mask.sum(1).to(mixed.dtype)


class FiLMConv(nn.Module):
    """conv -> group norm -> (1 + gamma) * x + beta from the instruction -> ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, text_dim: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2)
        self.norm = nn.GroupNorm(min(8, out_channels), out_channels)
        self.film = nn.Linear(text_dim, 2 * out_channels)
        nn.init.zeros_(self.film.weight)  # starts as a plain CNN; the instruction's effect is learned
        nn.init.zeros_(self.film.bias)

    def forward(self, x: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.film(text)[:, :, None, None].chunk(2, dim=1)
        return F.relu((1 + gamma) * self.norm(self.conv(x)) + beta)


def coordinate_channels(batch: int, size: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(B, 2, S, S): x and y in [-1, 1] (CoordConv), so a filter's response can depend on where it is."""
    line = torch.linspace(-1.0, 1.0, size, device=device, dtype=dtype)
    ys, xs = torch.meshgrid(line, line, indexing="ij")
    return torch.stack([xs, ys])[None].expand(batch, -1, -1, -1)


def spatial_softmax(features: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, 2): the softmax-weighted mean (x, y) of each channel, in [-1, 1]."""
    batch, channels, height, width = features.shape
    weights = F.softmax(features.flatten(2), dim=-1).view(batch, channels, height, width)
    xs = torch.linspace(-1.0, 1.0, width, device=features.device, dtype=features.dtype)
    ys = torch.linspace(-1.0, 1.0, height, device=features.device, dtype=features.dtype)
    x = (weights.sum(2) * xs).sum(-1)
    y = (weights.sum(3) * ys).sum(-1)
    return torch.stack([x, y], dim=-1)


class FiLMEncoder(nn.Module):
    """Image (B, 3, S, S) in [-1, 1] + prompt ids -> (B, grid*grid + keypoint_tokens, vision_dim)."""

    keypoint_tokens = FILM_KEYPOINT_TOKENS

    def __init__(self, config: TinyVLAConfig) -> None:
        super().__init__()
        dim = config.vision_dim
        self.text = InstructionEncoder(config.vocab_size, dim)
        self.convs = nn.ModuleList([
            FiLMConv(3 + 2, 32, kernel=5, stride=2, text_dim=dim),   # S/2
            FiLMConv(32, dim, kernel=3, stride=2, text_dim=dim),     # S/4
            FiLMConv(dim, dim, kernel=3, stride=1, text_dim=dim),    # S/4
        ])
        self.grid = config.image_size // config.patch_size
        self.position = nn.Parameter(grid_position_code(self.grid, dim))
        self.keypoints = nn.Linear(2 * dim, self.keypoint_tokens * dim)
        layer = nn.TransformerEncoderLayer(dim, nhead=4, dim_feedforward=2 * dim, dropout=0.0, batch_first=True,
                                           norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, config.vision_layers, enable_nested_tensor=False)

    def forward_batch(self, pixels: torch.Tensor, prompt_ids: list[torch.Tensor]) -> torch.Tensor:
        text = self.text(prompt_ids).to(pixels.dtype)
        x = torch.cat([pixels, coordinate_channels(len(pixels), pixels.shape[-1], pixels.device, pixels.dtype)], 1)
        for conv in self.convs:
            x = conv(x, text)
        grid = F.adaptive_avg_pool2d(x, self.grid).flatten(2).transpose(1, 2) + self.position
        points = self.keypoints(spatial_softmax(x).flatten(1)).view(len(x), self.keypoint_tokens, -1)
        return self.blocks(torch.cat([grid, points], dim=1))


def build_vision_encoder(config: TinyVLAConfig) -> nn.Module:
    """The encoder `config.vision_stem` names (config validation has already checked the name)."""
    if config.vision_stem == "film":
        return FiLMEncoder(config)
    return PatchEncoder(config)
