#!/usr/bin/env python3
"""AR greedy vs speculative (r = 0) vs Spec-VLA (r > 0), side by side on the same observations.

Two AR baselines head every table: "AR (HF eager)", decoding the way OpenVLA's predict_action does
(Hugging Face's LlamaModel, DynamicCache, eager; bench/hf_eager.py), and "AR (fastest)", this
package's static-cache decoder under --compile (default: compiled). Every mode is reported against
both, with the share of its decode time spent outside its step functions (Python and host reads).

    .venv/bin/python bench/decode_benchmark.py --out out/bench/decode            # bundled pair, sim frames
    .venv/bin/python bench/decode_benchmark.py --model DIR --draft DIR --data BAG_OR_FOLDER --out DIR
    .venv/bin/python bench/decode_benchmark.py --sweep --out DIR                 # also sweep tree sizes
    .venv/bin/python bench/decode_benchmark.py --temporal --out DIR              # + temporal drafting modes

Every observation is decoded by every mode in one process, in an order rotated per observation,
after a warm-up; each timing is the median of --repeats decodes. Speedups are ratios per
observation (AR time / mode time), then the median over observations: these machines are noisy,
so only same-run ratios count. Writes results.json, results.md and three PNGs to --out.

--calibrate sweeps tree shapes (compiled as the node runs them) and writes tree_calibration.json:
the fastest shapes and their target forwards per action, which decoder.tree.auto reads beside the
draft head. --tree-auto adds a row decoded with the tree decoder.tree.auto chooses.

--temporal adds temporal drafting (guesses from the previous actions) at each --temporal-relax r:
"Temporal" (temporal branches only, no draft head) and "Spec-VLA+temporal" (both proposers). Its
history needs consecutive frames of one episode, so observations are then taken in order (every
frame of each simulated episode; a bag or folder in its own order), each decoder's history is
reset at every episode start, and repeats of one frame all start from the same history.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import itertools
import json
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from specvla_ros.core.action_tokenizer import NormStats, metric_bin_width
from specvla_ros.core.compilation import CompiledFunction, resolve_mode
from specvla_ros.core.config import DecoderConfig, TreeConfig
from specvla_ros.core.decoder import SOURCE_HEAD, SOURCE_TEMPORAL, ActionResult, build_decoder
from specvla_ros.core.loading import load_backbone, load_draft
from specvla_ros.core.temporal_draft import TemporalDraftConfig
from specvla_ros.core.tree_tuning import (
    CALIBRATION_FILE,
    ShapeStats,
    describe,
    read_calibration,
    shape_label,
    tuned_decoder,
    write_calibration,
)
from specvla_ros.models import model_pair

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hf_eager import HFEagerAutoregressive  # noqa: E402  (bench/ is not a package)

PHASES = ("prefill_ms", "draft_ms", "verify_ms", "total_ms", "outside_ms")
HF_AR, FAST_AR = "AR (HF eager)", "AR (fastest)"


@dataclass(frozen=True)
class Mode:
    """hf_baseline: decode through HF's LlamaModel, eager (never compiled)."""

    name: str
    config: DecoderConfig
    hf_baseline: bool = False


class StepTimer:
    """Seconds spent inside the decoders' step functions (image encoder, prefill, target steps, draft
    and verify steps: every CompiledFunction call), so that a decode's remainder is the Python and the
    host reads around them. CPU timing (on a GPU the calls return before the work is done)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        original = CompiledFunction.__call__
        timer = self

        def timed(function: CompiledFunction, *args):
            start = time.perf_counter()
            try:
                return original(function, *args)
            finally:
                timer.seconds += time.perf_counter() - start

        CompiledFunction.__call__ = timed


_STEP_TIMER: StepTimer | None = None


def step_timer() -> StepTimer:
    """The process's one StepTimer (installed on first use)."""
    global _STEP_TIMER
    if _STEP_TIMER is None:
        _STEP_TIMER = StepTimer()
    return _STEP_TIMER


@dataclass
class ModeRun:
    """Everything measured for one mode: per observation, in observation order."""

    mode: Mode
    results: list[ActionResult] = field(default_factory=list)
    median_ms: list[dict[str, float]] = field(default_factory=list)


def sim_observations(count: int, seed: int, consecutive: bool = False
                     ) -> tuple[list[np.ndarray], list[str], list[int]]:
    """Frames the scripted expert sees on the three tabletop tasks: realistic inputs for the tiny VLA.

    consecutive: a run of consecutive frames from a seeded point of each of six episodes (two per
    task; temporal drafting needs them), else a few frames from every phase of many episodes. Also
    returns each frame's episode number.
    """
    from specvla_ros.sim.demos import record_episode
    from specvla_ros.sim.env import TabletopEnv
    from specvla_ros.sim.expert import ScriptedExpert

    images: list[np.ndarray] = []
    instructions: list[str] = []
    episodes: list[int] = []
    rng = np.random.default_rng(seed)
    window = max(2, -(-count // 6))
    with TabletopEnv() as env:
        expert = ScriptedExpert(env.config.scene, env.config.limits)
        for episode in itertools.count():
            if len(images) >= count:
                break
            task = ("pick", "push", "place")[episode % 3]
            recorded = record_episode(env, expert, seed + episode, task)
            if consecutive:
                start = int(rng.integers(0, max(1, len(recorded) - window + 1)))
                frames = recorded.images[start:start + window]
            else:
                frames = recorded.images[::max(1, len(recorded) // 8)]  # a few frames from every phase
            for frame in frames:
                images.append(frame)
                instructions.append(recorded.instruction)
                episodes.append(episode)
    return images[:count], instructions[:count], episodes[:count]


def episode_observations(target, episodes: int, seed: int) -> tuple[list[np.ndarray], list[str], list[int]]:
    """Every frame of whole closed-loop episodes (tasks in turn, seeds seed, seed + 1, ...) driven by
    the target's own AR actions: the frames and history a node on the robot would see. At r = 0
    every lossless mode reproduces these actions, so its history is exactly the closed loop's."""
    from specvla_ros.sim.env import TabletopEnv

    driver = build_decoder(target, None, DecoderConfig(mode="autoregressive"))
    images: list[np.ndarray] = []
    instructions: list[str] = []
    numbers: list[int] = []
    with TabletopEnv() as env, torch.inference_mode():
        for episode in range(episodes):
            obs = env.reset(seed + episode, ("pick", "push", "place")[episode % 3])
            while True:
                image = obs.image if obs.image is not None else env.render()
                images.append(image)
                instructions.append(obs.instruction)
                numbers.append(episode)
                result = env.step(driver.decode(image, obs.instruction).action)
                obs = result.observation
                if result.done:
                    break
    return images, instructions, numbers


def load_observations(args: argparse.Namespace, target=None) -> tuple[list[np.ndarray], list[str], list[int]]:
    """Images, instructions and episode numbers (a new episode wherever the instruction changes
    when the source does not say)."""
    if args.episodes:
        return episode_observations(target, args.episodes, args.seed)
    if args.data is None:
        return sim_observations(args.frames, args.seed, consecutive=args.temporal)
    if args.data.suffix == ".npz":  # a frame set (images, instructions): numpy only, e.g. on the GPU machine
        with np.load(args.data) as frames:
            images, instructions = list(frames["images"]), [str(text) for text in frames["instructions"]]
        images, instructions = images[: args.frames], instructions[: args.frames]
        return images, instructions, episodes_by_instruction(instructions)
    from specvla_ros.training.datasets import load_observations as load_source

    data = load_source(args.data, args.camera_topic, args.task_topic)
    count = min(args.frames, len(data))
    if args.temporal:  # the source's own (time) order
        picked = np.arange(count)
    else:
        picked = np.random.default_rng(args.seed).choice(len(data), size=count, replace=False)
    instructions = [data.instructions[i] for i in picked]
    return [data.images[i] for i in picked], instructions, episodes_by_instruction(instructions)


def episodes_by_instruction(instructions: list[str]) -> list[int]:
    episodes, current = [], 0
    for index, text in enumerate(instructions):
        current += index > 0 and text != instructions[index - 1]
        episodes.append(current)
    return episodes


def build_modes(relax_values: list[int], per_dimension: list[int] | None, tree: TreeConfig,
                temporal_relax: list[int] | None = None, temporal: TemporalDraftConfig | None = None,
                datastore: str = "") -> list[Mode]:
    """AR, SD r=0, Spec-VLA per r; with temporal_relax also, per r: temporal only, temporal verified in
    the prefill (+prefill), draft head + temporal + prefill, and with a datastore temporal + retrieval
    + prefill."""
    modes = [Mode(HF_AR, DecoderConfig(mode="autoregressive"), hf_baseline=True),
             Mode(FAST_AR, DecoderConfig(mode="autoregressive")),
             Mode("SD r=0", DecoderConfig(relax_bins=0, tree=tree))]
    modes += [Mode(f"Spec-VLA r={r}", DecoderConfig(relax_bins=r, tree=tree)) for r in relax_values if r > 0]
    if per_dimension:
        label = ",".join(map(str, per_dimension))
        modes.append(Mode(f"Spec-VLA r=({label})", DecoderConfig(relax_bins=tuple(per_dimension), tree=tree)))
    base = temporal or TemporalDraftConfig(enabled=True)
    for r in temporal_relax or []:
        if r > 0 and r not in relax_values:
            modes.append(Mode(f"Spec-VLA r={r}", DecoderConfig(relax_bins=r, tree=tree)))
        only = dataclasses.replace(base, enabled=True, draft_head=False)
        both = dataclasses.replace(base, enabled=True, draft_head=True)
        modes.append(Mode(f"Temporal r={r}", DecoderConfig(relax_bins=r, tree=tree, temporal=only)))
        modes.append(Mode(f"Spec-VLA+temporal r={r}", DecoderConfig(relax_bins=r, tree=tree, temporal=both)))
        modes.append(Mode(f"Temporal+prefill r={r}", DecoderConfig(relax_bins=r, tree=tree, temporal=only,
                                                                     prefill_drafts=True)))
        modes.append(Mode(f"Spec-VLA+temporal+prefill r={r}", DecoderConfig(relax_bins=r, tree=tree, temporal=both,
                                                                              prefill_drafts=True)))
        if datastore:
            retrieval = dataclasses.replace(only, datastore=datastore)
            modes.append(Mode(f"Temporal+retrieval+prefill r={r}",
                              DecoderConfig(relax_bins=r, tree=tree, temporal=retrieval, prefill_drafts=True)))
    return modes


def decode_timed(decoder, image: np.ndarray, instruction: str, timer: StepTimer) -> tuple[ActionResult, float]:
    """One decode and the milliseconds of it spent outside the step functions."""
    inside = timer.seconds
    result = decoder.decode(image, instruction)
    return result, max(0.0, result.stats.total_ms - 1000.0 * (timer.seconds - inside))


def decode_repeats(decoder, image: np.ndarray, instruction: str, repeats: int, timer: StepTimer
                   ) -> list[tuple[ActionResult, float]]:
    """`repeats` decodes of one frame; a temporal history sees the frame once (every repeat starts
    from the history as it was before the frame)."""
    history = getattr(decoder, "temporal", None)
    results = []
    for _ in range(repeats):
        if history is not None:
            decoder.temporal = copy.deepcopy(history)
        results.append(decode_timed(decoder, image, instruction, timer))
    return results


def make_decoder(target, head, mode: Mode, compile_mode: str, calibration: list[ShapeStats] | None):
    """The mode's decoder, compiled and warmed up as the node would run it."""
    if mode.hf_baseline:
        return HFEagerAutoregressive(target, mode.config)
    if mode.config.tree.auto:
        decoder, choice = tuned_decoder(target, head, mode.config, calibration, compile_mode)
        print(f"{mode.name}: {describe(choice)}", file=sys.stderr)
        return decoder
    decoder = build_decoder(target, head if mode.config.uses_draft_head else None, mode.config)
    decoder.compile(compile_mode)
    decoder.warm_up()
    return decoder


def run_modes(target, head, modes: list[Mode], images, instructions, repeats: int, warmup: int,
              episodes: list[int] | None = None, compile_mode: str = "off",
              calibration: list[ShapeStats] | None = None) -> list[ModeRun]:
    """Decode every observation with every mode; the mode order rotates per observation.

    episodes: each observation's episode number; decoders are reset where it changes.
    """
    timer = step_timer()
    decoders = [make_decoder(target, head, mode, compile_mode, calibration) for mode in modes]
    for decoder in decoders:
        for index in range(min(warmup, len(images))):
            decoder.decode(images[index], instructions[index])
        decoder.reset()
    runs = [ModeRun(mode) for mode in modes]
    for index, (image, instruction) in enumerate(zip(images, instructions, strict=True)):
        if episodes is not None and index > 0 and episodes[index] != episodes[index - 1]:
            for decoder in decoders:
                decoder.reset()
        order = np.roll(np.arange(len(modes)), -index)
        for position in order:
            timed = decode_repeats(decoders[position], image, instruction, repeats, timer)
            runs[position].results.append(timed[0][0])
            medians = {phase: statistics.median(getattr(r.stats, phase) for r, _ in timed) for phase in PHASES[:-1]}
            medians["outside_ms"] = statistics.median(outside for _, outside in timed)
            runs[position].median_ms.append(medians)
    return runs


def percentile(values, q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q))


def summarize(run: ModeRun, reference: ModeRun, bin_width: np.ndarray, slow_reference: ModeRun | None = None) -> dict:
    """One table row: work, latency distribution, per-observation speedups vs the fastest AR
    (`reference`) and the HF-eager AR (`slow_reference`), deviation from AR, time outside the steps."""
    stats = [r.stats for r in run.results]
    total = [m["total_ms"] for m in run.median_ms]
    decode = [m["total_ms"] - m["prefill_ms"] for m in run.median_ms]
    ar_total = [m["total_ms"] for m in reference.median_ms]
    ar_decode = [m["total_ms"] - m["prefill_ms"] for m in reference.median_ms]
    slow_total = [m["total_ms"] for m in (slow_reference or reference).median_ms]
    bins = np.array([r.bins for r in run.results])
    ar_bins = np.array([r.bins for r in reference.results])
    actions = np.array([r.action for r in run.results])
    ar_actions = np.array([r.action for r in reference.results])
    verify_steps = [len(s.accepted_per_step) for s in stats]
    steps = [(flags, accepted) for s in stats for flags, accepted in zip(s.path_sources, s.accepted_per_step,
                                                                          strict=True)]
    row = {
        "mode": run.mode.name,
        "relax_bins": list(run.mode.config.relax_bins) if run.mode.config.mode == "speculative" else None,
        "acceptance_length": float(np.mean([s.mean_acceptance_length for s in stats])),
        "accepted_drafts_per_verify": float(np.sum([sum(s.accepted_per_step) for s in stats])
                                            / max(1, np.sum(verify_steps))),
        "target_forwards_per_action": float(np.mean([s.target_forward_passes for s in stats])),
        "speedup_end_to_end": float(np.median(np.divide(ar_total, total))),
        "speedup_decode_phase": float(np.median(np.divide(ar_decode, decode))),
        "speedup_vs_hf_eager": float(np.median(np.divide(slow_total, total))),
        "outside_share": (None if run.mode.hf_baseline else
                          float(np.median([m["outside_ms"] / m["total_ms"] for m in run.median_ms]))),
        "steps_differing_from_ar": float(np.mean(np.any(bins != ar_bins, axis=1))),
        "max_bin_deviation": np.abs(bins - ar_bins).max(axis=0).tolist(),
        "mean_bin_deviation": np.abs(bins - ar_bins).mean(axis=0).tolist(),
        "p50_bin_deviation": np.percentile(np.abs(bins - ar_bins), 50, axis=0).tolist(),
        "p99_bin_deviation": np.percentile(np.abs(bins - ar_bins), 99, axis=0).tolist(),
        "max_deviation_units": np.abs(actions - ar_actions).max(axis=0).tolist(),
        "p99_deviation_units": np.percentile(np.abs(actions - ar_actions), 99, axis=0).tolist(),
        "frames_beyond_r": float(np.mean(np.any(np.abs(bins - ar_bins) > np.asarray(
            run.mode.config.relax_bins if run.mode.config.mode == "speculative" else (0,) * 7), axis=1))),
        "one_forward_share": float(np.mean([s.target_forward_passes == 1 for s in stats])),
        "prefill_accepted_mean": float(np.mean([s.prefill_accepted for s in stats])),
        "mean_abs_deviation_units": np.abs(actions - ar_actions).mean(axis=0).tolist(),
        "bin_width_units": bin_width.tolist(),
        "acceptance_lengths": [s.mean_acceptance_length for s in stats],
        "temporal": run.mode.config.temporal.enabled and run.mode.config.mode == "speculative",
        "path_sources": source_summary(steps),
        "total_ms_series": total,
    }
    for phase in PHASES:
        values = [m[phase] for m in run.median_ms]
        row[f"{phase[:-3]}_p50_ms"] = percentile(values, 50)
        row[f"{phase[:-3]}_p95_ms"] = percentile(values, 95)
    return row


def source_summary(steps: list[tuple[int, int]]) -> dict:
    """Per proposer: share of verify steps whose accepted path it drafted, and their mean tokens per step.

    A path both proposers drafted counts for both; "none" = steps that accepted no drafted token.
    """
    total = max(1, len(steps))
    summary = {}
    for name, test in (("head", lambda f: f & SOURCE_HEAD), ("temporal", lambda f: f & SOURCE_TEMPORAL),
                       ("both", lambda f: f == SOURCE_HEAD | SOURCE_TEMPORAL), ("none", lambda f: f == 0)):
        lengths = [accepted + 1 for flags, accepted in steps if test(flags)]
        summary[name] = {"share_of_steps": len(lengths) / total,
                         "acceptance_length": float(np.mean(lengths)) if lengths else None}
    return summary


def tree_sweep(target, head, images, instructions, relax: int, repeats: int, grid: list[tuple[int, int, int]],
               compile_mode: str) -> list[dict]:
    """Speedup vs the fastest AR and target forwards per action for a grid of (top_k, depth,
    total_tokens) at one r, each shape compiled as the node runs it; fastest first."""
    rows = []
    for top_k, depth, total in grid:
        tree = TreeConfig(top_k=top_k, depth=depth, total_tokens=total, chain=top_k == 1)
        modes = [Mode(FAST_AR, DecoderConfig(mode="autoregressive")),
                 Mode("Spec-VLA", DecoderConfig(relax_bins=relax, tree=tree))]
        ar, spec = run_modes(target, head, modes, images, instructions, repeats, warmup=1, compile_mode=compile_mode)
        summary = summarize(spec, ar, np.ones(7))
        rows.append({"top_k": top_k, "depth": depth, "total_tokens": total, "chain": tree.chain,
                     "speedup_end_to_end": summary["speedup_end_to_end"],
                     "acceptance_length": summary["acceptance_length"],
                     "target_forwards_per_action": summary["target_forwards_per_action"],
                     "total_p50_ms": summary["total_p50_ms"]})
        print(f"sweep {shape_label(tree)}: {summary['speedup_end_to_end']:.2f}x", file=sys.stderr)
    return sorted(rows, key=lambda row: -row["speedup_end_to_end"])


def calibration_shapes(sweep: list[dict], count: int = 3) -> list[ShapeStats]:
    """The `count` fastest swept shapes with their verify steps per action (forwards after the prefill)."""
    return [ShapeStats(row["top_k"], row["depth"], row["total_tokens"], row["chain"],
                       round(row["target_forwards_per_action"] - 1.0, 3)) for row in sweep[:count]]


def success_rates(target, head, modes: list[Mode], episodes: int, seed: int, max_steps: int | None = None,
                  calibration: list[ShapeStats] | None = None) -> list[dict]:
    """Closed-loop success per mode in the simulation harness (the paper's first column)."""
    from specvla_ros.sim.env import EnvConfig, TabletopEnv
    from specvla_ros.sim.harness import evaluate
    from specvla_ros.sim.policy import DecoderPolicy

    results = []
    with TabletopEnv(EnvConfig(max_steps=max_steps)) as env:
        for mode in modes:
            decoder = make_decoder(target, head, mode, "off", calibration)  # speed does not matter here
            records = evaluate(DecoderPolicy(decoder), env, ["pick", "push", "place"], episodes, seed=seed)
            results.append({"successes": sum(r.success for r in records), "episodes": len(records)})
            print(f"{mode.name}: {results[-1]['successes']}/{len(records)} episodes succeeded", file=sys.stderr)
    return results


def markdown(meta: dict, rows: list[dict], sweep: list[dict]) -> str:
    lines = [f"# Decode benchmark: {meta['model']}", "",
             f"{meta['observations']} observations ({meta['source']}), {meta['repeats']} repeats each, "
             f"tree top_k {meta['tree']['top_k']} / depth {meta['tree']['depth']} / total "
             f"{meta['tree']['total_tokens']}, {meta['device']} ({meta['machine']}, {meta['threads']} threads), "
             f"compile: {meta['compile']}. Speedups: per-observation ratio, median; 'vs fastest AR' is against "
             f"{FAST_AR}, 'vs HF eager' against {HF_AR}. 'Outside steps': share of the decode spent outside its "
             "step functions (Python, host reads).", "",
             "| mode | success | acceptance length | target forwards / action | prefill p50 | draft p50 | verify p50 | "
             "total p50 / p95 (ms) | vs fastest AR | vs HF eager | decode phase vs fastest AR | outside steps | "
             "steps ≠ AR | max bin deviation (x y z roll pitch yaw grip) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        outside = "–" if row["outside_share"] is None else f"{100 * row['outside_share']:.0f}%"
        lines.append(
            f"| {row['mode']} | {_success_cell(row.get('success'))} | {row['acceptance_length']:.2f} | "
            f"{row['target_forwards_per_action']:.2f} | {row['prefill_p50_ms']:.2f} | {row['draft_p50_ms']:.2f} | "
            f"{row['verify_p50_ms']:.2f} | {row['total_p50_ms']:.2f} / {row['total_p95_ms']:.2f} | "
            f"{row['speedup_end_to_end']:.2f}x | {row['speedup_vs_hf_eager']:.2f}x | {row['speedup_decode_phase']:.2f}x | "
            f"{outside} | {100 * row['steps_differing_from_ar']:.0f}% | {' '.join(map(str, row['max_bin_deviation']))} |")
    lines += ["", "Deviation from AR over every observation, per dimension (dx dy dz droll dpitch dyaw gripper): "
              "bins p50 / p99 / max, and the largest in the action's units (m, rad; gripper 0..1); frames "
              "beyond r: share of observations with a token further than its r from AR's (a relaxed token "
              "changes every token after it).", "",
              "| mode | p50 bins | p99 bins | max bins | max units | frames beyond r | one forward | "
              "guessed tokens accepted in the prefill |", "|---|---|---|---|---|---|---|---|"]
    for row in rows[2:]:
        lines.append(
            f"| {row['mode']} | {_ints(row['p50_bin_deviation'])} | {_ints(row['p99_bin_deviation'])} | "
            f"{_ints(row['max_bin_deviation'])} | {' '.join(f'{v:.2g}' for v in row['max_deviation_units'])} | "
            f"{100 * row['frames_beyond_r']:.1f}% | {100 * row['one_forward_share']:.0f}% | "
            f"{row['prefill_accepted_mean']:.2f} |")
    if any(row["temporal"] for row in rows):
        lines += ["", "Which proposer drafted the accepted path (share of verify steps, and mean tokens per verify "
                  "step over those steps; a path both proposed counts for both):", "",
                  "| mode | draft head: share / τ | temporal: share / τ | both | nothing accepted |",
                  "|---|---|---|---|---|"]

        def cell(part: dict) -> str:
            length = part["acceptance_length"]
            return f"{100 * part['share_of_steps']:.0f}% / " + (f"{length:.2f}" if length is not None else "–")

        for row in rows[2:]:
            sources = row["path_sources"]
            lines.append(f"| {row['mode']} | {cell(sources['head'])} | {cell(sources['temporal'])} | "
                         f"{100 * sources['both']['share_of_steps']:.0f}% | "
                         f"{100 * sources['none']['share_of_steps']:.0f}% |")
    if sweep:
        lines += ["", f"Tree sweep at r = {meta['sweep_relax']} (best first; speedup vs {FAST_AR}):", "",
                  "| tree | acceptance length | target forwards / action | total p50 ms | end-to-end speedup |",
                  "|---|---|---|---|---|"]
        for row in sweep[:10]:
            tree = TreeConfig(top_k=row["top_k"], depth=row["depth"], total_tokens=row["total_tokens"],
                              chain=row["chain"])
            lines.append(f"| {shape_label(tree)} | {row['acceptance_length']:.2f} | "
                         f"{row['target_forwards_per_action']:.2f} | {row['total_p50_ms']:.2f} | "
                         f"{row['speedup_end_to_end']:.2f}x |")
    return "\n".join(lines) + "\n"


def _ints(values: list[float]) -> str:
    return " ".join(str(int(round(value))) for value in values)


def _success_cell(success: dict | None) -> str:
    if not success:
        return "–"
    return f"{success['successes']}/{success['episodes']} ({100 * success['successes'] / success['episodes']:.0f}%)"


def plots(rows: list[dict], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = [out / "speedup_vs_r.png", out / "acceptance_hist.png", out / "latency_breakdown.png"]
    names = [row["mode"] for row in rows]
    fig, axis = plt.subplots(figsize=(6, 3.5))
    axis.bar(names, [row["speedup_end_to_end"] for row in rows], color="tab:blue", label="end to end")
    axis.plot(names, [row["speedup_decode_phase"] for row in rows], "o-", color="tab:orange", label="decode phase")
    axis.axhline(1.0, color="grey", lw=0.8)
    axis.plot(names, [row["speedup_vs_hf_eager"] for row in rows], "s--", color="tab:green", label="vs HF-eager AR")
    axis.set_ylabel(f"speedup vs {FAST_AR} (median ratio)")
    axis.legend(fontsize=8)
    _save(fig, axis, paths[0])

    fig, axis = plt.subplots(figsize=(6, 3.5))
    for row in rows[2:]:
        axis.hist(row["acceptance_lengths"], bins=np.arange(0.75, 7.5, 0.25), alpha=0.5, label=row["mode"])
    axis.set_xlabel("acceptance length per observation (tokens per target forward)")
    axis.set_ylabel("observations")
    axis.legend(fontsize=8)
    _save(fig, axis, paths[1], rotate=False)

    fig, axis = plt.subplots(figsize=(6, 3.5))
    bottom = np.zeros(len(rows))
    for phase in ("prefill", "draft", "verify"):
        values = np.array([row[f"{phase}_p50_ms"] for row in rows])
        axis.bar(names, values, bottom=bottom, label=phase)
        bottom += values
    axis.set_ylabel("ms per action (median of each phase)")
    axis.legend()
    _save(fig, axis, paths[2])
    return paths


def _save(fig, axis, path: Path, rotate: bool = True) -> None:
    import matplotlib.pyplot as plt

    if rotate:
        axis.tick_params(axis="x", labelrotation=20)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="target checkpoint (default: the embedded pair)")
    parser.add_argument("--draft", type=Path, help="draft head checkpoint (default: the embedded pair's)")
    parser.add_argument("--data", type=Path, help="observations: demos folder, image folder, bag, or an .npz "
                        "with images + instructions (default: frames from the simulation)")
    parser.add_argument("--camera-topic", default="/camera/image_raw")
    parser.add_argument("--task-topic", default="/vla/instruction")
    parser.add_argument("--frames", type=int, default=60, help="observations (default 60)")
    parser.add_argument("--episodes", type=int, default=0, metavar="N", help="instead: every frame of N whole "
                        "closed-loop simulated episodes driven by the target's AR actions (tasks in turn)")
    parser.add_argument("--datastore", default="", help="with --temporal: also temporal + retrieval guesses "
                        "from this datastore (specvla build-datastore), verified in the prefill")
    parser.add_argument("--relax", type=int, nargs="+", default=[1, 2, 3], help="r values beside 0 (default 1 2 3)")
    parser.add_argument("--per-dimension", type=int, nargs=7, metavar="R", help="also one per-dimension r")
    parser.add_argument("--top-k", type=int, default=8)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--total-tokens", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3, help="decodes per observation and mode (median)")
    parser.add_argument("--temporal", action="store_true", help="also temporal drafting: temporal only and "
                        "draft head + temporal at each --temporal-relax r (observations taken in episode order)")
    parser.add_argument("--temporal-relax", type=int, nargs="+", default=None, metavar="R",
                        help="r values for the temporal modes (default: 0 and the largest --relax)")
    parser.add_argument("--temporal-proposals", nargs="+", default=["previous", "before"],
                        choices=["previous", "linear", "before"], help="temporal guesses offered (default: previous "
                        "before)")
    parser.add_argument("--temporal-history", type=int, default=4, help="past actions kept (default 4)")
    parser.add_argument("--success-episodes", type=int, default=0, metavar="N",
                        help="also the closed-loop success rate per mode: N simulation episodes per task")
    parser.add_argument("--success-max-steps", type=int, default=None, help="cap on steps per episode (default: "
                        "each task's own budget)")
    parser.add_argument("--sweep", action="store_true", help="also sweep tree sizes at the largest --relax")
    parser.add_argument("--calibrate", action="store_true", help="sweep tree sizes at r = 0 and write "
                        f"{CALIBRATION_FILE} (the fastest shapes) to --out, for decoder.tree.auto")
    parser.add_argument("--sweep-frames", type=int, default=12)
    parser.add_argument("--sweep-top-k", type=int, nargs="+", default=[1, 2, 4, 8], help="1 = a chain")
    parser.add_argument("--sweep-depth", type=int, nargs="+", default=[2, 3, 5])
    parser.add_argument("--sweep-total", type=int, nargs="+", default=[8, 16, 50])
    parser.add_argument("--tree-auto", action="store_true", help="also a row at r = 0 with the tree "
                        "decoder.tree.auto chooses (from --calibration)")
    parser.add_argument("--calibration", type=Path, default=None, help=f"{CALIBRATION_FILE} for --tree-auto "
                        "(default: the draft head's, if it has one)")
    parser.add_argument("--compile", default="auto", choices=("off", "default", "reduce-overhead", "auto"),
                        help="how every mode but the HF-eager AR runs (default auto: compiled)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    pair = model_pair(args.model, args.draft, log=lambda line: print(line, file=sys.stderr))
    args.model, args.draft = pair.target_path, pair.draft_path
    started = time.perf_counter()
    target = load_backbone(str(args.model), device=args.device, dtype=args.dtype)
    head = load_draft(args.draft, target)
    images, instructions, episodes = load_observations(args, target)
    tree = TreeConfig(top_k=args.top_k, depth=args.depth, total_tokens=args.total_tokens)
    temporal_relax = None
    if args.temporal:
        temporal_relax = args.temporal_relax or sorted({0, max(args.relax)})
    temporal = TemporalDraftConfig(enabled=True, history=args.temporal_history,
                                   proposals=tuple(args.temporal_proposals))
    modes = build_modes(args.relax, args.per_dimension, tree, temporal_relax, temporal, args.datastore)
    calibration = None
    if args.tree_auto:
        modes.append(Mode("SD r=0 (tree auto)", DecoderConfig(tree=TreeConfig(top_k=0, depth=0, total_tokens=0,
                                                                               auto=True))))
        path = args.calibration or Path(args.draft) / CALIBRATION_FILE
        calibration = read_calibration(path) if path.is_file() else None
    compile_mode = resolve_mode(args.compile, args.device)
    print(f"{len(images)} observations x {len(modes)} modes x {args.repeats} repeats, compile {compile_mode} ...",
          file=sys.stderr)
    with torch.inference_mode():
        runs = run_modes(target, head, modes, images, instructions, args.repeats, warmup=3, episodes=episodes,
                         compile_mode=compile_mode, calibration=calibration)
        width = metric_bin_width(target.action_tokenizer, NormStats.from_checkpoint(target.norm_stats, None))
        rows = [summarize(run, runs[1], width, runs[0]) for run in runs]
        if args.success_episodes:
            for row, success in zip(rows, success_rates(target, head, modes, args.success_episodes, args.seed,
                                                              args.success_max_steps, calibration),
                                    strict=True):
                row["success"] = success
        sweep = []
        if args.sweep or args.calibrate:
            count = min(args.sweep_frames, len(images))
            grid = [(k, d, t) for k in args.sweep_top_k for d in args.sweep_depth for t in args.sweep_total
                    if t >= k and (k > 1 or t == args.sweep_total[0])]  # a chain has one size
            sweep_relax = 0 if args.calibrate else max(args.relax)
            sweep = tree_sweep(target, head, images[:count], instructions[:count], sweep_relax, args.repeats,
                               grid, compile_mode)
    meta = {"model": str(args.model), "draft": str(args.draft), "observations": len(images),
            "source": (f"every frame of {args.episodes} closed-loop simulated episodes driven by the target's AR "
                       f"actions (seeds {args.seed}+)" if args.episodes else
                       (str(args.data) if args.data else "simulation frames (scripted expert, 3 tasks)")
                       + (f", in episode order ({len(set(episodes))} episodes)" if args.temporal else "")),
            "temporal": {"relax": temporal_relax, "proposals": list(temporal.proposals),
                         "history": temporal.history} if args.temporal else None,
            "repeats": args.repeats,
            "tree": {"top_k": tree.top_k, "depth": tree.depth, "total_tokens": tree.total_tokens},
            "device": args.device, "dtype": args.dtype, "machine": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(), "compile": compile_mode,
            "sweep_relax": (0 if args.calibrate else max(args.relax)) if sweep else None,
            "wall_s": round(time.perf_counter() - started, 1)}
    args.out.mkdir(parents=True, exist_ok=True)
    if args.calibrate:
        written = write_calibration(args.out / CALIBRATION_FILE, calibration_shapes(sweep),
                                    f"bench/decode_benchmark.py --calibrate on {count} frames of {meta['source']}, "
                                    f"{meta['machine']}, {meta['threads']} threads, compile {compile_mode}")
        print(f"calibration: {written} (copy it beside the draft head for decoder.tree.auto)", file=sys.stderr)
    (args.out / "results.json").write_text(json.dumps({"meta": meta, "modes": rows, "sweep": sweep}, indent=1) + "\n")
    table = markdown(meta, rows, sweep)
    (args.out / "results.md").write_text(table)
    try:
        pictures = plots(rows, args.out)
    except ImportError:  # the GPU machine has no matplotlib: the JSON and markdown carry everything
        pictures = []
    print(table)
    print(f"written: {args.out / 'results.json'}, {args.out / 'results.md'}, " + ", ".join(map(str, pictures)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
