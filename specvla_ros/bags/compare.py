"""`specvla bag-compare`: plain (AR) decoding vs Spec-VLA on every frame of a bag, offline, no ROS.

The question a team asks before turning relaxed acceptance on: on our own recordings, how far do
the actions move from plain greedy decoding, and what does it buy? Both decoders share one
backbone and see each frame in turn; the report gives per-dimension deviation in the action's
units (a dimension whose statistics give its bins zero width moves nothing, whatever its tokens
do, and is named as such), the fraction of steps whose action differs, how often tokens sit at
the range limits (saturation), acceptance length, latency, and checks the relaxed rule where it
applies exactly: at the first token where the two outputs differ, both decoders had the same
prefix, so the drafted token is within r bins of the target's own choice. Later tokens are
conditioned on different prefixes and carry no such bound. Rendering: compare_report.py.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable

import numpy as np

DIM_NAMES = ("dx", "dy", "dz", "droll", "dpitch", "dyaw", "gripper")
DIM_UNITS = ("m", "m", "m", "rad", "rad", "rad", "")  # gripper: the dataset's unitless command
BIN_COUNT = 255  # bins 0 and 254 are the range limits: the action clipped at q01 / q99 (or -1 / +1)


@dataclass(frozen=True)
class FrameResult:
    """One frame decoded both ways. Actions are un-normalized, before the node's safety clamp."""

    index: int
    stamp_ns: int
    instruction: str
    ar_bins: tuple[int, ...]
    spec_bins: tuple[int, ...]
    ar_action: tuple[float, ...]
    spec_action: tuple[float, ...]
    ar_ms: float
    spec_ms: float
    spec_draft_ms: float
    spec_verify_ms: float
    acceptance_length: float
    spec_forwards: int

    @property
    def first_difference(self) -> int | None:
        """Index of the first action dimension whose token differs, or None when all 7 agree."""
        return next((d for d, (a, s) in enumerate(zip(self.ar_bins, self.spec_bins, strict=True)) if a != s), None)


def compare_frames(observations: Iterable[tuple[int, np.ndarray, str]], autoregressive: Any, speculative: Any,
                   warmup: int = 1, max_frames: int | None = None, log: Callable[[str], None] | None = None,
                   on_frame: Callable[[FrameResult, np.ndarray], None] | None = None) -> list[FrameResult]:
    """Decode every (stamp_ns, image, instruction) with both decoders; the first `warmup` frames are decoded
    once more beforehand so one-time costs (allocations, lazy init) stay out of the latencies. `on_frame` sees
    each result with its image (the report keeps thumbnails of the most deviating ones)."""
    results: list[FrameResult] = []
    for index, (stamp_ns, image, instruction) in enumerate(observations):
        if max_frames is not None and index >= max_frames:
            break
        if index < warmup:
            autoregressive.decode(image, instruction)
            speculative.decode(image, instruction)
        ar = autoregressive.decode(image, instruction)
        spec = speculative.decode(image, instruction)
        results.append(FrameResult(
            index=index, stamp_ns=int(stamp_ns), instruction=instruction,
            ar_bins=tuple(ar.bins), spec_bins=tuple(spec.bins),
            ar_action=tuple(float(v) for v in ar.action), spec_action=tuple(float(v) for v in spec.action),
            ar_ms=ar.stats.total_ms, spec_ms=spec.stats.total_ms, spec_draft_ms=spec.stats.draft_ms,
            spec_verify_ms=spec.stats.verify_ms, acceptance_length=spec.stats.mean_acceptance_length,
            spec_forwards=spec.stats.target_forward_passes))
        if on_frame is not None:
            on_frame(results[-1], image)
        if log and (index + 1) % 25 == 0:
            log(f"  {index + 1} frames")
    return results


def _stats(values: np.ndarray) -> dict[str, float]:
    return {"mean": float(np.mean(values)), "p50": float(np.percentile(values, 50)),
            "p95": float(np.percentile(values, 95)), "max": float(np.max(values))}


def deviation_score(frame: FrameResult, width: np.ndarray) -> float:
    """How far a frame's action moved from AR, in bins of the dimensions that have a width (0: not at all)."""
    apart = np.abs(np.array(frame.ar_action) - np.array(frame.spec_action))
    return float(np.max(np.where(width > 0, apart / np.where(width > 0, width, 1.0), 0.0)))


def summarize(frames: list[FrameResult], relax_bins: tuple[int, ...], width: np.ndarray,
              bin_count: int = BIN_COUNT) -> dict:
    """The report's numbers (JSON-ready)."""
    ar_bins = np.array([f.ar_bins for f in frames])
    spec_bins = np.array([f.spec_bins for f in frames])
    bins_apart = np.abs(ar_bins - spec_bins)
    metric_apart = np.abs(np.array([f.ar_action for f in frames]) - np.array([f.spec_action for f in frames]))
    moved = metric_apart > 0  # a token difference in a zero-width dimension moves nothing
    limits = (0, bin_count - 1)
    firsts = [(f.index, f.first_difference) for f in frames if f.first_difference is not None]
    violations = [{"frame": i, "dimension": DIM_NAMES[d], "bins_apart": int(bins_apart[i, d]), "r": relax_bins[d]}
                  for i, d in firsts if bins_apart[i, d] > relax_bins[d]]
    dimensions = []
    for d, name in enumerate(DIM_NAMES):
        dimensions.append({
            "name": name, "unit": DIM_UNITS[d], "r": relax_bins[d],
            "zero_width": bool(width[d] == 0),
            "fraction_differing": float(np.mean(bins_apart[:, d] > 0)),
            "fraction_moved": float(np.mean(moved[:, d])),
            "bins_mean": float(np.mean(bins_apart[:, d])), "bins_max": int(np.max(bins_apart[:, d])),
            "bins_p50": float(np.percentile(bins_apart[:, d], 50)), "bins_p99": float(np.percentile(bins_apart[:, d], 99)),
            "metric_p99": float(np.percentile(metric_apart[:, d], 99)),
            "metric_mean": float(np.mean(metric_apart[:, d])), "metric_max": float(np.max(metric_apart[:, d])),
            "bin_width": float(width[d]),
            "first_difference_bound": float(relax_bins[d] * width[d]),
            "first_differences": sum(1 for _, first in firsts if first == d),
            "first_difference_bins_max": max((int(bins_apart[i, d]) for i, first in firsts if first == d), default=0),
            "saturation": {"autoregressive": float(np.mean(np.isin(ar_bins[:, d], limits))),
                           "speculative": float(np.mean(np.isin(spec_bins[:, d], limits)))},
        })
    ar_ms = np.array([f.ar_ms for f in frames])
    spec_ms = np.array([f.spec_ms for f in frames])
    return {
        "frames": len(frames),
        "relax_bins": list(relax_bins),
        "steps_differing_fraction": float(np.mean(bins_apart.max(axis=1) > 0)),   # any token differs
        "steps_moved_fraction": float(np.mean(moved.any(axis=1))),               # the action differs
        # A relaxed token changes every token after it: how often a token ends up further than its r.
        "steps_beyond_r_fraction": float(np.mean((bins_apart > np.asarray(relax_bins)).any(axis=1))),
        "zero_width_dimensions": [DIM_NAMES[d] for d in range(len(DIM_NAMES)) if width[d] == 0],
        "range_limit_bins": list(limits),
        "first_difference_rule": {"holds": not violations, "steps_checked": len(firsts), "violations": violations},
        "dimensions": dimensions,
        "acceptance_length": _stats(np.array([f.acceptance_length for f in frames])),
        "target_forwards_per_action": {"speculative": float(np.mean([f.spec_forwards for f in frames])),
                                       "autoregressive": 7.0},
        "latency_ms": {
            "autoregressive": _stats(ar_ms),
            "speculative": {**_stats(spec_ms), "draft_mean": float(np.mean([f.spec_draft_ms for f in frames])),
                            "verify_mean": float(np.mean([f.spec_verify_ms for f in frames]))},
            "speedup_mean": float(np.mean(ar_ms) / np.mean(spec_ms)),
            "speedup_p50": float(np.percentile(ar_ms, 50) / np.percentile(spec_ms, 50)),
        },
    }


def run(args: argparse.Namespace) -> int:
    """`specvla bag-compare`: exit 0 on success, 1 with a message for bag, model or configuration errors."""
    from specvla_ros.core.errors import SpecVLAError

    try:
        return _run(args)
    except SpecVLAError as error:
        print(f"specvla bag-compare: {error}", file=sys.stderr)
        return 1


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def _run(args: argparse.Namespace) -> int:
    from specvla_ros.bags import BagError, read_observations
    from specvla_ros.bags.compare_report import WorstFrames, headline, write_report
    from specvla_ros.core.action_tokenizer import metric_bin_width
    from specvla_ros.core.config import DecoderConfig, TreeConfig, relax_setting
    from specvla_ros.core.decoder import build_decoder
    from specvla_ros.core.errors import ConfigError
    from specvla_ros.core.loading import load_backbone, load_draft
    from specvla_ros.models import model_pair

    started = time.perf_counter()
    if args.threads > 0:
        import torch

        torch.set_num_threads(args.threads)
    observations = read_observations(args.bag, args.camera_topic, args.task_topic, task=args.task,
                                     skip_bad_frames=args.skip_bad_frames)  # checks the bag first
    print(observations.camera_note, file=sys.stderr)
    pair = model_pair(args.model, args.draft, log=lambda line: print(line, file=sys.stderr))
    args.model, args.draft = pair.target_path, pair.draft_path
    if args.draft is None:
        raise ConfigError("--draft is needed with --model: Spec-VLA decodes with a draft head")
    relax = relax_setting(args.relax_bins)
    tree = TreeConfig(top_k=args.tree_top_k, depth=args.tree_depth, total_tokens=args.tree_total_tokens)
    spec_config = DecoderConfig(mode="speculative", relax_bins=relax, tree=tree, unnorm_key=args.unnorm_key)
    backbone = load_backbone(args.model, args.device, args.dtype)  # one backbone, shared by both decoders
    autoregressive = build_decoder(backbone, None, DecoderConfig(mode="autoregressive", unnorm_key=args.unnorm_key))
    speculative = build_decoder(backbone, load_draft(args.draft, backbone), spec_config)
    width = metric_bin_width(speculative.backbone.action_tokenizer, speculative.norm_stats)

    print(f"decoding {observations.camera_frames} frames of {args.bag} with AR and Spec-VLA r = "
          f"{list(spec_config.relax_bins)} ...", file=sys.stderr)
    worst = WorstFrames(width)
    frames = compare_frames(observations, autoregressive, speculative, warmup=args.warmup,
                            max_frames=args.max_frames, log=lambda line: print(line, file=sys.stderr),
                            on_frame=worst.offer)
    for bad in observations.bad_frames:
        print(f"skipped frame {bad.index} (bag time {bad.time_ns} ns): {bad.reason}", file=sys.stderr)
    if not frames:
        raise BagError(f"{args.bag}: no usable camera frame on {observations.camera_topic} with "
                       f"{observations.task_source} ({observations.skipped_before_task} came before any task, "
                       f"{len(observations.bad_frames)} could not be read)")
    summary = summarize(frames, spec_config.relax_bins, width,
                        bin_count=len(speculative.backbone.action_tokenizer.bin_centers))
    meta = {"bag": str(args.bag), "camera_topic": observations.camera_topic, "camera_type": observations.camera_type,
            "task_topic": None if args.task is not None else args.task_topic, "task": args.task,
            "task_source": observations.task_source,
            "model": str(args.model), "draft": str(args.draft), "device": args.device, "dtype": args.dtype,
            "torch_threads": _torch_threads(),
            "tree": asdict(tree), "frames_before_task": observations.skipped_before_task,
            "bad_frames": [asdict(b) for b in observations.bad_frames],
            "wall_s": round(time.perf_counter() - started, 2)}
    paths = write_report(args.out, frames, summary, meta, worst.frames(), width)
    latency = summary["latency_ms"]
    print(f"{headline(summary)} Acceptance length {summary['acceptance_length']['mean']:.2f}; latency p50 AR "
          f"{latency['autoregressive']['p50']:.1f} ms vs Spec-VLA {latency['speculative']['p50']:.1f} ms "
          f"({latency['speedup_p50']:.2f}x); first-difference rule "
          f"{'holds' if summary['first_difference_rule']['holds'] else 'VIOLATED'}"
          + (f"; {len(observations.bad_frames)} bad frames skipped" if observations.bad_frames else ""))
    print("written: " + ", ".join(str(p) for p in paths))
    return 0
