"""The `specvla train-vla` command: demonstrations in, checkpoint + report out (draft heads: draft_runs.py).

Heavy imports (torch, the simulator) happen inside the run functions so `specvla --help` stays fast.
"""
from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path


def add_train_vla_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--demos", type=Path, nargs="+", required=True,
                        help="folder(s) of simulation demonstrations (*.npz), e.g. expert demos and DAgger corrections")
    parser.add_argument("--out", type=Path, required=True, help="checkpoint folder to write")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--patch-size", type=int, default=8)
    parser.add_argument("--hidden-size", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--vision-layers", type=int, default=1)
    parser.add_argument("--vision-stem", choices=("patch", "film"), default="patch",
                        help="patch: one linear map per patch (default); "
                             "film: an instruction-conditioned CNN with keypoint tokens")
    parser.add_argument("--label-sigma", type=float, default=1.5,
                        help="width in bins of the soft target over neighbouring bins (0 = one-hot)")
    parser.add_argument("--shift", type=int, default=2, help="random image shift augmentation, model pixels")
    parser.add_argument("--stop-at", type=int, default=None,
                        help="end the run at this step while the learning-rate schedule still spans --steps "
                             "(e.g. to hand over to a new data mix, as in DAgger); --resume can continue it")
    parser.add_argument("--state-loss", type=float, default=0.0,
                        help="weight of the auxiliary loss that regresses object positions from the simulator's "
                             "state (training only; demonstrations carry it)")
    parser.add_argument("--input-noise", type=float, default=0.0,
                        help="std (bins) of noise on the teacher-forced action-token inputs; targets stay exact")
    parser.add_argument("--max-episodes", type=int, default=None)
    parser.add_argument("--resume", action="store_true",
                        help="continue the run saved in --out (weights, optimizer, step) up to --steps")
    parser.add_argument("--init-from", type=Path, default=None,
                        help="start from this checkpoint's weights and sizes (a new run: fresh optimizer and "
                             "schedule; its action statistics are kept)")


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
