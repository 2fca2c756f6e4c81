"""EAGLE-2 dynamic draft tree, as plain tensors.

Starting from the draft head's prediction for the root, each depth expands the `top_k` most
confident frontier nodes (by cumulative draft log-probability) into their `top_k` best children;
finally the `total_tokens` best nodes overall are kept. A child never scores above its parent
(log-probs are <= 0) and ties are broken towards shallower nodes, so the kept set is always
closed under ancestors. Chain mode keeps one child per depth.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import DynamicCache

from specvla_ros.core.action_tokenizer import ActionTokenizer
from specvla_ros.core.backbone import cache_length
from specvla_ros.core.config import TreeConfig
from specvla_ros.core.draft_head import DraftHead


@dataclass
class DraftTree:
    """Drafted nodes below a root token (the root itself is not stored).

    tokens, parents (-1 = the root), depths (1 = child of the root) and cumulative log-probs
    `scores`; ordered by depth, then by decreasing score, so parents precede their children.
    """

    tokens: torch.Tensor
    parents: torch.Tensor
    depths: torch.Tensor
    scores: torch.Tensor

    def __len__(self) -> int:
        return int(self.tokens.numel())

    @classmethod
    def empty(cls, device: torch.device) -> "DraftTree":
        """No drafted nodes: verification then runs the root alone."""
        none = torch.zeros(0, dtype=torch.long, device=device)
        return cls(tokens=none, parents=none, depths=none, scores=torch.zeros(0, device=device))

    def attention_mask(self) -> torch.Tensor:
        """(N + 1, N + 1) bool over [root, nodes...]: each attends to itself and its ancestors."""
        n = len(self) + 1
        mask = torch.eye(n, dtype=torch.bool, device=self.tokens.device)
        mask[:, 0] = True
        parents = self.parents.tolist()
        for node in range(len(self)):  # parents precede children, so the parent's row is complete
            parent = parents[node]
            if parent >= 0:
                mask[node + 1] |= mask[parent + 1]
        return mask

    def position_offsets(self) -> torch.Tensor:
        """Offsets from the root's position for [root, nodes...]: the depth."""
        zero = torch.zeros(1, dtype=self.depths.dtype, device=self.depths.device)
        return torch.cat([zero, self.depths])


@dataclass
class _Node:
    token: int
    parent: int  # index into the pool, -1 = root
    depth: int
    score: float


def _top_candidates(logits: torch.Tensor, k: int, tokenizer: ActionTokenizer, restrict: bool
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows, V) logits -> top-k (log-probs, token ids) per row, optionally among action tokens only."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    if restrict:
        # Only the action range: a padded vocabulary (OpenVLA's 32064 rows) has unused ids above it.
        first, end = tokenizer.first_action_token, tokenizer.vocab_size
        values, index = logp[:, first:end].topk(min(k, end - first), dim=-1)
        return values, index + first
    return logp.topk(k, dim=-1)


def build_tree(head: DraftHead, cache: DynamicCache, root_feature: torch.Tensor, root_position: int,
               max_depth: int, config: TreeConfig, tokenizer: ActionTokenizer) -> DraftTree:
    """Grow the tree from the draft head's predicted feature for the root (its child position).

    `cache` holds the draft head's committed pairs; the tree's pairs are appended to it and must be
    cropped back by the caller after verification. root_position: the root token's position.
    """
    top_k = 1 if config.chain else config.top_k
    depth_limit = min(config.depth, max_depth)
    restrict = config.restrict_to_action_tokens
    committed = cache_length(cache)

    pool: list[_Node] = []
    cache_slot: dict[int, int] = {}  # pool index -> absolute draft-cache index
    values, tokens = _top_candidates(head.logits(root_feature[None]), top_k, tokenizer, restrict)
    frontier = []
    for value, token in zip(values[0].tolist(), tokens[0].tolist(), strict=True):
        pool.append(_Node(token, -1, 1, value))
        frontier.append(len(pool) - 1)
    frontier_features = None

    for depth in range(2, depth_limit + 1):
        # Run the frontier's pairs (parent feature, own token) through the head.
        parent_features = torch.stack([root_feature if pool[i].parent < 0 else frontier_features[pool[i].parent]
                                       for i in frontier])
        embeds = head.embed_tokens(torch.tensor([pool[i].token for i in frontier], device=root_feature.device))
        positions = torch.tensor([root_position + pool[i].depth - 1 for i in frontier], device=root_feature.device)
        past = cache_length(cache)
        visible = torch.zeros(len(frontier), past + len(frontier), dtype=torch.bool, device=root_feature.device)
        visible[:, :committed] = True
        for row, node in enumerate(frontier):
            visible[row, past + row] = True
            ancestor = pool[node].parent
            while ancestor >= 0:
                visible[row, cache_slot[ancestor]] = True
                ancestor = pool[ancestor].parent
        for row, node in enumerate(frontier):
            cache_slot[node] = past + row
        features = head(cache, embeds, parent_features, positions, visible)
        frontier_features = {node: features[row] for row, node in enumerate(frontier)}

        values, tokens = _top_candidates(head.logits(features), top_k, tokenizer, restrict)
        scores = values + torch.tensor([pool[i].score for i in frontier], device=values.device)[:, None]
        candidates = []
        for row, node in enumerate(frontier):
            for col in range(tokens.shape[1]):
                pool.append(_Node(int(tokens[row, col]), node, depth, float(scores[row, col])))
                candidates.append(len(pool) - 1)
        candidates.sort(key=lambda i: -pool[i].score)
        frontier = candidates[:top_k]

    keep = sorted(range(len(pool)), key=lambda i: (-pool[i].score, pool[i].depth))[:config.total_tokens]
    keep.sort(key=lambda i: (pool[i].depth, -pool[i].score))  # parents before children
    new_index = {old: new for new, old in enumerate(keep)}
    device = root_feature.device
    return DraftTree(
        tokens=torch.tensor([pool[i].token for i in keep], device=device),
        parents=torch.tensor([new_index[pool[i].parent] if pool[i].parent >= 0 else -1 for i in keep],
                             device=device),
        depths=torch.tensor([pool[i].depth for i in keep], device=device),
        scores=torch.tensor([pool[i].score for i in keep], device=device),
    )
