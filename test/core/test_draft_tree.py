"""The EAGLE-2 dynamic tree: ancestor masks, depth positions, closure, sizes, chain mode."""
from __future__ import annotations

import pytest
import torch

from specvla_ros.core.config import TreeConfig
from specvla_ros.core.draft_tree import DraftTree, TreeDrafter, TreeLayout
from test.models import make_pair, observations


def _tree(config: TreeConfig, max_depth: int = 6, seed: int = 0) -> DraftTree:
    target, head = make_pair(seed)
    image, text = observations(seed, 1)[0]
    with torch.inference_mode():
        prefill = target.prefill(image, text)
        root = prefill.logits_last.argmax()[None]
        cache = head.new_cache(prefill.prefix_len + 128)
        layout = TreeLayout.of(config, target.action_tokenizer, draft_head=True, chains=0)
        drafter = TreeDrafter(head, layout, config, target.action_tokenizer)
        cos, sin = head.stack.rotary_tables(cache.keys)
        fields = drafter(torch.cat([prefill.next_embeds, target.embed_tokens(root)]), prefill.hidden,
                         torch.tensor(prefill.prefix_len), torch.tensor(0), torch.tensor(0), torch.tensor(max_depth),
                         cos, sin, cache.keys, cache.values)
        tree = DraftTree(*fields)
        return DraftTree(*(field[tree.valid] for field in fields)) if not bool(tree.valid.all()) else tree


def _ancestors(tree: DraftTree, node: int) -> set[int]:
    found, parent = set(), int(tree.parents[node])
    while parent >= 0:
        found.add(parent)
        parent = int(tree.parents[parent])
    return found


@pytest.mark.parametrize("config", [TreeConfig(top_k=3, depth=4, total_tokens=20), TreeConfig(top_k=8, depth=2),
                                    TreeConfig(top_k=2, depth=6, total_tokens=9), TreeConfig(top_k=5, depth=5)])
def test_each_node_attends_exactly_to_its_ancestors_root_and_itself(config) -> None:
    tree = _tree(config)
    mask = tree.attention_mask(6)
    for node in range(len(tree)):
        expected = {0, node + 1} | {a + 1 for a in _ancestors(tree, node)}
        assert set(torch.nonzero(mask[node + 1]).flatten().tolist()) == expected
    assert mask[0].tolist() == [True] + [False] * len(tree)   # the root sees only itself (and the prefix)
    offsets = tree.position_offsets()
    assert offsets[0] == 0
    for node in range(len(tree)):
        assert offsets[node + 1] == len(_ancestors(tree, node)) + 1  # position = depth


@pytest.mark.parametrize("top_k, depth, total", [(4, 4, 10), (8, 3, 50), (3, 6, 100)])
def test_sizes_closure_and_depth_limit(top_k, depth, total) -> None:
    tree = _tree(TreeConfig(top_k=top_k, depth=depth, total_tokens=total), max_depth=depth)
    assert len(tree) <= min(total, top_k + (depth - 1) * top_k * top_k)
    assert int(tree.depths.max()) <= depth
    for node in range(len(tree)):
        parent = int(tree.parents[node])
        assert parent < node  # parents precede children (so the set is ancestor-closed)
        if parent >= 0:
            assert tree.depths[node] == tree.depths[parent] + 1
    assert int(_tree(TreeConfig(top_k=4, depth=6), max_depth=2).depths.max()) <= 2  # tokens still needed


def test_chain_mode_is_a_single_path() -> None:
    tree = _tree(TreeConfig(chain=True, depth=5))
    assert tree.depths.tolist() == [1, 2, 3, 4, 5]
    assert tree.parents.tolist() == [-1, 0, 1, 2, 3]


def test_drafts_restricted_to_action_tokens() -> None:
    target, _ = make_pair(0)
    first = target.action_tokenizer.first_action_token
    assert bool((_tree(TreeConfig(top_k=6, depth=3)).tokens >= first).all())
    free = _tree(TreeConfig(top_k=6, depth=3, restrict_to_action_tokens=False))
    assert len(free) > 0  # unrestricted drafting runs; it may propose any token
