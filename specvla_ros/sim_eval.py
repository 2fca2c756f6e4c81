"""`specvla sim-eval`: success rate of a policy in the MuJoCo tabletop, in process or through ROS.

In process, the decoder is called directly by the harness (`specvla_ros.sim.harness`). Through
ROS (`--through-ros`), the same episodes run as specvla_node + sim bridge over real DDS topics
in lockstep. Both write the same results.json / results.md.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

TASKS = ("pick", "push", "place")  # specvla_ros.sim.tasks.TASKS; not imported here to keep --help fast


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--policy", choices=("decoder", "expert"), default="decoder",
                        help="decoder: the VLA (default); expert: the scripted expert (privileged state)")
    parser.add_argument("--model", type=Path, help="target checkpoint folder (default: the embedded model)")
    parser.add_argument("--draft", type=Path, help="draft head checkpoint folder (default: the embedded one)")
    parser.add_argument("--mode", choices=("speculative", "autoregressive"), default="speculative")
    parser.add_argument("--relax-bins", type=int, nargs="+", default=[0], metavar="R",
                        help="relaxation threshold: one value or 7 (per dimension)")
    parser.add_argument("--temporal-draft", choices=("off", "both", "only"), default="off",
                        help="temporal drafting (guesses from the previous actions of the episode): off (default), "
                        "both = beside the draft head, only = temporal branches alone (no draft head)")
    parser.add_argument("--prefill-drafts", action="store_true",
                        help="with --temporal-draft: verify the guesses inside the prefill (decoder.prefill_drafts)")
    parser.add_argument("--datastore", default="", help="with --temporal-draft: also retrieval guesses from this "
                        "datastore (temporal_draft.datastore)")
    parser.add_argument("--episodes", type=int, default=5, help="episodes per task (seeds SEED..SEED+N-1)")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-steps", type=int, default=None, help="override each task's step budget")
    parser.add_argument("--through-ros", action="store_true",
                        help="run through specvla_node and the sim bridge over DDS instead of in process")
    parser.add_argument("--gif-episodes", type=int, default=0, help="in process: save the first N episodes as GIFs")
    parser.add_argument("--out", type=Path, required=True, help="output folder")


class DecoderPolicy:
    """The decoder as a harness policy; `reset()` (called at every episode start) clears its temporal history."""

    def __init__(self, decoder) -> None:
        self.decoder = decoder

    def __call__(self, image, instruction: str):
        return self.decoder.decode(image, instruction)

    def reset(self) -> None:
        self.decoder.reset()


def run(args: argparse.Namespace) -> int:
    from specvla_ros.core.config import DecoderConfig
    from specvla_ros.core.loading import load_decoder
    from specvla_ros.core.temporal_draft import TemporalDraftConfig
    from specvla_ros.embedded_model import embedded_model
    from specvla_ros.sim.env import EnvConfig, TabletopEnv
    from specvla_ros.sim.expert import ExpertPolicy
    from specvla_ros.sim.harness import evaluate, report_and_print

    started = time.perf_counter()
    relax = args.relax_bins[0] if len(args.relax_bins) == 1 else tuple(args.relax_bins)
    decoder = None
    label = "scripted expert"
    if args.policy == "decoder":
        if args.model is None:
            model = embedded_model()
            args.model, args.draft = model.target_path, model.draft_path
            print(f"model: {model.description}", file=sys.stderr)
        temporal = TemporalDraftConfig(enabled=args.temporal_draft != "off", draft_head=args.temporal_draft != "only",
                                       datastore=args.datastore)
        config = DecoderConfig(mode=args.mode, relax_bins=relax, temporal=temporal, prefill_drafts=args.prefill_drafts)
        decoder = load_decoder(args.model, args.draft if config.uses_draft_head else None, config)
        label = f"{args.mode} r={list(config.relax_bins) if isinstance(relax, tuple) else relax}"
        if args.mode == "speculative" and temporal.enabled:
            label += f", temporal drafts ({args.temporal_draft})"
            label += ", verified in the prefill" if args.prefill_drafts else ""
            label += f", retrieval from {args.datastore}" if args.datastore else ""

    if args.through_ros:
        if decoder is None:
            raise SystemExit("--through-ros evaluates the decoder; the expert runs in process only")
        from specvla_ros.ros.closed_loop import run_closed_loop

        result = run_closed_loop(
            decoder, args.tasks, args.episodes, seed=args.seed,
            node_parameters={"decoder.mode": args.mode, "decoder.relax_bins": list(args.relax_bins),
                             "temporal_draft.enabled": args.temporal_draft != "off",
                             "temporal_draft.draft_head": args.temporal_draft != "only",
                             "decoder.prefill_drafts": args.prefill_drafts,
                             "temporal_draft.datastore": args.datastore},
            bridge_parameters={"max_steps": args.max_steps or 0}, timeout_s=24 * 3600.0)
        records = result.records
    else:
        with TabletopEnv(EnvConfig(render=False, max_steps=args.max_steps)) as env:
            policy = ExpertPolicy(env) if decoder is None else DecoderPolicy(decoder)
            records = evaluate(policy, env, args.tasks, args.episodes, seed=args.seed,
                               gif_dir=args.out / "gifs", gif_episodes=args.gif_episodes,
                               log=lambda message: print(message, file=sys.stderr))
    meta = {
        "policy": label, "model": str(args.model) if decoder else None, "through_ros": args.through_ros,
        "episodes_per_task": args.episodes, "tasks": args.tasks, "seed": args.seed,
        "wall_s": round(time.perf_counter() - started, 2),
    }
    report_and_print(records, meta, args.out)
    return 0
