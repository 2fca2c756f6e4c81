"""Train a draft head to imitate its target (EAGLE objective), from any observations.

The head learns the *target's* behaviour, not the dataset's: for each observation the target
decodes its own greedy action, and the head is trained, teacher-forced on that sequence, to
predict the target's next feature (smooth L1) and the target's next-token distribution (soft
cross-entropy through the frozen LM head), on action positions only.

`train_draft_head` trains in memory on a list of sequences, one per step (the tests and
bench/decode_demo.py use it); training/cached_training.py trains from a feature cache, over
torch.distributed ranks, with the same `pair_loss`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F

from specvla_ros.core.action_tokenizer import N_ACTION_DIMS
from specvla_ros.core.backbone import Backbone, causal_mask
from specvla_ros.core.draft_head import DraftHead


@dataclass
class TargetSequence:
    """One observation as the target sees it: features, next-input embeddings, next-token logits.

    features[i], embeds[i] form draft pair i (feature at i, input at i + 1); logits[i] are the
    target's logits at i + 1. Only pairs from `first_action_pair` on carry loss.
    """

    features: torch.Tensor
    embeds: torch.Tensor
    next_features: torch.Tensor
    next_logits: torch.Tensor
    first_action_pair: int


@dataclass
class TargetFrame:
    """What extraction stores per observation (the EAGLE training pairs, without logits).

    features: (L + 6, H) the target's final-layer features at positions 0 .. L + 5 (L = prefix
    length); embeds: (L + 5, H) the input embeddings at positions 1 .. L + 5; tokens: (7,) the
    target's greedy action tokens. The logits are not kept: they are lm_head(features), and the
    LM head is frozen, so training recomputes them (6 rows of V per frame instead of storing them).
    """

    features: torch.Tensor
    embeds: torch.Tensor
    tokens: torch.Tensor

    @property
    def prefix_len(self) -> int:
        return self.features.shape[0] - (N_ACTION_DIMS - 1)

    def sequence(self, lm_head: torch.nn.Module, device: torch.device, dtype: torch.dtype) -> TargetSequence:
        """The draft pairs of this frame on `device`, logits recomputed through the frozen LM head."""
        features = self.features.to(device=device, dtype=dtype)
        with torch.no_grad():
            next_logits = lm_head(features[self.prefix_len:])
        return TargetSequence(features=features[:-1], embeds=self.embeds.to(device=device, dtype=dtype),
                              next_features=features[1:], next_logits=next_logits,
                              first_action_pair=self.prefix_len - 1)


@torch.no_grad()
def _run_target(target: Backbone, image: np.ndarray, instruction: str
                ) -> tuple[torch.Tensor, torch.Tensor, list[int], list[torch.Tensor], int]:
    """The target's greedy pass: (features 0..L+5, inputs 1..L+6, tokens, logits rows, L)."""
    prefill = target.prefill(image, instruction)
    tokens = [int(prefill.logits_last.argmax())]
    features, logits_rows = [prefill.hidden], [prefill.logits_last[None]]
    position = prefill.prefix_len
    one = causal_mask(1, target.device)
    while len(tokens) < N_ACTION_DIMS:
        logits, hidden = target.forward(prefill.cache, torch.tensor([tokens[-1]], device=target.device),
                                        torch.tensor([position], device=target.device), one)
        features.append(hidden)
        logits_rows.append(logits)
        tokens.append(int(logits[0].argmax()))
        position += 1
    all_features = torch.cat(features)               # positions 0 .. L+5
    token_embeds = target.embed_tokens(torch.tensor(tokens, device=target.device))
    embeds = torch.cat([prefill.next_embeds, token_embeds])  # input at positions 1 .. L+6
    return all_features, embeds, tokens, logits_rows, prefill.prefix_len


@torch.no_grad()  # not inference_mode: these tensors feed autograd later
def collect_sequence(target: Backbone, image: np.ndarray, instruction: str) -> TargetSequence:
    """Run the target greedily over one observation and keep what the draft head trains on."""
    all_features, embeds, _, logits_rows, prefix_len = _run_target(target, image, instruction)
    # Pair i = (feature i, input i + 1) predicts feature i + 1 and the token after it.
    return TargetSequence(
        features=all_features[:-1].clone(),
        embeds=embeds[: all_features.shape[0] - 1].clone(),
        next_features=all_features[1:].clone(),
        next_logits=torch.cat(logits_rows[1:]).clone(),
        first_action_pair=prefix_len - 1,
    )


@torch.no_grad()
def collect_frame(target: Backbone, image: np.ndarray, instruction: str) -> TargetFrame:
    """The target's greedy pass over one observation, as extraction stores it (on the CPU)."""
    all_features, embeds, tokens, _, _ = _run_target(target, image, instruction)
    return TargetFrame(features=all_features.cpu().clone(), embeds=embeds[: all_features.shape[0] - 1].cpu().clone(),
                       tokens=torch.tensor(tokens, dtype=torch.int64))


def pair_loss(forward: Callable[..., torch.Tensor], lm_head: torch.nn.Module, sequence: TargetSequence,
              noise: float, feature_weight: float, token_weight: float, generator: torch.Generator) -> torch.Tensor:
    """The EAGLE loss of one sequence. `forward` is the head (or its DDP wrapper: its forward is
    what DDP hooks); the noise is drawn on the CPU from `generator`, so it is the same on any device."""
    features = sequence.features
    if noise > 0:
        features = features + ((torch.rand(features.shape, generator=generator) - 0.5) * noise).to(
            device=features.device, dtype=features.dtype)
    positions = torch.arange(features.shape[0], device=features.device)
    predicted = forward(sequence.embeds, features, positions)
    action = slice(sequence.first_action_pair, None)
    # predicted[i] ~ feature i + 1; its logits should match the target's logits at i + 1,
    # which predict token i + 2: rows of next_logits are offset by one pair.
    pred = predicted[action]
    feature_loss = F.smooth_l1_loss(pred, sequence.next_features[action])
    target_probs = torch.softmax(sequence.next_logits[-pred.shape[0]:].float(), dim=-1)
    token_loss = -(target_probs * torch.log_softmax(lm_head(pred).float(), dim=-1)).sum(-1).mean()
    return feature_weight * feature_loss + token_weight * token_loss


def freeze_shared(head: DraftHead) -> None:
    """The embedding table and LM head belong to the target: never trained, no gradients kept."""
    for parameter in (head.embed_tokens.weight, head.lm_head.weight):
        parameter.requires_grad_(False)


def train_draft_head(head: DraftHead, sequences: Iterable[TargetSequence], steps: int, lr: float = 3e-3,
                     seed: int = 0, noise: float = 0.2, feature_weight: float = 1.0,
                     token_weight: float = 0.1, optimizer: torch.optim.Optimizer | None = None) -> list[float]:
    """AdamW over the head's own weights (shared embedding / LM head stay frozen); returns losses.

    Pass the same `optimizer` to continue a run in several calls (e.g. between evaluations).
    """
    sequences = list(sequences)
    generator = torch.Generator().manual_seed(seed)
    optimizer = optimizer or torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=0.0)
    shared = [head.embed_tokens.weight, head.lm_head.weight]
    was_trainable = [p.requires_grad for p in shared]
    freeze_shared(head)
    head.train()
    losses = []
    try:
        for step in range(steps):
            sequence = sequences[step % len(sequences)]
            loss = pair_loss(head, head.lm_head, sequence, noise, feature_weight, token_weight, generator)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    finally:
        head.eval()
        for parameter, trainable in zip(shared, was_trainable, strict=True):
            parameter.requires_grad_(trainable)
    return losses
