"""Animated GIFs of episodes (Pillow only), small enough to live in the docs.

One shared palette for all frames (computed from a few sampled frames) keeps the file small
and avoids the colour flicker that per-frame palettes cause.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw


def caption_frame(frame: np.ndarray, lines: Sequence[str], line_px: int = 13) -> np.ndarray:
    """Return `frame` with a dark text bar underneath, one row per line (instruction, step...)."""
    h, w, _ = frame.shape
    canvas = Image.new("RGB", (w, h + line_px * len(lines) + 4), (20, 20, 24))
    canvas.paste(Image.fromarray(frame), (0, 0))
    draw = ImageDraw.Draw(canvas)
    for i, text in enumerate(lines):
        draw.text((4, h + 2 + i * line_px), text, fill=(235, 235, 235))
    return np.asarray(canvas)


def save_gif(
    frames: Sequence[np.ndarray],
    path: str | Path,
    fps: float = 10.0,
    every: int = 1,
    colors: int = 256,
    hold_last_s: float = 1.0,
) -> Path:
    """Write frames (H, W, 3 uint8) as a looping GIF; keep every `every`-th frame; return the path."""
    if not frames:
        raise ValueError("save_gif needs at least one frame")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    kept = list(frames[::every])
    if len(frames) > 1 and (len(frames) - 1) % every:
        kept.append(frames[-1])  # always end on the final state
    sample_idx = np.linspace(0, len(kept) - 1, num=min(len(kept), 6)).round().astype(int)
    palette_source = Image.fromarray(np.concatenate([kept[i] for i in sample_idx], axis=0))
    palette = palette_source.quantize(colors=colors, method=Image.Quantize.MEDIANCUT)
    images = [Image.fromarray(f).quantize(palette=palette, dither=Image.Dither.NONE) for f in kept]
    frame_ms = int(round(1000.0 * every / fps))
    durations = [frame_ms] * len(images)
    durations[-1] = max(frame_ms, int(1000 * hold_last_s))
    images[0].save(path, save_all=True, append_images=images[1:], duration=durations, loop=0, optimize=True)
    return path
