"""`specvla build-datastore`: a retrieval datastore (core/retrieval_draft.py) from demonstrations or bags.

    specvla build-datastore --data DEMOS_DIR [DEMOS_DIR ...] --target MODEL_DIR --out datastore.safetensors
    specvla build-datastore --data BAG --out datastore.safetensors   # a bag with the node's decode stats

Demonstrations (`specvla sim-demos` folders of .npz episodes) hold continuous actions:
they are normalized with the target's action statistics and binned with its tokenizer, exactly as
the target's own actions would be. Bags hold the tokens the node decoded (DecodeStats.token_ids);
an episode ends at each message on the task topic (when the bag has one) and where the stream
pauses (--episode-gap-s).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from specvla_ros.core.action_tokenizer import ActionTokenizer
from specvla_ros.core.errors import InputError
from specvla_ros.core.retrieval_draft import ActionDatastore


def demo_episode_bins(folders: list[Path], norm_stats: dict, unnorm_key: str | None,
                      tokenizer: ActionTokenizer) -> list[np.ndarray]:
    """Every demonstration episode's actions as (T, 7) bins, in file order."""
    from specvla_ros.core.action_tokenizer import NormStats
    from specvla_ros.training.datasets import normalize_actions

    key = unnorm_key or next(iter(norm_stats), None)
    NormStats.from_checkpoint(norm_stats, key)  # the same checks the decoder makes
    paths = [path for folder in folders for path in sorted(Path(folder).glob("*.npz"))]
    if not paths:
        raise InputError(f"no demonstrations (*.npz) in {', '.join(map(str, folders))}: generate them with "
                         "`specvla sim-demos --out DIR`")
    episodes = []
    for path in paths:
        with np.load(path, allow_pickle=False) as data:
            if "actions" not in data.files:
                raise InputError(f"{path} holds no 'actions': not a demonstration episode")
            normalized = normalize_actions(data["actions"].astype(np.float64), {key: norm_stats[key]})
        episodes.append(tokenizer.token_to_bin(tokenizer.encode(normalized)))
    return episodes


def bag_episode_bins(bag: Path, topic: str, task_topic: str, gap_s: float, tokenizer: ActionTokenizer
                     ) -> list[np.ndarray]:
    """The node's decoded actions in a bag as episodes of (T, 7) bins, split at task messages and
    where the stream pauses."""
    from specvla_ros.bags import bag_topics, read_messages

    topics = {topic: ("specvla_ros/msg/DecodeStats",)}
    if task_topic in bag_topics(bag):
        topics[task_topic] = ("std_msgs/msg/String",)
    episodes: list[list[np.ndarray]] = []
    last_ns, new_episode = None, True
    for message, decoded in read_messages(bag, topics):
        if message.topic == task_topic:
            new_episode = True
            continue
        if new_episode or message.time_ns - last_ns > gap_s * 1e9:
            episodes.append([])
            new_episode = False
        episodes[-1].append(tokenizer.token_to_bin(np.asarray(decoded.token_ids)))
        last_ns = message.time_ns
    if not episodes:
        raise InputError(f"{bag} has no {topic} messages: record the node with `specvla bag-record`")
    return [np.stack(episode) for episode in episodes]


def run_build_datastore(args: argparse.Namespace) -> int:
    bags = [path for path in args.data if (path / "metadata.yaml").is_file() or path.suffix in (".db3", ".mcap")]
    if bags:
        if len(args.data) != 1:
            raise InputError("give one bag, or demonstration folders, not both")
        vocab = 32000
        if args.target is not None:
            from specvla_ros.core.loading import load_backbone

            vocab = load_backbone(args.target).action_tokenizer.vocab_size
        episodes = bag_episode_bins(bags[0], args.topic, args.task_topic, args.episode_gap_s, ActionTokenizer(vocab))
    else:
        if args.target is None:
            raise InputError("demonstrations need --target: its action statistics turn actions into bins")
        from specvla_ros.core.loading import load_backbone

        target = load_backbone(args.target)
        episodes = demo_episode_bins(args.data, target.norm_stats, args.unnorm_key, target.action_tokenizer)
    datastore = ActionDatastore.from_episodes(episodes)
    path = datastore.save(args.out)
    print(f"{path}: {len(datastore)} actions from {len(episodes)} episodes ({path.stat().st_size // 1024} kB)")
    return 0
