"""Pillow's bicubic resize as OpenVLA ran it (Pillow 10.3 to 12.x), written out slowly (tests only).

Pillow resamples in two one-dimensional passes, horizontal first, each with weights from the bicubic
kernel (a = -0.5) widened by the scale when shrinking, normalised to sum 1, then rounded to 22-bit
fixed point; every pass rounds back to 8 bits. This file restates that arithmetic with plain Python
weights and numpy sums, so the tests know what OpenVLA's preprocessing produced without the
installed Pillow (13 changed the order of the passes on frames taller than wide whose height
shrinks). Checked bit for bit against Pillow 10.3.0, 11.3.0, 12.0.0 and 12.1.0 (docs/openvla.md).
"""
from __future__ import annotations

import numpy as np

PRECISION_BITS = 22  # 32 bits - 8 for the pixel - 2 for the kernel's negative lobes and overshoot
BICUBIC_SUPPORT = 2.0


def bicubic(x: float) -> float:
    """Pillow's bicubic kernel, a = -0.5, in its own operation order."""
    a = -0.5
    x = abs(x)
    if x < 1.0:
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    if x < 2.0:
        return (((x - 5) * x + 8) * x - 4) * a
    return 0.0


def pass_weights(in_size: int, out_size: int) -> list[tuple[int, list[int]]]:
    """Per output pixel: the first input pixel it reads and its fixed-point weights."""
    scale = in_size / out_size
    filter_scale = max(scale, 1.0)  # shrinking widens the kernel (antialiasing); enlarging does not
    support = BICUBIC_SUPPORT * filter_scale
    inverse = 1.0 / filter_scale
    weights = []
    for out in range(out_size):
        center = (out + 0.5) * scale
        first = max(int(center - support + 0.5), 0)  # int() truncates toward zero, as C's cast
        count = min(int(center + support + 0.5), in_size) - first
        taps = [bicubic((first + i - center + 0.5) * inverse) for i in range(count)]
        total = 0.0
        for tap in taps:
            total += tap
        if total != 0.0:
            taps = [tap / total for tap in taps]
        # Rounded half away from zero, as (int)(w * 2^22 +- 0.5) does.
        fixed = [int(tap * (1 << PRECISION_BITS) + (-0.5 if tap < 0 else 0.5)) for tap in taps]
        weights.append((first, fixed))
    return weights


def resample_axis(image: np.ndarray, out_size: int, axis: int) -> np.ndarray:
    """One pass along `axis` of a uint8 image; rounded and clipped back to uint8 as Pillow does."""
    source = np.moveaxis(image, axis, 0).astype(np.int64)
    out = np.empty((out_size, *source.shape[1:]), dtype=np.uint8)
    for index, (first, fixed) in enumerate(pass_weights(source.shape[0], out_size)):
        total = np.full(source.shape[1:], 1 << (PRECISION_BITS - 1), dtype=np.int64)  # + 0.5 for rounding
        for offset, weight in enumerate(fixed):
            total += source[first + offset] * weight
        out[index] = np.clip(total >> PRECISION_BITS, 0, 255)
    return np.moveaxis(out, 0, axis)


def bicubic_resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """uint8 (H, W, C) -> (height, width, C): Pillow 10.3-12.x `Image.resize((width, height), BICUBIC)`."""
    if image.shape[1] != width:
        image = resample_axis(image, width, axis=1)  # horizontal pass first
    if image.shape[0] != height:
        image = resample_axis(image, height, axis=0)
    return image
