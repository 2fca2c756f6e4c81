"""The `specvla train-vla` command: demonstrations in, checkpoint + report out (draft heads: draft_runs.py).

Its arguments are defined in specvla_ros/cli/training.py.
"""
from __future__ import annotations

import argparse
import platform
import time


def run_train_vla(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from specvla_ros.core.tiny.config import TinyVLAConfig
    from specvla_ros.core.tiny.model import TinyVLA
    from specvla_ros.core.tiny.tokenizer import PIECE_OFFSET, prompt_pieces
    from specvla_ros.training.checkpointing import TrainingState, save_training_state
    from specvla_ros.training.datasets import action_norm_stats, load_demo_folder
    from specvla_ros.training.report import write_report
    from specvla_ros.training.vla_trainer import VLATrainConfig, train_vla

    started = time.monotonic()
    data = load_demo_folder(args.demos, args.max_episodes)
    stats = action_norm_stats(data.actions, "tabletop")
    if args.resume or args.init_from:
        model = TinyVLA.load(args.out if args.resume else args.init_from)
        config = model.config
    else:
        pieces = prompt_pieces(sorted(set(data.instructions)))  # the data's words become single tokens
        n_bins = 256
        config = TinyVLAConfig(image_size=args.image_size, patch_size=args.patch_size, vision_dim=args.hidden_size,
                               vision_layers=args.vision_layers, hidden_size=args.hidden_size,
                               intermediate_size=3 * args.hidden_size, num_layers=args.layers, num_heads=4,
                               num_kv_heads=4, init_std=0.02, text_pieces=pieces, n_action_bins=n_bins,
                               vocab_size=max(640, PIECE_OFFSET + len(pieces) + n_bins),
                               vision_stem=args.vision_stem)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(args.seed)
            model = TinyVLA(config, stats)
    print(f"{len(data)} frames from {int(data.episode_index.max()) + 1} episodes; "
          f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters")
    train_config = VLATrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                                  label_sigma_bins=args.label_sigma, shift_pixels=args.shift,
                                  input_noise_bins=args.input_noise, state_loss_weight=args.state_loss,
                                  stop_at=args.stop_at)

    def save(optimizer: torch.optim.Optimizer, state: TrainingState) -> None:
        model.save(args.out)
        save_training_state(args.out, optimizer, state)

    losses = train_vla(model, data, train_config, checkpoint=save, resume_from=args.out if args.resume else None)
    report = {"command": "train-vla", "demos": [str(folder) for folder in args.demos], "frames": len(data),
              "episodes": int(data.episode_index.max()) + 1, "config": config.to_dict(),
              "train": vars(train_config), "wall_s": round(time.monotonic() - started, 1),
              "machine": platform.processor() or platform.machine(), "threads": torch.get_num_threads()}
    write_report(args.out, report, losses, title="tiny VLA: action-token cross-entropy")
    print(f"wrote {args.out} (final loss {np.mean(losses[-50:]):.3f}, {report['wall_s']} s)")
    return 0
