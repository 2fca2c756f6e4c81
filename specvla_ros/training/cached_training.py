"""Draft-head training from a feature cache, in one process or in many under torchrun (DDP).

Why DDP and not FSDP: the trained part is the head alone, one decoder layer plus its fc: about
0.24 B parameters at OpenVLA-7B's hidden size 4096, under 4 GB in fp32 with AdamW's two moments
and the gradients. Every GPU holds a full replica with room to spare, so sharding parameters,
gradients and optimizer state (FSDP / ZeRO) would add an all-gather per layer per step and save
memory the run does not need. The 7B target is frozen: it is never trained, only read for its
embedding table and LM head (shared with the head) and for the held-out evaluation. DDP's single
all-reduce of the head's gradients per step is the least communication data parallelism can do.

A run is defined by its global step, never by its world size: step s trains on a fixed global batch
of `batch_size` cached frames (epoch permutations seeded by `seed`), rank r takes its contiguous
slice, each frame's feature noise comes from a generator seeded by its place in the run, and DDP
averages the gradients, so every rank applies the global batch's mean gradient. One rank and N ranks
take the same steps up to the order of float sums, and a run saved by N ranks resumes on M.
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from specvla_ros.core.backbone import Backbone
from specvla_ros.core.config import DecoderConfig
from specvla_ros.core.decoder import build_decoder
from specvla_ros.core.draft_head import DraftHead
from specvla_ros.core.errors import ConfigError
from specvla_ros.training.distributed import Workers
from specvla_ros.training.draft_trainer import freeze_shared, pair_loss
from specvla_ros.training.feature_cache import FeatureCache


@dataclass
class DraftTrainConfig:
    """The optimisation, independent of how many ranks run it."""

    steps: int = 2000
    batch_size: int = 4          # frames per optimizer step, over all ranks together
    lr: float = 3e-3
    seed: int = 0
    noise: float = 0.2           # uniform feature noise (EAGLE)
    feature_weight: float = 1.0
    token_weight: float = 0.1


def sample_seed(seed: int, position: int) -> int:
    """The noise seed of the `position`-th frame the run trains on (the same on any rank)."""
    return int(np.random.SeedSequence([seed, position]).generate_state(1)[0])


class CachedDraftTrainer:
    """AdamW over the head's weights, one global batch per `step`, gradients averaged over ranks."""

    def __init__(self, head: DraftHead, cache: FeatureCache, config: DraftTrainConfig, workers: Workers) -> None:
        if config.batch_size < 1 or config.batch_size % workers.world_size:
            raise ConfigError(f"--batch-size {config.batch_size} must be a positive multiple of the number of "
                              f"ranks ({workers.world_size}): it is the global batch, split evenly between them")
        if len(cache) < 1:
            raise ConfigError(f"{cache.folder} holds no training frames")
        self.head, self.cache, self.config, self.workers = head, cache, config, workers
        freeze_shared(head)
        self.model = head
        if workers.distributed:
            device_ids = [head.fc.weight.device.index] if head.fc.weight.is_cuda else None
            self.model = DistributedDataParallel(head, device_ids=device_ids)
        self.optimizer = torch.optim.AdamW(head.parameters(), lr=config.lr, weight_decay=0.0)
        self._permutations: dict[int, np.ndarray] = {}

    def batch_frames(self, step: int) -> list[int]:
        """Cache frames of global step `step`: consecutive runs through seeded permutations."""
        frames, chosen = len(self.cache), []
        for position in range(step * self.config.batch_size, (step + 1) * self.config.batch_size):
            epoch, offset = divmod(position, frames)
            if epoch not in self._permutations:
                self._permutations = {epoch: np.random.default_rng([self.config.seed, epoch]).permutation(frames)}
            chosen.append(int(self._permutations[epoch][offset]))
        return chosen

    def step(self, step: int) -> float:
        """One optimizer step on the global batch of `step`; returns its mean loss (over all ranks)."""
        config, workers = self.config, self.workers
        share = config.batch_size // workers.world_size
        first = step * config.batch_size + workers.rank * share
        frames = self.batch_frames(step)[workers.rank * share: (workers.rank + 1) * share]
        weight = self.head.fc.weight
        self.head.train()
        self.optimizer.zero_grad()
        total = 0.0
        for k, frame in enumerate(frames):
            sequence = self.cache.frame(frame).sequence(self.head.lm_head, weight.device, weight.dtype)
            generator = torch.Generator().manual_seed(sample_seed(config.seed, first + k))
            last = k == len(frames) - 1
            with nullcontext() if last or not workers.distributed else self.model.no_sync():
                loss = pair_loss(self.model, self.head.lm_head, sequence, config.noise, config.feature_weight,
                                 config.token_weight, generator) / share
                loss.backward()  # DDP all-reduces (averages over ranks) on the last frame's backward
            total += loss.item()
        self.optimizer.step()
        self.head.eval()
        (summed,) = workers.sum([total])
        return summed / workers.world_size


def held_out_acceptance(target: Backbone, head: DraftHead, images: list[np.ndarray], instructions: list[str],
                        relax_values: list[int], workers: Workers) -> dict[str, float]:
    """Mean acceptance length over the held-out frames at each r, the frames split over the ranks."""
    row = {}
    for relax in relax_values:
        decoder = build_decoder(target, head, DecoderConfig(relax_bins=relax))
        mine = range(workers.rank, len(images), workers.world_size)
        local = sum(decoder.decode(images[i], instructions[i]).stats.mean_acceptance_length for i in mine)
        total, count = workers.sum([float(local), float(len(mine))])
        row[f"acceptance_length_r{relax}"] = total / count if count else float("nan")
    return row
