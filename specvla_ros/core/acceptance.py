"""Acceptance rules: which drafted tokens the target's own choices accept.

A rule only computes the accepted mask; picking the path (`deepest_accepted_chain`) is shared,
and runs on the device: it reads nothing back to the host. Exact acceptance is the
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


def deepest_accepted_chain(parents: torch.Tensor, depths: torch.Tensor, accepted: torch.Tensor, max_depth: int
                           ) -> torch.Tensor:
    """The accepted path of a draft tree (parents: -1 = the root; depths: 1 = the root's child) as a
    (max_depth,) tensor: its deepest node first, then that node's parent,
    and so on up to the root's child, padded with -1 (all -1 when nothing was accepted).

    A node counts when it and all its ancestors are accepted; the deepest such node wins, and among
    equally deep ones the first in tree order (the draft head's most confident).
    """
    device = accepted.device
    count = accepted.shape[0]
    if count == 0:
        return torch.full((max(max_depth, 1),), -1, dtype=torch.long, device=device)
    is_child_of_root = parents < 0
    parent = parents.clamp(min=0)
    reachable = accepted & is_child_of_root
    for _ in range(max_depth - 1):
        reachable = accepted & (is_child_of_root | reachable[parent])
    rank = depths * (count + 1) - torch.arange(count, device=device)
    rank = torch.where(reachable, rank, torch.full_like(rank, -1))
    best = torch.where(rank.max() >= 0, rank.argmax(), torch.full_like(rank[0], -1)).view(1)
    chain = [best]
    for _ in range(max_depth - 1):  # (1,)-shaped indices: a 0-d index would read the host
        above = chain[-1]
        chain.append(torch.where(above >= 0, parents.index_select(0, above.clamp(min=0)), above))
    return torch.cat(chain)
