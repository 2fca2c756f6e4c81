"""A slow, obvious OpenVLA forward written straight from the checkpoint's tensors (tests only).

No loader code is used: tensors come from the safetensors shards by name, the ViT is written out
in functional form (timm's get_intermediate_layers at the second-to-last block), the Llama is a
fresh LlamaForCausalLM, and every decoding step recomputes the whole sequence without a cache.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from tokenizers import Tokenizer
from transformers import LlamaConfig, LlamaForCausalLM

from test.core.openvla.pillow_reference import bicubic_resize


def read_tensors(folder: Path) -> dict[str, torch.Tensor]:
    index = json.loads((folder / "model.safetensors.index.json").read_text())["weight_map"]
    tensors: dict[str, torch.Tensor] = {}
    for shard in sorted(set(index.values())):
        tensors.update({k: v.float() for k, v in load_file(folder / shard).items()})
    return tensors


def reference_pixels(folder: Path, image: np.ndarray) -> list[torch.Tensor]:
    """Per backbone (1, 3, S, S): Pillow's bicubic resize as OpenVLA ran it (Pillow 10.3-12.x, written out in
    pillow_reference.py: the installed Pillow 13 differs on frames taller than wide), /255, normalize with
    the processor's saved values."""
    processor = json.loads((folder / "preprocessor_config.json").read_text())
    out = []
    for resize, norm in zip(processor["tvf_resize_params"], processor["tvf_normalize_params"], strict=True):
        size = tuple(resize["size"])
        picture = bicubic_resize(image, size[1], size[0])
        x = torch.tensor(np.array(picture), dtype=torch.float32).permute(2, 0, 1) / 255
        x = (x - torch.tensor(norm["mean"])[:, None, None]) / torch.tensor(norm["std"])[:, None, None]
        out.append(x[None])
    return out


def reference_vit(t: dict[str, torch.Tensor], prefix: str, num_heads: int, pixels: torch.Tensor) -> torch.Tensor:
    depth = 1 + max(int(k[len(prefix) + len("blocks."):].split(".")[0]) for k in t if k.startswith(prefix + "blocks."))
    proj = t[prefix + "patch_embed.proj.weight"]
    x = F.conv2d(pixels, proj, t[prefix + "patch_embed.proj.bias"], stride=proj.shape[-1]).flatten(2).transpose(1, 2)
    extra = [t[prefix + n] for n in ("cls_token", "reg_token") if prefix + n in t]
    pos = t[prefix + "pos_embed"]
    if pos.shape[1] == x.shape[1]:          # position embedding for patches only (DINOv2: no_embed_class)
        x = torch.cat([*extra, x + pos], dim=1)
    else:
        x = torch.cat([*extra, x], dim=1) + pos
    dim = x.shape[-1]
    head_dim = dim // num_heads
    for i in range(depth - 1):              # output of block depth - 2: the second-to-last
        b = f"{prefix}blocks.{i}."
        h = F.layer_norm(x, (dim,), t[b + "norm1.weight"], t[b + "norm1.bias"], eps=1e-6)
        q, k, v = F.linear(h, t[b + "attn.qkv.weight"], t[b + "attn.qkv.bias"]).split(dim, dim=-1)
        q, k, v = (z.reshape(z.shape[0], z.shape[1], num_heads, head_dim).transpose(1, 2) for z in (q, k, v))
        weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(head_dim), dim=-1)
        a = (weights @ v).transpose(1, 2).reshape(x.shape)
        a = F.linear(a, t[b + "attn.proj.weight"], t[b + "attn.proj.bias"])
        x = x + (a * t[b + "ls1.scale_factor"] if b + "ls1.scale_factor" in t else a)
        h = F.layer_norm(x, (dim,), t[b + "norm2.weight"], t[b + "norm2.bias"], eps=1e-6)
        h = F.linear(F.gelu(F.linear(h, t[b + "mlp.fc1.weight"], t[b + "mlp.fc1.bias"])), t[b + "mlp.fc2.weight"],
                     t[b + "mlp.fc2.bias"])
        x = x + (h * t[b + "ls2.scale_factor"] if b + "ls2.scale_factor" in t else h)
    return x[:, sum(e.shape[1] for e in extra):]  # drop class and register tokens


class ReferenceOpenVLA:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.config = json.loads((folder / "config.json").read_text())
        self.t = read_tensors(folder)
        text = self.config["text_config"]
        llama = LlamaConfig(vocab_size=text["vocab_size"], hidden_size=text["hidden_size"],
                            intermediate_size=text["intermediate_size"], num_hidden_layers=text["num_hidden_layers"],
                            num_attention_heads=text["num_attention_heads"], rms_norm_eps=1e-6,  # 4.40's default
                            attn_implementation="eager")
        self.llm = LlamaForCausalLM(llama).eval()
        self.llm.load_state_dict({k[len("language_model."):]: v for k, v in self.t.items()
                                  if k.startswith("language_model.")})
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))

    def prompt_ids(self, instruction: str) -> list[int]:
        prompt = f"In: What action should the robot take to {instruction.lower()}?\nOut:"
        ids = [self.tokenizer.token_to_id("<s>"), *self.tokenizer.encode(prompt, add_special_tokens=False).ids]
        space = self.tokenizer.token_to_id("▁")
        return ids + ([space] if ids[-1] != space else [])

    @torch.no_grad()
    def patches(self, image: np.ndarray) -> torch.Tensor:
        heads = [o["num_heads"] for o in self.config["specvla_vision_overrides"]]
        prefixes = ["vision_backbone.featurizer.", "vision_backbone.fused_featurizer."][: len(heads)]
        pixels = reference_pixels(self.folder, image)
        features = torch.cat([reference_vit(self.t, p, h, x) for p, h, x in zip(prefixes, heads, pixels, strict=True)],
                             dim=-1)
        x = F.gelu(F.linear(features, self.t["projector.fc1.weight"], self.t["projector.fc1.bias"]))
        x = F.linear(x, self.t["projector.fc2.weight"], self.t["projector.fc2.bias"])
        if "projector.fc3.weight" in self.t:
            x = F.linear(F.gelu(x), self.t["projector.fc3.weight"], self.t["projector.fc3.bias"])
        return x[0]

    @torch.no_grad()
    def greedy(self, image: np.ndarray, instruction: str, count: int = 7) -> tuple[list[int], torch.Tensor]:
        """(generated token ids, logits of the first step): full recompute for every token."""
        embed = self.llm.model.embed_tokens
        text = embed(torch.tensor(self.prompt_ids(instruction)))
        sequence = torch.cat([text[:1], self.patches(image), text[1:]])
        tokens, first_logits = [], None
        for _ in range(count):
            logits = self.llm(inputs_embeds=sequence[None]).logits[0, -1]
            first_logits = logits if first_logits is None else first_logits
            tokens.append(int(logits.argmax()))
            sequence = torch.cat([sequence, embed(torch.tensor([tokens[-1]]))])
        return tokens, first_logits
