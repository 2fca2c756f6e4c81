"""The pure parts of the LIBERO backend; these run in the default venv, without the LIBERO extra."""
from __future__ import annotations

import numpy as np
import pytest

from specvla_ros.libero import conventions as conv
from specvla_ros.libero.conventions import pick_unnorm_key
from specvla_ros.libero.errors import LiberoUsageError
from specvla_ros.libero.suites import MAX_STEPS, NUM_STEPS_WAIT


def test_gripper_open_closed_map_to_robosuite_signs() -> None:
    # Ours: 1 = open, 0 = closed. robosuite: -1 = open, +1 = close.
    assert conv.gripper_to_robosuite(1.0) == -1.0
    assert conv.gripper_to_robosuite(0.0) == 1.0
    assert conv.gripper_to_robosuite(0.8) == -1.0 and conv.gripper_to_robosuite(0.2) == 1.0
    assert conv.gripper_to_robosuite(0.5) == 0.0  # robosuite's "hold": its gripper integrates sign(command)
    assert conv.gripper_to_robosuite(7.0) == -1.0 and conv.gripper_to_robosuite(-3.0) == 1.0


def test_gripper_conversion_is_linear_without_binarizing_and_inverts() -> None:
    assert conv.gripper_to_robosuite(0.25, binarize=False) == pytest.approx(0.5)
    for g in np.linspace(0.0, 1.0, 11):
        assert conv.gripper_from_robosuite(conv.gripper_to_robosuite(g, binarize=False)) == pytest.approx(g)
    assert conv.gripper_from_robosuite(conv.ROBOSUITE_GRIPPER_OPEN) == 1.0
    assert conv.gripper_from_robosuite(conv.ROBOSUITE_GRIPPER_CLOSE) == 0.0


def test_osc_action_clamps_deltas_and_converts_gripper() -> None:
    out = conv.to_osc_action([0.1, -0.2, 0.3, 0.0, 0.05, -0.05, 1.0])
    np.testing.assert_allclose(out.action, [0.1, -0.2, 0.3, 0.0, 0.05, -0.05, -1.0])
    assert not out.refused and not out.clamped
    out = conv.to_osc_action([2.0, -3.0, 0, 0, 0, 0, 0.0])
    np.testing.assert_allclose(out.action, [1.0, -1.0, 0, 0, 0, 0, 1.0])
    assert out.clamped


def test_non_finite_action_is_refused_and_keeps_the_gripper() -> None:
    out = conv.to_osc_action([np.nan, 0, 0, 0, 0, 0, 1.0], previous_gripper=conv.ROBOSUITE_GRIPPER_CLOSE)
    np.testing.assert_array_equal(out.action, [0, 0, 0, 0, 0, 0, conv.ROBOSUITE_GRIPPER_CLOSE])
    assert out.refused
    with pytest.raises(LiberoUsageError, match="7 values"):
        conv.to_osc_action(np.zeros(6))


def test_upright_rotates_180_degrees() -> None:
    image = np.zeros((4, 6, 3), np.uint8)
    image[0, 0] = (255, 0, 0)  # top-left in MuJoCo's upside-down frame
    flipped = conv.upright(image)
    assert flipped.flags.c_contiguous
    assert tuple(flipped[3, 5]) == (255, 0, 0) and flipped[0, 0].sum() == 0
    np.testing.assert_array_equal(conv.upright(flipped), image)
    with pytest.raises(LiberoUsageError):
        conv.upright(np.zeros((4, 6), np.uint8))


def test_policy_image_is_upright_square_uint8() -> None:
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
    np.testing.assert_array_equal(conv.policy_image(raw, 224, jpeg_quality=None), conv.upright(raw))
    smooth = np.repeat(np.repeat(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), 16, 0), 16, 1)  # 256 x 256
    image = conv.policy_image(smooth, 224, jpeg_quality=95)
    assert image.shape == (224, 224, 3) and image.dtype == np.uint8
    plain = conv.policy_image(smooth, 224, jpeg_quality=None)
    assert np.abs(image.astype(int) - plain.astype(int)).mean() < 6  # JPEG at 95 changes little
    # Upright: the block that was at the raw image's bottom-right is now at the top-left.
    np.testing.assert_allclose(plain[4:10, 4:10].mean((0, 1)), smooth[-1, -1], atol=2)


def test_step_limits_are_the_papers() -> None:
    # OpenVLA's run_libero_eval.py, which Spec-VLA's evaluation uses.
    assert MAX_STEPS == {"libero_spatial": 220, "libero_object": 280, "libero_goal": 300, "libero_10": 520,
                         "libero_90": 400}
    assert NUM_STEPS_WAIT == 10
    assert conv.max_steps("libero_goal") == 300
    with pytest.raises(LiberoUsageError, match="libero_spatial"):
        conv.max_steps("libero_long")


def test_unnorm_key_follows_openvla() -> None:
    assert pick_unnorm_key(["tabletop"], "libero_goal") is None
    assert pick_unnorm_key(["bridge_orig", "libero_goal"], "libero_goal") == "libero_goal"
    assert pick_unnorm_key(["libero_10_no_noops", "x"], "libero_10") == "libero_10_no_noops"
    assert pick_unnorm_key(["a", "b"], "libero_10") is None  # the decoder then lists the keys
    assert pick_unnorm_key(["a", "b"], "libero_10", requested="b") == "b"
