"""Optional 8-bit / 4-bit (NF4) weights for the Llama decoder layers, with bitsandbytes.

Only the decoder layers' linear projections are quantized (about 6.5 of OpenVLA-7B's 7.5 B
parameters); the vision backbones, projector, embeddings and LM head stay in bf16, like
transformers' own bitsandbytes integration keeps the output head. Quantized weights are made when
the model moves to the GPU. Unverified here (no GPU, no bitsandbytes on these machines): see
docs/openvla.md.
"""
from __future__ import annotations

import importlib

import torch
from torch import nn

from specvla_ros.core.errors import ConfigError


def bitsandbytes_module():
    try:
        return importlib.import_module("bitsandbytes")
    except ImportError:
        raise ConfigError("8bit/4bit loading needs the bitsandbytes package (pip install bitsandbytes, CUDA only); "
                          "or load in bfloat16 (about 15 GB of GPU memory for OpenVLA-7B)") from None


def quantize_llm(language_model: nn.Module, mode: str, compute_dtype: torch.dtype) -> None:
    """Swap every nn.Linear inside the decoder layers for its bitsandbytes counterpart (still on CPU)."""
    bnb = bitsandbytes_module()
    for layer in language_model.model.layers:
        for parent in list(layer.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, nn.Linear):
                    setattr(parent, name, _quantized(bnb, child, mode, compute_dtype))


def _quantized(bnb, linear: nn.Linear, mode: str, compute_dtype: torch.dtype) -> nn.Module:
    has_bias = linear.bias is not None
    if mode == "8bit":
        layer = bnb.nn.Linear8bitLt(linear.in_features, linear.out_features, bias=has_bias, has_fp16_weights=False,
                                    threshold=6.0)
        layer.weight = bnb.nn.Int8Params(linear.weight.data.to(torch.float16), requires_grad=False,
                                         has_fp16_weights=False)
    else:
        layer = bnb.nn.Linear4bit(linear.in_features, linear.out_features, bias=has_bias,
                                  compute_dtype=compute_dtype, quant_type="nf4")
        layer.weight = bnb.nn.Params4bit(linear.weight.data, requires_grad=False, quant_type="nf4")
    if has_bias:
        layer.bias = nn.Parameter(linear.bias.data, requires_grad=False)
    return layer
