"""Acceptance rules: which drafted tokens the target's own choices accept.

A rule only computes the accepted mask; picking the path is shared. Exact acceptance is the
lossless rule; relaxed acceptance (Spec-VLA) also accepts an action token within r bins of the
target's argmax (token-id distance equals bin distance), r per action dimension.
"""
from __future__ import annotations

import torch

from specvla_ros.core.action_tokenizer import ActionTokenizer


def accept_exact(draft_tokens: torch.Tensor, target_tokens: torch.Tensor) -> torch.Tensor:
    return draft_tokens == target_tokens


def accept_relaxed(draft_tokens: torch.Tensor, target_tokens: torch.Tensor, relax_bins: torch.Tensor,
                   tokenizer: ActionTokenizer) -> torch.Tensor:
    """relax_bins: per-node threshold r (that of the action dimension each node fills).

    Accepted: equal tokens, or, where r > 0, two action tokens whose bins are at most r apart.
    Bins, not ids: the two top ids share the last bin centre. r = 0 stays exact.
    """
    first, end = tokenizer.first_action_token, tokenizer.vocab_size
    both_actions = ((draft_tokens >= first) & (draft_tokens < end) & (target_tokens >= first)
                    & (target_tokens < end))
    bins_apart = (tokenizer.token_to_bin_tensor(draft_tokens) - tokenizer.token_to_bin_tensor(target_tokens)).abs()
    near = (relax_bins > 0) & (bins_apart <= relax_bins)
    return accept_exact(draft_tokens, target_tokens) | (both_actions & near)


def longest_accepted_path(parents: list[int], depths: list[int], accepted: list[bool]) -> list[int]:
    """Node indices (root excluded, root = -1 parent) of the deepest chain of accepted nodes.

    Nodes come ordered by draft confidence, so among equally deep paths the most confident wins.
    """
    reachable = [False] * len(parents)
    best: int | None = None
    for node in sorted(range(len(parents)), key=lambda i: depths[i]):
        parent = parents[node]
        if accepted[node] and (parent < 0 or reachable[parent]):
            reachable[node] = True
            if best is None or depths[node] > depths[best]:
                best = node
    path: list[int] = []
    while best is not None and best >= 0:
        path.append(best)
        best = parents[best] if parents[best] >= 0 else None
    return path[::-1]
