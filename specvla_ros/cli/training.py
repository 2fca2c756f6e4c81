"""The training verbs: `specvla train-vla`, `extract-features`, `train-draft` and `build-datastore`.

The parsers only; the commands run in specvla_ros.training (runs.py, draft_runs.py, datastore.py),
imported when the verb runs.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from specvla_ros.cli.arguments import lazy_run
from specvla_ros.ros.topics import CAMERA_TOPIC, DECODE_STATS_TOPIC, TASK_TOPIC


def _add_source_arguments(parser: argparse.ArgumentParser, required: bool) -> None:
    parser.add_argument("--target", type=Path, required=required, help="target VLA checkpoint folder")
    parser.add_argument("--data", "--demos", dest="data", type=Path, required=required,
                        help="observations: simulation demonstrations (*.npz folder), an image folder with "
                             "manifest.json/.csv, a rosbag2 bag (folder or .mcap/.db3) or a local LeRobot "
                             "dataset folder (meta/info.json)")
    parser.add_argument("--camera-topic", default=CAMERA_TOPIC, help="camera topic, for bags")
    parser.add_argument("--task-topic", default=TASK_TOPIC, help="task (std_msgs/String) topic, for bags")
    parser.add_argument("--camera-key", default=None,
                        help="camera feature of a LeRobot dataset, e.g. observation.images.image (default: its "
                             "first camera)")
    parser.add_argument("--held-out", type=int, default=40, help="observations kept out for evaluation")
    parser.add_argument("--seed", type=int, default=0, help="picks the frames; seeds the head and the batches")
    parser.add_argument("--shard-frames", type=int, default=64,
                        help="frames per cache shard: the unit of resume and of work between ranks (default 64)")
    parser.add_argument("--device", default="auto",
                        help="auto (default): each rank's GPU (cuda:LOCAL_RANK) when there is one, else cpu")
    parser.add_argument("--dtype", choices=("auto", "float32", "bfloat16", "float16"), default="auto",
                        help="the target's dtype, and the features' on disk (auto: bfloat16 on GPU, float32 on CPU)")
    parser.add_argument("--dist-timeout-min", type=float, default=60.0,
                        help="under torchrun: how long a rank waits for the others at a collective (default 60)")


def _add_extract_features_arguments(parser: argparse.ArgumentParser) -> None:
    _add_source_arguments(parser, required=True)
    parser.add_argument("--out", type=Path, required=True,
                        help="cache folder to write (or to finish: a run that was stopped resumes where it stopped)")
    parser.add_argument("--frames", type=int, default=None, help="training frames (default: all not held out)")


def _add_train_draft_arguments(parser: argparse.ArgumentParser) -> None:
    _add_source_arguments(parser, required=False)
    parser.add_argument("--features", type=Path, default=None,
                        help="feature cache from extract-features; with --data it is extracted (or finished) "
                             "there first (default with --data: OUT/features)")
    parser.add_argument("--out", type=Path, required=True, help="draft head checkpoint folder to write")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=4,
                        help="frames per optimizer step over all ranks (a multiple of the number of ranks)")
    parser.add_argument("--frames", type=int, default=400, help="with --data: observations to extract")
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--relax-bins", type=int, default=3, help="r evaluated beside r = 0")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--num-heads", type=int, default=4,
                        help="attention heads of a new head's layer (default 4; OpenVLA-7B, as EAGLE's Llama-2-7B "
                             "heads: 32)")
    parser.add_argument("--intermediate-size", type=int, default=None,
                        help="MLP width of a new head's layer (default 2 x hidden; OpenVLA-7B as EAGLE: 11008)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run saved in --out (head, optimizer, step, evaluations) up to --steps; "
                             "any number of ranks")


def _add_train_vla_arguments(parser: argparse.ArgumentParser) -> None:
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


def _add_build_datastore_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, nargs="+", required=True,
                        help="demonstration folders (*.npz episodes) or one rosbag2 bag")
    parser.add_argument("--target", type=Path, help="the target checkpoint: its action statistics and "
                        "vocabulary bin demonstration actions (needed for demonstrations)")
    parser.add_argument("--unnorm-key", default=None, help="which of the target's action statistics (default: "
                        "its only one)")
    parser.add_argument("--topic", default=DECODE_STATS_TOPIC, help=f"bags: the DecodeStats topic (default "
                        f"{DECODE_STATS_TOPIC})")
    parser.add_argument("--task-topic", default=TASK_TOPIC, help="bags: each message here starts an "
                        f"episode (default {TASK_TOPIC}; ignored when the bag has no such topic)")
    parser.add_argument("--episode-gap-s", type=float, default=2.0, help="bags: a pause longer than this "
                        "starts a new episode (default 2.0)")
    parser.add_argument("--out", type=Path, required=True, help="the datastore file (.safetensors)")


def register(verbs: argparse._SubParsersAction) -> None:
    train_vla = verbs.add_parser(
        "train-vla", help="behaviour-clone a tiny VLA on simulation demonstrations",
        description="Train the tiny VLA (cross-entropy on the 7 action tokens) on demonstrations from "
                    "`specvla sim-demos`; action statistics are computed from the data and "
                    "stored with the checkpoint; writes report.json and curve.png beside it.")
    _add_train_vla_arguments(train_vla)
    train_vla.set_defaults(run=lazy_run("specvla_ros.training.runs", "run_train_vla"))

    extract = verbs.add_parser(
        "extract-features", help="run the target once over the data and cache the draft head's training pairs",
        description="Run the frozen target greedily over the observations and write, per frame, the EAGLE "
                    "training pairs (target features, next-input embeddings, target tokens) as sharded "
                    "safetensors + a JSON index; prints a size estimate first, resumes where a stopped run "
                    "left off. Runs under torchrun too: frames are sharded across ranks (docs/training.md).")
    _add_extract_features_arguments(extract)
    extract.set_defaults(run=lazy_run("specvla_ros.training.draft_runs", "run_extract_features"))

    train_draft = verbs.add_parser(
        "train-draft", help="train a Spec-VLA draft head against a target VLA",
        description="Train an EAGLE-style draft head (smooth-L1 feature + 0.1 soft cross-entropy) from a "
                    "feature cache (--features), or extract one first from --target and --data; evaluate "
                    "held-out acceptance length at r = 0 and --relax-bins, checkpoint after every evaluation. "
                    "Runs under torchrun too (DDP; docs/training.md).")
    _add_train_draft_arguments(train_draft)
    train_draft.set_defaults(run=lazy_run("specvla_ros.training.draft_runs", "run_train_draft"))

    build_datastore = verbs.add_parser(
        "build-datastore", help="a retrieval datastore of demonstrated actions, for guesses verified in the prefill",
        description="Collect the 7-bin actions of demonstration episodes (binned with --target's action "
                    "statistics) or of the node's decoded actions in a bag into a datastore file "
                    "(safetensors). temporal_draft.datastore points the node at it: the actions that "
                    "followed the robot's last ones in the demonstrations become guesses.")
    _add_build_datastore_arguments(build_datastore)
    build_datastore.set_defaults(run=lazy_run("specvla_ros.training.datastore", "run_build_datastore"))
