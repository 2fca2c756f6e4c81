"""EAGLE-2 dynamic draft tree, in fixed shapes.

Starting from the draft head's prediction for the root, each depth expands the `top_k` most
confident frontier nodes (by cumulative draft log-probability) into their `top_k` best children;
finally the `total_tokens` best nodes overall are kept. A child never scores above its parent
(log-probs are <= 0) and ties go to the node made first (shallower), so the kept set is always
closed under ancestors. Chain mode keeps one child per depth.

Every tree of a decoder has the same shape (TreeLayout): the draft head always drafts its full
depth, and nodes deeper than the tokens still missing are marked invalid rather than dropped.
That costs a few draft rows near the end of an action and buys one compiled graph for every step,
no read-back to the host while drafting, and no Python per node.

Other proposers (temporal drafts, core/temporal_draft.py) fill the layout's chain slots after the
draft head's nodes (`chain_nodes`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from specvla_ros.core.action_tokenizer import N_ACTION_DIMS, ActionTokenizer
from specvla_ros.core.config import TreeConfig
from specvla_ros.core.draft_head import DraftHead

CHAIN_LENGTH = N_ACTION_DIMS - 2  # a guess drafts at most tokens 2..6 (the first comes from prefill, the last is the bonus)


@dataclass(frozen=True)
class TreeLayout:
    """The fixed sizes of one decoder's draft trees: `head_nodes` from the draft head (0 without one),
    then `chains` slots of CHAIN_LENGTH nodes for guessed chains."""

    width: int
    depth: int
    head_nodes: int
    chains: int

    @classmethod
    def of(cls, tree: TreeConfig, tokenizer: ActionTokenizer, draft_head: bool, chains: int) -> "TreeLayout":
        width = 1 if tree.chain else tree.top_k
        if tree.restrict_to_action_tokens:
            width = min(width, tokenizer.vocab_size - tokenizer.first_action_token)
        depth = min(tree.depth, N_ACTION_DIMS - 2) if draft_head else 0
        pool = width + (depth - 1) * width * width if draft_head else 0
        return cls(width=width, depth=depth, head_nodes=min(tree.total_tokens, pool), chains=chains)

    @property
    def nodes(self) -> int:
        return self.head_nodes + self.chains * CHAIN_LENGTH

    @property
    def max_depth(self) -> int:
        return max(self.depth, CHAIN_LENGTH if self.chains else 0)

    @property
    def draft_rows(self) -> int:
        """Draft-cache rows one tree appends after the catch-up pairs."""
        return (self.depth - 1) * self.width if self.depth else 0


@dataclass
class DraftTree:
    """Drafted nodes below a root token (the root itself is not stored), as device tensors.

    parents: -1 = the root; depths: 1 = child of the root; valid: False for nodes that must not be
    verified (deeper than the tokens still missing, or an unused chain slot): nobody sees them and
    the acceptance rule never accepts them. Nodes from `head_nodes` on came from guessed chains.
    """

    tokens: torch.Tensor
    parents: torch.Tensor
    depths: torch.Tensor
    valid: torch.Tensor

    def __len__(self) -> int:
        return self.tokens.shape[0]

    @classmethod
    def empty_head(cls, device: torch.device) -> "DraftTree":
        """No draft-head nodes (temporal chains alone)."""
        none = torch.zeros(0, dtype=torch.long, device=device)
        return cls(tokens=none, parents=none, depths=none, valid=none.bool())

    def parent_rows(self) -> torch.Tensor:
        """Each node's parent as a row of [root, nodes...] (the root is row 0)."""
        return self.parents + 1

    def position_offsets(self) -> torch.Tensor:
        """Offsets from the root's position for [root, nodes...]: the depth."""
        return torch.cat([torch.zeros_like(self.depths[:1]), self.depths])

    def attention_mask(self, max_depth: int) -> torch.Tensor:
        """(N + 1, N + 1) bool over [root, nodes...]: each valid node attends to itself, the root and
        its ancestors; an invalid node only to itself."""
        count = len(self) + 1
        own = torch.eye(count, dtype=torch.bool, device=self.tokens.device)
        parent_row = torch.cat([torch.zeros_like(self.parents[:1]), self.parent_rows()])
        mask = own.clone()
        mask[:, 0] = True
        for _ in range(max_depth - 1):  # each pass adds one more generation of ancestors
            mask = own | mask[parent_row]
            mask[:, 0] = True
        usable = torch.cat([torch.ones_like(self.valid[:1]), self.valid])
        return (mask & usable[:, None] & usable[None, :]) | own


def cat_trees(first: DraftTree, second: DraftTree) -> DraftTree:
    """Two trees below the same root as one: the second's parents are shifted past the first."""
    offset = len(first)
    parents = torch.where(second.parents >= 0, second.parents + offset, second.parents)
    return DraftTree(tokens=torch.cat([first.tokens, second.tokens]), parents=torch.cat([first.parents, parents]),
                     depths=torch.cat([first.depths, second.depths]), valid=torch.cat([first.valid, second.valid]))


def chain_nodes(chains: list[list[int]], slots: int, device: torch.device, length: int = CHAIN_LENGTH) -> DraftTree:
    """Guessed chains as tree nodes, one slot of `length` nodes each (`slots` of them); unused places
    are invalid. Built on the host from host-side guesses: one copy to the device."""
    size = slots * length
    tokens, parents, depths, valid = [0] * size, [-1] * size, [1] * size, [False] * size
    for slot, chain in enumerate(chains[:slots]):
        base = slot * length
        for depth, token in enumerate(chain[:length], start=1):
            node = base + depth - 1
            tokens[node], depths[node], valid[node] = int(token), depth, True
            parents[node] = node - 1 if depth > 1 else -1
    packed = torch.tensor([tokens, parents, depths, valid], dtype=torch.long).to(device, non_blocking=True)
    return DraftTree(tokens=packed[0], parents=packed[1], depths=packed[2], valid=packed[3].bool())


def _top_candidates(logits: torch.Tensor, k: int, tokenizer: ActionTokenizer, restrict: bool
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows, V) logits -> top-k (log-probs, token ids) per row, optionally among action tokens only."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    if restrict:
        # Only the action range: a padded vocabulary (OpenVLA's 32064 rows) has unused ids above it.
        first, end = tokenizer.first_action_token, tokenizer.vocab_size
        values, index = logp[:, first:end].topk(k, dim=-1)
        return values, index + first
    return logp.topk(k, dim=-1)


class TreeDrafter:
    """The draft head's part of a speculative step, as one function of tensors (one compiled graph).

    Catch up on the pairs the last verify step decided (their target features and the tokens that
    follow them), then grow the tree from the predicted feature of the root. Pairs come padded to a
    fixed count; `pair_count` says how many are real.
    """

    def __init__(self, head: DraftHead, layout: TreeLayout, tree: TreeConfig, tokenizer: ActionTokenizer) -> None:
        self.head = head
        self.layout = layout
        self.restrict = tree.restrict_to_action_tokens
        self.tokenizer = tokenizer

    def __call__(self, pair_embeds: torch.Tensor, pair_features: torch.Tensor, pair_count: torch.Tensor,
                 pair_position: torch.Tensor, cache_length: torch.Tensor, max_depth: torch.Tensor,
                 cos: torch.Tensor, sin: torch.Tensor, keys: torch.Tensor, values: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """pair_embeds, pair_features (R, H): pair i = (features[i], the next input's embedding) at
        position pair_position + i, written at cache slot cache_length + i; the last real pair is the
        root's, so the root sits at pair_position + pair_count. max_depth: the deepest a node may be
        and still be verified. Returns the draft head's tree (layout.head_nodes nodes) as DraftTree's
        fields in order (plain tensors leave a compiled graph most cheaply)."""
        head, layout = self.head, self.layout
        device = pair_embeds.device
        columns = torch.arange(keys.shape[2], device=device)
        rows = torch.arange(pair_embeds.shape[0], device=device)
        x = head.fc(torch.cat([pair_embeds, pair_features], dim=-1))
        slots = cache_length + rows
        predicted = head.stack.layers_forward(x, pair_position + rows, cos, sin, slots,
                                              columns[None, :] <= slots[:, None], keys, values)
        root_feature = predicted.index_select(0, (pair_count - 1).view(1))
        committed = cache_length + pair_count  # padded pairs past it are overwritten below

        logp, tokens = _top_candidates(head.logits(root_feature), layout.width, self.tokenizer, self.restrict)
        width = layout.width
        pool_tokens, pool_scores = [tokens[0]], [logp[0]]
        pool_parents = [torch.full((width,), -1, dtype=torch.long, device=device)]
        pool_depths = [torch.ones(width, dtype=torch.long, device=device)]
        pool_size = width
        # The frontier: nodes to expand next, the parent's predicted feature their pair needs, and
        # what they may see in the draft cache (committed pairs, their ancestors' pairs, themselves).
        frontier = torch.arange(width, device=device)
        frontier_tokens, frontier_scores = tokens[0], logp[0]
        parent_features = root_feature.expand(width, -1)
        frontier_visible = (columns < committed).expand(width, -1)
        width_rows = torch.arange(width, device=device)
        for depth in range(2, layout.depth + 1):
            slots = committed + (depth - 2) * width + width_rows
            visible = frontier_visible | (columns[None, :] == slots[:, None])
            x = head.fc(torch.cat([head.embed_tokens(frontier_tokens), parent_features], dim=-1))
            # The frontier is at depth - 1; a node's pair sits at its parent's position.
            positions = (pair_position + pair_count + depth - 2).expand(width)
            features = head.stack.layers_forward(x, positions, cos, sin, slots, visible, keys, values)

            logp, child_tokens = _top_candidates(head.logits(features), width, self.tokenizer, self.restrict)
            child_scores = (frontier_scores[:, None] + logp).flatten()
            pool_tokens.append(child_tokens.flatten())
            pool_scores.append(child_scores)
            pool_parents.append(frontier.repeat_interleave(width))
            pool_depths.append(torch.full((width * width,), depth, dtype=torch.long, device=device))

            best = child_scores.topk(width).indices
            parent_row = torch.div(best, width, rounding_mode="floor")
            frontier = pool_size + best
            frontier_tokens, frontier_scores = child_tokens.flatten()[best], child_scores[best]
            parent_features, frontier_visible = features[parent_row], visible[parent_row]
            pool_size += width * width

        depths = torch.cat(pool_depths)
        usable = depths <= max_depth
        scores = torch.cat(pool_scores).masked_fill(~usable, float("-inf"))
        # Global top head_nodes; a stable sort keeps ties in pool order (shallower first), so parents
        # come before their children and the kept set is closed under ancestors.
        kept = torch.sort(scores, descending=True, stable=True).indices[:layout.head_nodes]
        kept = kept[torch.sort(depths[kept], stable=True).indices]
        new_index = torch.full((pool_size,), -1, dtype=torch.long, device=device)
        new_index[kept] = torch.arange(layout.head_nodes, device=device)
        parents = torch.cat(pool_parents)[kept]
        return (torch.cat(pool_tokens)[kept], torch.where(parents >= 0, new_index[parents.clamp(min=0)], parents),
                depths[kept], usable[kept])
