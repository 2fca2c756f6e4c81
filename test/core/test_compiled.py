"""The compiled path: r = 0 equals AR on the shipped pair and an OpenVLA layout, no graph is built
after the warm-up, a failing compiler falls back to eager, and a decode reads the host once per
verify step (AR: once)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch._dynamo.utils
from torch.overrides import TorchFunctionMode

from specvla_ros.core.compilation import CompiledFunction
from specvla_ros.core.config import DecoderConfig, TreeConfig
from specvla_ros.core.decoder import build_decoder
from specvla_ros.core.draft_head import DraftHead
from specvla_ros.core.loading import load_backbone, load_draft
from specvla_ros.core.temporal_draft import TemporalDraftConfig
from specvla_ros.models import BUNDLED
from test.models import make_pair, observations

pytestmark = pytest.mark.slow  # see pytest.ini: make test-fast leaves these out

FRAMES = np.load(Path(__file__).resolve().parents[2] / "bench" / "data" / "tabletop_frames.npz")
# One fixed tree with temporal chains: each new shape compiles new graphs, so CI runs one.
TREE = TreeConfig(top_k=3, depth=3, total_tokens=12)
TEMPORAL = TemporalDraftConfig(enabled=True, draft_head=True)


def graphs_built() -> int:
    return torch._dynamo.utils.counters["stats"]["unique_graphs"]


def _compiled_pair(target, head, config: DecoderConfig):
    fast = build_decoder(target, head, config)
    fast.compile("default")
    fast.warm_up()
    reference = build_decoder(target, None, DecoderConfig(mode="autoregressive"))
    reference.compile("default")
    reference.warm_up()
    return fast, reference


def _check_r0_equals_ar(fast, reference, images, instructions) -> int:
    """Decode consecutive frames with both; return how many drafted tokens were accepted."""
    before = graphs_built()
    accepted = 0
    for index, (image, text) in enumerate(zip(images, instructions, strict=True)):
        result = fast.decode(image, text, time_s=0.1 * index)
        assert result.token_ids == reference.decode(image, text).token_ids, index
        accepted += sum(result.stats.accepted_per_step)
    assert graphs_built() == before, "a graph was compiled after the warm-up"
    assert fast._verify.compiled and reference.backbone.language.compiled  # no silent fall-back to eager
    assert fast._prefill_verify is None or fast._prefill_verify.compiled
    return accepted


def test_compiled_r0_equals_compiled_ar_on_the_shipped_pair() -> None:
    target = load_backbone(BUNDLED / "target")
    head = load_draft(BUNDLED / "draft", target)
    fast, reference = _compiled_pair(target, head, DecoderConfig(tree=TREE, temporal=TEMPORAL, prefill_drafts=True))
    images, instructions = FRAMES["images"][:24], [str(text) for text in FRAMES["instructions"][:24]]
    assert _check_r0_equals_ar(fast, reference, images, instructions) > 24
    eager = build_decoder(target, None, DecoderConfig(mode="autoregressive"))
    eager.compile("off")
    for image, text in zip(images[:4], instructions[:4], strict=True):  # compiled AR = eager AR
        assert eager.decode(image, text).token_ids == reference.decode(image, text).token_ids


def test_compiled_r0_equals_compiled_ar_on_an_openvla_layout(openvla_checkpoint) -> None:
    target = load_backbone(openvla_checkpoint)
    head = DraftHead.random(target, seed=3, num_heads=4)
    fast, reference = _compiled_pair(target, head, DecoderConfig(tree=TREE, temporal=TEMPORAL, prefill_drafts=True))
    rng = np.random.default_rng(4)
    images = [rng.integers(0, 256, (56, 56, 3), dtype=np.uint8) for _ in range(20)]
    _check_r0_equals_ar(fast, reference, images, ["pick up the red cube"] * 20)


def test_a_failing_compiler_falls_back_to_eager_once(caplog) -> None:
    calls = []

    def add_one(x: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return x + 1

    function = CompiledFunction(add_one, "default")

    def broken(*_args):
        raise RuntimeError("no C++ compiler here")

    function._compiled = broken
    assert function(torch.zeros(2)).tolist() == [1.0, 1.0]
    assert not function.compiled and "decoding eager from now on" in caplog.text
    assert function(torch.ones(2)).tolist() == [2.0, 2.0] and len(calls) == 2


class HostReads(TorchFunctionMode):
    """Counts the tensor -> host reads a decode makes (item, tolist, int(), bool(), indexing by a tensor...)."""

    READS = {"tolist", "item", "__int__", "__float__", "__bool__", "__index__", "numpy", "cpu"}

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") in self.READS:
            self.count += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("config", [
    DecoderConfig(mode="autoregressive"),
    DecoderConfig(),
    DecoderConfig(tree=TreeConfig(top_k=2, depth=5, total_tokens=10), temporal=TEMPORAL),
    DecoderConfig(relax_bins=3, temporal=TemporalDraftConfig(enabled=True, draft_head=False)),
])
def test_a_decode_reads_the_host_once_per_verify_step(config) -> None:
    target, head = make_pair(6, train_steps=20)
    decoder = build_decoder(target, head if config.uses_draft_head else None, config)
    for index, (image, text) in enumerate(observations(6, 4)):
        with HostReads() as reads:
            result = decoder.decode(image, text, time_s=0.1 * index)
        steps = len(result.stats.accepted_per_step)
        assert reads.count == (1 if config.mode == "autoregressive" else steps), (reads.count, steps)
