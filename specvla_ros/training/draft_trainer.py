"""Train a draft head to imitate its target (EAGLE objective), from any observations.

The head learns the *target's* behaviour, not the dataset's: for each observation the target
decodes its own greedy action, and the head is trained, teacher-forced on that sequence, to
predict the target's next feature (smooth L1) and the target's next-token distribution (soft
cross-entropy through the frozen LM head), on action positions only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

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


@torch.no_grad()  # not inference_mode: these tensors feed autograd later
def collect_sequence(target: Backbone, image: np.ndarray, instruction: str) -> TargetSequence:
    """Run the target greedily over one observation and keep what the draft head trains on."""
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
    prefix_len = prefill.prefix_len
    # Pair i = (feature i, input i + 1) predicts feature i + 1 and the token after it.
    return TargetSequence(
        features=all_features[:-1].clone(),
        embeds=embeds[: all_features.shape[0] - 1].clone(),
        next_features=all_features[1:].clone(),
        next_logits=torch.cat(logits_rows[1:]).clone(),
        first_action_pair=prefix_len - 1,
    )


def _pair_loss(head: DraftHead, sequence: TargetSequence, noise: float, feature_weight: float,
               token_weight: float, generator: torch.Generator) -> torch.Tensor:
    features = sequence.features
    if noise > 0:
        features = features + (torch.rand(features.shape, generator=generator) - 0.5) * noise
    positions = torch.arange(features.shape[0])
    predicted = head(sequence.embeds, features, positions)
    action = slice(sequence.first_action_pair, None)
    # predicted[i] ~ feature i + 1; its logits should match the target's logits at i + 1,
    # which predict token i + 2: rows of next_logits are offset by one pair.
    pred = predicted[action]
    feature_loss = F.smooth_l1_loss(pred, sequence.next_features[action])
    target_probs = torch.softmax(sequence.next_logits[-pred.shape[0]:].float(), dim=-1)
    token_loss = -(target_probs * torch.log_softmax(head.logits(pred).float(), dim=-1)).sum(-1).mean()
    return feature_weight * feature_loss + token_weight * token_loss


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
    for parameter in shared:
        parameter.requires_grad_(False)
    head.train()
    losses = []
    try:
        for step in range(steps):
            sequence = sequences[step % len(sequences)]
            loss = _pair_loss(head, sequence, noise, feature_weight, token_weight, generator)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    finally:
        head.eval()
        for parameter, trainable in zip(shared, was_trainable, strict=True):
            parameter.requires_grad_(trainable)
    return losses
