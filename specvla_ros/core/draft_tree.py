"""EAGLE-2 dynamic draft tree, as plain tensors.

Starting from the draft head's prediction for the root, each depth expands the `top_k` most
confident frontier nodes (by cumulative draft log-probability) into their `top_k` best children;
finally the `total_tokens` best nodes overall are kept. A child never scores above its parent
(log-probs are <= 0) and ties are broken towards shallower nodes, so the kept set is always
closed under ancestors. Chain mode keeps one child per depth.

Other proposers (temporal drafts, core/temporal_draft.py) graft whole chains onto a tree with
`DraftTree.with_chains`; `sources` records which proposer put each node there.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import DynamicCache

from specvla_ros.core.action_tokenizer import ActionTokenizer
from specvla_ros.core.backbone import cache_length
from specvla_ros.core.config import TreeConfig
from specvla_ros.core.draft_head import DraftHead

SOURCE_HEAD = 1      # bit flags in DraftTree.sources: a node may come from both proposers
SOURCE_TEMPORAL = 2


@dataclass
class DraftTree:
    """Drafted nodes below a root token (the root itself is not stored).

    tokens, parents (-1 = the root), depths (1 = child of the root) and cumulative log-probs
    `scores`; ordered by depth, then by decreasing score, so parents precede their children.
    sources: per-node bit flags (SOURCE_HEAD, SOURCE_TEMPORAL); None = all from the draft head.
    """

    tokens: torch.Tensor
    parents: torch.Tensor
    depths: torch.Tensor
    scores: torch.Tensor
    sources: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.tokens.numel())

    @classmethod
    def empty(cls, device: torch.device) -> "DraftTree":
        """No drafted nodes: verification then runs the root alone."""
        none = torch.zeros(0, dtype=torch.long, device=device)
        return cls(tokens=none, parents=none, depths=none, scores=torch.zeros(0, device=device), sources=none)

    def source_flags(self) -> list[int]:
        """Per-node proposer bit flags (SOURCE_HEAD | SOURCE_TEMPORAL)."""
        if self.sources is None:
            return [SOURCE_HEAD] * len(self)
        return self.sources.tolist()

    def with_chains(self, chains: list[list[int]], source: int = SOURCE_TEMPORAL) -> "DraftTree":
        """This tree plus each chain of tokens grafted below the root.

        A chain token that already is a child of the chain's previous node reuses that node (its
        source flag gains `source`); the others become new nodes with score 0. The result is again
        ordered by depth (existing nodes first within a depth), so parents precede children and the
        mask and positions stay right.
        """
        tokens, parents, depths = self.tokens.tolist(), self.parents.tolist(), self.depths.tolist()
        scores, sources = self.scores.tolist(), self.source_flags()
        child = {(parent, token): node for node, (parent, token) in enumerate(zip(parents, tokens, strict=True))}
        for chain in chains:
            parent = -1
            for depth, token in enumerate(chain, start=1):
                node = child.get((parent, token))
                if node is None:
                    node = len(tokens)
                    tokens.append(int(token))
                    parents.append(parent)
                    depths.append(depth)
                    scores.append(0.0)
                    sources.append(0)
                    child[(parent, int(token))] = node
                sources[node] |= source
                parent = node
        order = sorted(range(len(tokens)), key=lambda i: depths[i])  # stable: existing nodes keep their order
        new_index = {old: new for new, old in enumerate(order)}
        device = self.tokens.device
        return DraftTree(
            tokens=torch.tensor([tokens[i] for i in order], dtype=torch.long, device=device),
            parents=torch.tensor([new_index[parents[i]] if parents[i] >= 0 else -1 for i in order],
                                 dtype=torch.long, device=device),
            depths=torch.tensor([depths[i] for i in order], dtype=torch.long, device=device),
            scores=torch.tensor([scores[i] for i in order], dtype=self.scores.dtype, device=device),
            sources=torch.tensor([sources[i] for i in order], dtype=torch.long, device=device),
        )

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
        sources=torch.full((len(keep),), SOURCE_HEAD, dtype=torch.long, device=device),
    )
