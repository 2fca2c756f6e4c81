"""OpenVLA's resize is what Pillow 10.3-12.x computed, whatever Pillow is installed (issue 20).

Pillow 13 changed the order of its two resize passes on portrait frames (taller than wide, height
shrinking: 300x100 and 480x200 here); the preprocessing runs the passes one at a time in the old
order. Checked here against Pillow's arithmetic written out (pillow_reference.py) and against a
digest of Pillow 12.0's own output.
"""
from __future__ import annotations

import hashlib

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from specvla_ros.core.openvla.preprocessing import PIL_RESAMPLE, BackboneTransform, resize_like_openvla
from test.core.openvla.pillow_reference import bicubic_resize

BICUBIC = PIL_RESAMPLE["bicubic"]
# Pillow 12.0.0's (and 10.3.0's) Image.fromarray(patterned_frame(300, 100)).resize((224, 224), BICUBIC);
# Pillow 13.0.0 gives 0fc2dd86...
PILLOW_12_PORTRAIT_SHA256 = "e871e789b238e0ff0b5ea406ce043de950a286254db3e7cc984f3a1f6ecac57c"


def patterned_frame(height: int, width: int) -> np.ndarray:
    """A frame with edges and fine detail, from a formula (no random generator whose stream could change)."""
    y, x, c = np.meshgrid(np.arange(height), np.arange(width), np.arange(3), indexing="ij")
    return ((x * 37 + y * 91 + c * 53 + (x * y) % 29 + (x // 7) * (y // 5) * 11) % 256).astype(np.uint8)


def test_a_portrait_frame_is_resized_as_pillow_12_did() -> None:
    frame = patterned_frame(300, 100)  # height > 224 > width: where Pillow 13 differs
    resized = resize_like_openvla(frame, 224, BICUBIC)
    assert resized.shape == (224, 224, 3) and resized.dtype == np.uint8
    np.testing.assert_array_equal(resized, bicubic_resize(frame, 224, 224))
    assert hashlib.sha256(resized.tobytes()).hexdigest() == PILLOW_12_PORTRAIT_SHA256


@settings(max_examples=40, deadline=None)
@given(height=st.integers(1, 600), width=st.integers(1, 600), size=st.sampled_from([224, 56]),
       seed=st.integers(0, 2**32 - 1))
def test_every_frame_shape_matches_pillow_12(height: int, width: int, size: int, seed: int) -> None:
    frame = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    np.testing.assert_array_equal(resize_like_openvla(frame, size, BICUBIC), bicubic_resize(frame, size, size))


def test_the_backbone_input_of_a_portrait_frame() -> None:
    """The whole per-backbone transform (resize, /255, normalize) on a portrait camera frame."""
    frame = patterned_frame(480, 200)
    mean, std = (0.484375, 0.455078125, 0.40625), (0.228515625, 0.2236328125, 0.224609375)
    pixels = BackboneTransform(224, BICUBIC, mean, std)(frame)
    expected = torch.from_numpy(bicubic_resize(frame, 224, 224)).permute(2, 0, 1).float().div(255)
    expected = (expected - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
    torch.testing.assert_close(pixels, expected, atol=0, rtol=0)
