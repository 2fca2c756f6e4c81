#!/usr/bin/env python3
"""Write bench/data/tabletop_frames.npz: frames the scripted expert sees on the three tabletop tasks.

    .venv/bin/python bench/make_frames.py [--frames 48] [--seed 500] [--out bench/data/tabletop_frames.npz]

The benchmarks read this numpy-only file where the simulator is not installed (the GPU machine) and
to keep runs comparable. Seeds 500+ are neither demonstration (10000+) nor evaluation (0+) seeds.
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--seed", type=int, default=500)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "data" / "tabletop_frames.npz")
    args = parser.parse_args(argv)
    spec = importlib.util.spec_from_file_location("decode_benchmark", Path(__file__).parent / "decode_benchmark.py")
    benchmark = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = benchmark
    spec.loader.exec_module(benchmark)
    images, instructions = benchmark.sim_observations(args.frames, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, images=np.stack(images), instructions=np.array(instructions))
    print(f"wrote {args.out}: {len(images)} frames, {args.out.stat().st_size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
