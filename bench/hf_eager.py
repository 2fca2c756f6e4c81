"""The slow honest baseline: autoregressive decoding the way OpenVLA's `predict_action` runs it.

Hugging Face's `LlamaModel` with a `DynamicCache`, eager, one forward per token (what
`generate(do_sample=False)` does, minus generate's own overhead), over the same weights and the
same image encoder (eager). Every speedup in the benchmarks is reported against it and against
the fastest AR decoder this package runs (`AutoregressiveDecoder`, static cache, compiled).
"""
from __future__ import annotations

import inspect

import numpy as np
import torch
from transformers import DynamicCache
from transformers.models.llama.modeling_llama import LlamaModel

from specvla_ros.core.action_tokenizer import N_ACTION_DIMS
from specvla_ros.core.decoder import ActionResult, AutoregressiveDecoder
from specvla_ros.core.stopwatch import Stopwatch

# transformers 5.24 names the cache argument `cache` (`past_key_values` warns); 5.17, on the GPU
# machine, only knows `past_key_values` and silently ignores `cache`.
CACHE_ARGUMENT = "cache" if "cache" in inspect.signature(LlamaModel.forward).parameters else "past_key_values"


class HFEagerAutoregressive(AutoregressiveDecoder):
    """Greedy decoding through HF's LlamaModel (DynamicCache, eager)."""

    @torch.inference_mode()
    def decode(self, image: np.ndarray, instruction: str, **_times: float | None) -> ActionResult:
        model = self.backbone
        language = model.language.causal_lm
        watch = Stopwatch(model.device)
        with watch.phase("prefill"):
            ids, patches = model.prompt_and_patches(image, instruction, compiled=False)
            text = language.model.embed_tokens(ids)
            embeds = torch.cat([text[:1], patches, text[1:]])
            cache = DynamicCache()
            hidden = language.model(inputs_embeds=embeds[None], use_cache=True, **{CACHE_ARGUMENT: cache}).last_hidden_state
            tokens = [int(self.greedy(language.lm_head(hidden[0, -1])))]
        with watch.phase("verify"):
            while len(tokens) < N_ACTION_DIMS:
                ids = torch.tensor([[tokens[-1]]], device=model.device)
                hidden = language.model(input_ids=ids, use_cache=True, **{CACHE_ARGUMENT: cache}).last_hidden_state
                logits = language.lm_head(hidden[0, -1])
                tokens.append(int(self.greedy(logits)))
        return self._result(tokens, watch, forwards=N_ACTION_DIMS, accepted=(),
                            finite=bool(torch.isfinite(logits).all()))
