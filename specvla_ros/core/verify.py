"""The target's part of a speculative step, as one function of tensors (one compiled graph).

Score root + tree in one target forward, take the target's own choice at every node, let the
acceptance rule mark the drafted nodes it accepts, pick the deepest accepted path, and move that
path's cache entries into place right after the committed ones. Everything the host needs comes
back in one small tensor (`read`), so a step costs one host read; what the draft head needs next
(its catch-up pairs) stays on the device.
"""
from __future__ import annotations

import torch

from specvla_ros.core.acceptance import accept_relaxed, deepest_accepted_chain
from specvla_ros.core.action_tokenizer import N_ACTION_DIMS, ActionTokenizer
from specvla_ros.core.backbone import LlamaLanguageModel
from specvla_ros.core.draft_tree import DraftTree

# Layout of the `read` tensor: root, bonus, finite (0 / 1), path length, then the path's tokens and
# its node indices (root's child first), each padded with -1 to the layout's max_depth.
READ_ROOT, READ_BONUS, READ_FINITE, READ_PATH_LENGTH, READ_PATH = 0, 1, 2, 3, 4


class TreeVerifier:
    """Verify, accept and commit one tree of fixed shape after the committed cache entries."""

    def __init__(self, language: LlamaLanguageModel, max_depth: int, tokenizer: ActionTokenizer,
                 relax_bins: torch.Tensor, greedy) -> None:
        self.language = language
        self.max_depth = max_depth
        self.tokenizer = tokenizer
        self.relax_bins = relax_bins
        self.greedy = greedy

    def __call__(self, root: torch.Tensor, tokens: torch.Tensor, parents: torch.Tensor, depths: torch.Tensor,
                 valid: torch.Tensor, length: torch.Tensor, emitted: torch.Tensor, finite_before: torch.Tensor,
                 cos: torch.Tensor, sin: torch.Tensor, keys: torch.Tensor, values: torch.Tensor
                 ) -> tuple[torch.Tensor, ...]:
        """root (0-d) sits at position `length` (0-d, the committed cache entries); `emitted` (0-d)
        tokens of the action are decided, the root included; finite_before (0-d bool): whether the
        logits read so far (the prefill's) were finite, so that one read reports both.

        Returns (read, bonus, pair_embeds, pair_features, target_tokens, accepted): `read` the one
        tensor the host reads (READ_*); bonus (0-d) the next root; pair_embeds / pair_features
        (max_depth + 1, H) the draft head's next catch-up pairs (root and path features, each with
        the following token's embedding; real for the first path length + 1 rows); the target's
        token at every row and the accepted mask, for traces.
        """
        tree = DraftTree(tokens=tokens, parents=parents, depths=depths, valid=valid)
        ids = torch.cat([root.view(1), tokens])
        logits, hidden = self.language.step_math(ids, length + tree.position_offsets(),
                                                 tree.attention_mask(self.max_depth), length, cos, sin, keys, values)
        return self.decide(ids, logits, hidden, tree, length, emitted, finite_before, keys, values)

    def decide(self, ids: torch.Tensor, logits: torch.Tensor, hidden: torch.Tensor, tree: DraftTree,
               length: torch.Tensor, emitted: torch.Tensor, finite_before: torch.Tensor, keys: torch.Tensor,
               values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Everything after the forward: ids, logits and hidden have a row for the root (row 0, at cache
        slot `length`) and one per node (slots length + 1 ...)."""
        depth = self.max_depth
        device = ids.device
        target = self.greedy(logits)
        dims = (emitted - 1 + tree.depths).clamp(max=N_ACTION_DIMS - 1)
        accepted = accept_relaxed(tree.tokens, target[tree.parent_rows()], self.relax_bins[dims],
                                  self.tokenizer) & tree.valid
        chain = deepest_accepted_chain(tree.parents, tree.depths, accepted, depth)  # deepest first, -1 padded
        bonus = target.index_select(0, chain[:1] + 1)[0]  # row 0, the root, when nothing was accepted

        # The path root's child first: reverse the chain's real entries into the front.
        places = torch.arange(depth, device=device)
        path_length = (chain >= 0).sum()
        path = torch.where(places < path_length, chain[(path_length - 1 - places).clamp(min=0)], -1)
        rows = torch.cat([torch.zeros_like(path[:1]), torch.where(path >= 0, path + 1, 0)])  # root, then path
        # Commit: the path's entries move right after the root's (past the path: garbage that the next
        # step overwrites; the host sets the cache length).
        slots = length + torch.arange(depth + 1, device=device)
        keys.index_copy_(2, slots, keys.index_select(2, length + rows))
        values.index_copy_(2, slots, values.index_select(2, length + rows))

        path_tokens = torch.where(path >= 0, ids[path + 1], -1)
        following = torch.where(torch.cat([places, places[-1:] + 1]) < path_length,
                                ids[torch.cat([rows[1:], rows[:1]])], bonus)
        finite = torch.isfinite(logits).all() & finite_before
        read = torch.cat([ids[:1], bonus.view(1), finite.long().view(1), path_length.view(1), path_tokens, path])
        return read, bonus, self.language.embed(following), hidden[rows], target, accepted


class PrefillVerifier(TreeVerifier):
    """Guesses known before the frame, verified inside the prefill forward itself (decoder.prefill_drafts).

    The guessed chains are appended after the prompt: each node sees the whole prompt, its
    ancestors and itself; positions continue from the prompt. The prompt's last position plays the
    root (its logits check the first guessed token, and its own id is not part of the action). A
    guess accepted to depth 6 gives the whole action, bonus included, in this one forward.
    """

    def __call__(self, prefix: torch.Tensor, tokens: torch.Tensor, parents: torch.Tensor, depths: torch.Tensor,
                 valid: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, keys: torch.Tensor,
                 values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """prefix (P, H): the prompt's input embeddings. Returns TreeVerifier's outputs (read[READ_ROOT]
        is meaningless here) and then the prompt's hidden states (P, H)."""
        tree = DraftTree(tokens=tokens, parents=parents, depths=depths, valid=valid)
        count, nodes = prefix.shape[0], tokens.shape[0]
        device = prefix.device
        prompt_rows = torch.arange(count, device=device)
        visible = prefill_visibility(prompt_rows, tree.attention_mask(self.max_depth), keys.shape[2])
        positions = torch.cat([prompt_rows, count - 1 + tree.depths])
        embeds = torch.cat([prefix, self.language.embed(tokens)])
        hidden = self.language.stack.layers_forward(embeds, positions, cos, sin, torch.arange(count + nodes, device=device),
                                                    visible, keys, values)
        tail = hidden[count - 1:]  # the root's row, then the nodes'
        root_id = torch.zeros(1, dtype=tokens.dtype, device=device)  # not a token of the action
        length = prompt_rows[-1]
        outputs = self.decide(torch.cat([root_id, tokens]), self.language.logits(tail), tail, tree, length,
                              torch.zeros_like(length), torch.ones((), dtype=torch.bool, device=device), keys, values)
        return (*outputs, hidden[:count])


def prefill_visibility(prompt_rows: torch.Tensor, tree_mask: torch.Tensor, capacity: int) -> torch.Tensor:
    """(prompt + nodes, capacity) bool for a prompt with a tree appended: the prompt is causal; each
    node sees the prompt before its last position, then [root = the prompt's last position, nodes]
    as tree_mask ((nodes + 1, nodes + 1), core/draft_tree.DraftTree.attention_mask) says."""
    count, nodes = prompt_rows.shape[0], tree_mask.shape[0] - 1
    columns = torch.arange(capacity, device=prompt_rows.device)
    relative = columns - (count - 1)
    in_tree = (relative >= 0) & (relative <= nodes)
    node_visible = (columns < count - 1)[None, :] | (tree_mask[1:][:, relative.clamp(0, nodes)] & in_tree[None, :])
    return torch.cat([columns[None, :] <= prompt_rows[:, None], node_visible])
