"""The LIBERO verbs: `specvla libero-eval` and `specvla libero-install` (the optional LIBERO venv)."""
from __future__ import annotations

import argparse
from pathlib import Path

from specvla_ros.cli.arguments import DECODER_MODES, add_model_arguments, lazy_run
from specvla_ros.libero.install import default_config_dir
from specvla_ros.libero.suites import EPISODES_PER_TASK, MAX_STEPS, SUITES


def _add_libero_eval_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--suite", choices=SUITES, default="libero_spatial", help="task suite (default libero_spatial)")
    parser.add_argument("--task", nargs="+", default=["0"], metavar="TASK",
                        help="task index in the suite (0..9; libero_90: 0..89), task name or instruction; "
                        "several allowed; 'all' = every task (default 0)")
    parser.add_argument("--episodes", type=int, default=5,
                        help=f"episodes per task: initial states FIRST..FIRST+N-1 (at most {EPISODES_PER_TASK})")
    parser.add_argument("--first-episode", type=int, default=0, metavar="FIRST", help="first initial state (default 0)")
    add_model_arguments(parser)
    parser.add_argument("--mode", choices=DECODER_MODES, default="speculative")
    parser.add_argument("--device", default="cpu", help="torch device (cuda for OpenVLA-7B)")
    parser.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32",
                        help="bfloat16 on CUDA for OpenVLA-7B")
    parser.add_argument("--center-crop", choices=("auto", "on", "off"), default="auto",
                        help="OpenVLA: centre crop before resizing (on for LIBERO fine-tunes; auto: the checkpoint's "
                        "config.json decides)")
    parser.add_argument("--unnorm-key", default="",
                        help="action statistics key (default: the only one, else SUITE or SUITE_no_noops)")
    parser.add_argument("--max-steps", type=int, default=None,
                        help="policy steps per episode (default: the paper's limit, " +
                        ", ".join(f"{s} {n}" for s, n in MAX_STEPS.items()) + ")")
    parser.add_argument("--step-timeout", type=float, default=30.0,
                        help="seconds the sim waits for the node's command before stepping with zero motion")
    parser.add_argument("--out", type=Path, required=True, help="output folder for results.json / results.md")


def run_libero_install(args: argparse.Namespace) -> int:
    from specvla_ros.libero.errors import LiberoSetupError
    from specvla_ros.libero.install import install, libero_package_dir

    try:
        config = install(args.config_dir.resolve())
    except LiberoSetupError as error:  # one line that says what to do, as libero-eval's
        raise SystemExit(f"specvla libero-install: {error}") from None
    print(f"LIBERO config written to {config}; assets linked at {libero_package_dir() / 'assets'}")
    return 0


def register(verbs: argparse._SubParsersAction) -> None:
    libero_eval = verbs.add_parser(
        "libero-eval", help="success rate on LIBERO, the paper's benchmark, through specvla_node (make setup-libero)",
        description="Run N episodes of LIBERO tasks (fixed initial states, the paper's step limits) with the policy "
                    "in specvla_node over DDS, in lockstep; write results.json and results.md. Needs the optional "
                    "LIBERO venv: `make setup-libero`, then `.venv-libero/bin/specvla libero-eval ...` "
                    "(docs/libero.md). Without --model it runs the embedded tabletop pair, which only checks the "
                    "pipeline (it was not trained on LIBERO).")
    _add_libero_eval_arguments(libero_eval)
    libero_eval.set_defaults(run=lazy_run("specvla_ros.ros.libero_eval", "run"))

    libero_install = verbs.add_parser(
        "libero-install", help="finish a LIBERO install: its config.yaml and assets folder (run by make setup-libero)",
        description="Write LIBERO's config.yaml (else its first import asks questions on stdin) and link the asset "
                    "wheels' folder tree in as libero/libero/assets.")
    libero_install.add_argument("--config-dir", type=Path, default=default_config_dir(),
                                help="folder for config.yaml (LIBERO_CONFIG_PATH; default: <venv>/libero)")
    libero_install.set_defaults(run=run_libero_install)
