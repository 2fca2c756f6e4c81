"""specvla_node with model.compile on (its default): every graph is built before "ready", none on a
camera frame, and the first frame's decode is served by the compiled path (real node, real DDS)."""
from __future__ import annotations

import numpy as np
import pytest
import torch._dynamo.utils

from specvla_ros.models import BUNDLED
from test.ros.test_node import Rig

# The CPU-recommended mode: temporal guesses verified in the prefill (no draft head: one graph less).
pytestmark = pytest.mark.slow  # see pytest.ini: make test-fast leaves these out

PARAMETERS = {
    "model.path": str(BUNDLED / "target"), "model.draft_path": str(BUNDLED / "draft"),
    "temporal_draft.enabled": True, "temporal_draft.draft_head": False, "decoder.prefill_drafts": True,
    "decoder.tree.auto": False, "control_rate_hz": 20.0, "action_timeout_s": 2.0,
}


def graphs_built() -> int:
    return torch._dynamo.utils.counters["stats"]["unique_graphs"]


def test_the_node_compiles_before_ready_and_never_on_a_frame(ros_context) -> None:
    rig = Rig(ros_context, None, **PARAMETERS)  # loads, compiles and warms up here
    try:
        decoder = rig.node._worker.decoder
        assert decoder.compile_mode == "default" and decoder._verify.compiled and decoder._prefill_verify.compiled
        ready = graphs_built()
        rig.send_task("pick up the red cube")
        frame = np.random.default_rng(3).integers(0, 256, (224, 224, 3), dtype=np.uint8)
        from specvla_ros.ros.image_conversion import rgb_to_image

        rig.spin(8.0, frame_hz=10.0, frame=rgb_to_image(frame))
        assert len(rig.stats) >= 5, "the node answered too few frames"
        assert graphs_built() == ready, "a graph was compiled on a camera frame"
        guessed = [stats.target_forward_passes for stats in rig.stats[1:]]
        assert min(guessed) == 1  # the same frame again: the previous action is right, one forward
    finally:
        rig.close()
