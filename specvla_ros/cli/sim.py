"""The simulation verbs: `specvla sim-eval`, `specvla sim-demos` and `specvla sim-docs-images`.

sim-eval measures a policy's success rate in the MuJoCo tabletop. In process, the harness
(specvla_ros.sim.harness) calls the decoder directly; through ROS (`--through-ros`), the same
episodes run as specvla_node + sim bridge over real DDS topics in lockstep. Both write the same
results.json / results.md.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from specvla_ros.cli.arguments import DECODER_MODES, SIM_TASKS, add_model_arguments

if TYPE_CHECKING:
    from specvla_ros.sim.scene import SceneConfig


def _add_image_size(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument("--image-size", type=int, nargs=2, default=(224, 224), metavar=("H", "W"), help=help_text)


def _add_sim_eval_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--policy", choices=("decoder", "expert"), default="decoder",
                        help="decoder: the VLA (default); expert: the scripted expert (privileged state)")
    add_model_arguments(parser)
    parser.add_argument("--mode", choices=DECODER_MODES, default="speculative")
    parser.add_argument("--temporal-draft", choices=("off", "both", "only"), default="off",
                        help="temporal drafting (guesses from the previous actions of the episode): off (default), "
                        "both = beside the draft head, only = temporal branches alone (no draft head)")
    parser.add_argument("--prefill-drafts", action="store_true",
                        help="with --temporal-draft: verify the guesses inside the prefill (decoder.prefill_drafts)")
    parser.add_argument("--datastore", default="", help="with --temporal-draft: also retrieval guesses from this "
                        "datastore (temporal_draft.datastore)")
    parser.add_argument("--episodes", type=int, default=5, help="episodes per task (seeds SEED..SEED+N-1)")
    parser.add_argument("--tasks", nargs="+", default=list(SIM_TASKS), choices=list(SIM_TASKS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-steps", type=int, default=None, help="override each task's step budget")
    parser.add_argument("--through-ros", action="store_true",
                        help="run through specvla_node and the sim bridge over DDS instead of in process")
    parser.add_argument("--gif-episodes", type=int, default=0, help="in process: save the first N episodes as GIFs")
    _add_image_size(parser, "in process: camera image size (default 224 224)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")


def run_sim_eval(args: argparse.Namespace) -> int:
    from specvla_ros.core.config import DecoderConfig, relax_setting
    from specvla_ros.core.loading import load_decoder
    from specvla_ros.core.temporal_draft import TemporalDraftConfig
    from specvla_ros.models import model_pair
    from specvla_ros.sim.env import EnvConfig, TabletopEnv
    from specvla_ros.sim.expert import ExpertPolicy
    from specvla_ros.sim.harness import evaluate, report_and_print
    from specvla_ros.sim.policy import DecoderPolicy

    started = time.perf_counter()
    relax = relax_setting(args.relax_bins)
    decoder = None
    label = "scripted expert"
    if args.policy == "decoder":
        pair = model_pair(args.model, args.draft, log=lambda line: print(line, file=sys.stderr))
        args.model, args.draft = pair.target_path, pair.draft_path
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
        # Observations carry no image; the harness renders only for policies that want images (and for
        # GIF episodes), so the privileged expert runs at physics speed.
        with TabletopEnv(EnvConfig(scene=_scene(args.image_size), render=False, max_steps=args.max_steps)) as env:
            policy = ExpertPolicy(env) if decoder is None else DecoderPolicy(decoder)
            records = evaluate(policy, env, args.tasks, args.episodes, seed=args.seed,
                               gif_dir=args.out / "gifs", gif_episodes=args.gif_episodes,
                               log=lambda message: print(message, file=sys.stderr))
    meta = {
        "policy": label, "model": str(args.model) if decoder else None, "through_ros": args.through_ros,
        "episodes_per_task": args.episodes, "tasks": args.tasks, "seed": args.seed,
        "wall_s": round(time.perf_counter() - started, 2),
    }
    if not args.through_ros:
        meta["image_size"] = list(args.image_size)
    report_and_print(records, meta, args.out)
    return 0


def _scene(image_size: tuple[int, int]) -> SceneConfig:
    """The default scene with the camera at image_size (H, W)."""
    from specvla_ros.sim.scene import CameraConfig, SceneConfig

    return SceneConfig(camera=replace(CameraConfig(), height=image_size[0], width=image_size[1]))


def _add_sim_demos_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tasks", nargs="+", default=list(SIM_TASKS), choices=list(SIM_TASKS))
    parser.add_argument("--episodes", type=int, default=10, help="episodes per task")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first episode of every task")
    parser.add_argument("--out", type=Path, required=True)
    _add_image_size(parser, "camera image size (default 224 224)")
    parser.add_argument("--action-noise", type=float, default=0.0, help="expert translation noise (fraction of limit)")
    parser.add_argument("--keep-failures", action="store_true", help="also save episodes the expert failed")
    parser.add_argument("--policy", type=Path, default=None,
                        help="tiny VLA checkpoint that drives the robot (DAgger); the expert still labels every step")
    parser.add_argument("--expert-share", type=float, default=0.3,
                        help="with --policy: probability that a step is executed by the expert instead")
    parser.add_argument("--relabel", type=Path, nargs="+", default=None, metavar="DIR",
                        help="instead of simulating: rewrite these folders' actions with the current expert into --out")


def run_sim_demos(args: argparse.Namespace) -> int:
    import numpy as np

    from specvla_ros.sim.demos import generate_demos, relabel_demos
    from specvla_ros.sim.env import EnvConfig
    from specvla_ros.sim.expert import ExpertConfig

    if args.relabel is not None:
        paths = relabel_demos(args.relabel, args.out)
        print(f"relabelled {len(paths)} episodes into {args.out}", file=sys.stderr)
        return 0
    actor = None
    if args.policy is not None:
        from specvla_ros.core.config import DecoderConfig
        from specvla_ros.core.loading import load_decoder

        decoder = load_decoder(args.policy, None, DecoderConfig(mode="autoregressive"))

        def actor(image: np.ndarray, instruction: str) -> np.ndarray:
            return decoder.decode(image, instruction).action
    paths = generate_demos(
        args.out, args.tasks, args.episodes, args.seed,
        env_config=EnvConfig(scene=_scene(args.image_size)),
        expert_config=ExpertConfig(action_noise=args.action_noise),
        keep_failures=args.keep_failures,
        actor=actor,
        expert_share=args.expert_share,
    )
    print(f"wrote {len(paths)} episodes to {args.out}", file=sys.stderr)
    return 0


def run_sim_docs_images(args: argparse.Namespace) -> int:
    from specvla_ros.sim.docs_assets import write_assets

    for path in write_assets(args.out, args.seed):
        print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")
    return 0


def register(verbs: argparse._SubParsersAction) -> None:
    sim_eval = verbs.add_parser(
        "sim-eval", help="success rate of a policy in the simulated tabletop (in process or through ROS)",
        description="Run N seeded episodes per task with the VLA (AR or Spec-VLA at a chosen r) or the "
                    "scripted expert; write results.json and results.md (success rate with 95%% CI, "
                    "episode length, decode latency, acceptance length).")
    _add_sim_eval_arguments(sim_eval)
    sim_eval.set_defaults(run=run_sim_eval)

    sim_demos = verbs.add_parser(
        "sim-demos", help="record demonstrations in the simulated tabletop (expert, DAgger, relabelling)",
        description="Write one .npz per episode (images, actions, proprio, privileged state) and a manifest.json: "
                    "the scripted expert's demonstrations; with --policy, DAgger corrections (a tiny VLA drives, "
                    "the expert labels every step); with --relabel, existing episodes' actions rewritten by the "
                    "current expert. train-vla and train-draft read these folders.")
    _add_sim_demos_arguments(sim_demos)
    sim_demos.set_defaults(run=run_sim_demos)

    docs_images = verbs.add_parser(
        "sim-docs-images", help="regenerate the simulator images of the docs (a still frame and an expert GIF)",
        description="Write sim_frame.png (the reset view) and sim_episode.gif (one expert episode of each task, "
                    "strung together) into --out, as shown in docs/simulation.md.")
    docs_images.add_argument("--out", type=Path, default=Path("docs/img"), help="folder (default docs/img)")
    docs_images.add_argument("--seed", type=int, default=3, help="scene seed (default 3)")
    docs_images.set_defaults(run=run_sim_docs_images)
