"""Regression tests for issue 22, one or more per class of defect, on the real node over loopback DDS.

Classes: unsafe commands from accepted configuration; resource exhaustion from one message; bad
shutdown (also test_fuzz's signal cases); health that lies; surprising enable state; non-action
tokens; errors a user cannot read.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage
from specvla_ros.msg import EndEffectorDelta
from std_msgs.msg import Bool

from specvla_ros.core.config import DecoderConfig
from specvla_ros.core.draft_head import DraftHead
from specvla_ros.core.errors import SpecVLAError
from specvla_ros.core.loading import load_decoder
from specvla_ros.core.tiny.model import TinyVLA
from specvla_ros.models import BUNDLED
from specvla_ros.ros.model_check import ModelCheckError
from specvla_ros.ros.node import SpecVLANode
from specvla_ros.ros.process_worker import DecoderStartError
from specvla_ros.ros.qos import TASK_QOS
from test.models import SMALL
from test.ros.conftest import spin_until
from test.ros.fuzz_harness import process_rss_bytes
from test.ros.fuzz_traffic import png_bomb
from test.ros.test_node import FRAME, LIVE, Rig, SlowDecoder

pytestmark = pytest.mark.slow  # see pytest.ini: make test-fast leaves these out

MODEL, ZERO, HOLD = EndEffectorDelta.SOURCE_MODEL, EndEffectorDelta.SOURCE_ZERO, EndEffectorDelta.SOURCE_HOLD
TASK = "pick up the red cube"


def values(status: DiagnosticStatus) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


def statuses_since(rig: Rig, count_before: int) -> list[DiagnosticStatus]:
    return rig.diagnostics[count_before:]


@pytest.fixture(scope="module")
def tabletop_decoder():
    return load_decoder(BUNDLED / "target", BUNDLED / "draft", DecoderConfig())


# ----- unsafe or impossible commands from accepted configuration ------------------------------------
@pytest.mark.parametrize("overrides, names", [
    ({"action_low": [float("nan")] + [-0.05] * 5 + [0.0]}, "action_low must be a finite number"),
    ({"action_high": [0.05, 0.05]}, "action_high must have 7 entries"),
    ({"action_low": [0.1] * 7, "action_high": [0.05] * 7}, "action_low must not exceed action_high"),
    ({"action_low": [0.01] * 6 + [0.0]}, "contain 0 in the motion dimensions"),
    ({"max_linear_speed_mps": float("nan")}, "max_linear_speed_mps"),
    ({"control_rate_hz": 10}, "control_rate_hz must be a double, got 10 (write floats with a decimal point"),
    ({"decoder.relax_bins": [1, 2]}, "decoder.relax_bins must have 1 or 7 entries"),
])
def test_bad_startup_configuration_is_refused_in_one_line(ros_context, spec_decoder, overrides, names) -> None:
    parameters = [Parameter(name, value=value) for name, value in overrides.items()]
    with pytest.raises(SpecVLAError) as refused:
        SpecVLANode(decoder=spec_decoder, context=ros_context, parameter_overrides=parameters)
    assert names in str(refused.value) and "\n" not in str(refused.value)


def test_dry_run_switched_on_mid_motion_sends_the_zeros_first(make_rig, spec_decoder) -> None:
    rig = make_rig(spec_decoder, **LIVE, zero_commands_on_disable=3)
    rig.send_task(TASK)
    rig.spin(1.5, frame_hz=10)
    assert MODEL in rig.sources()
    assert rig.node.set_parameters([Parameter("dry_run", value=True)])[0].successful
    switched = time.monotonic()
    rig.spin(1.0, frame_hz=10)
    assert rig.sources(since=switched) == [ZERO] * 3


def test_bounds_changed_live_apply_to_held_and_zero_commands(make_rig, spec_decoder) -> None:
    rig = make_rig(spec_decoder, **{**LIVE, "stale_action_policy": "hold", "action_timeout_s": 0.2})
    rig.send_task(TASK)
    rig.spin(1.2, frame_hz=10)
    narrow_low, narrow_high = [-0.001] * 6 + [0.0], [0.001] * 6 + [0.1]
    assert rig.node.set_parameters([Parameter("action_low", value=narrow_low),
                                    Parameter("action_high", value=narrow_high)])[0].successful
    changed = time.monotonic()
    rig.spin(1.0)  # camera silent: the held action, then disable zeros, all under the new bounds
    rig.node.set_parameters([Parameter("dry_run", value=True)])
    rig.spin(0.5)
    late = [m for t, m in rig.commands if t >= changed + 0.1]
    assert {m.source for m in late} >= {HOLD, ZERO}
    for command in late:
        action = [command.translation.x, command.translation.y, command.translation.z, command.rotation.x,
                  command.rotation.y, command.rotation.z, command.gripper]
        assert np.all(np.asarray(action) >= np.asarray(narrow_low) - 1e-7)
        assert np.all(np.asarray(action) <= np.asarray(narrow_high) + 1e-7)


# ----- resource exhaustion from one message --------------------------------------------------------
def test_a_long_task_is_refused_not_decoded(make_rig, spec_decoder) -> None:
    rig = make_rig(spec_decoder, **LIVE)
    rig.send_task(TASK)
    rig.spin(1.2, frame_hz=10)
    rss_before = process_rss_bytes(os.getpid())
    rig.send_task("pick up the cube " * 6000)  # 100 kB: asked for ~10 GB before the budget
    refused = time.monotonic()
    stats_before = len(rig.stats)
    rig.spin(1.5, frame_hz=10)
    assert process_rss_bytes(os.getpid()) - rss_before < 100 * 2 ** 20
    assert len(rig.stats) - stats_before <= 1  # at most the decode already in flight
    assert MODEL not in rig.sources(since=refused + 0.2)  # the old task stopped too
    status = rig.last_status()
    assert status.level == DiagnosticStatus.ERROR and status.message.startswith("task_rejected: task of 101999 bytes")


def test_a_png_bomb_is_refused_before_decompression(ros_context, spec_decoder) -> None:
    rig = Rig(ros_context, spec_decoder, **LIVE, **{"topics.compressed_image": "/camera/compressed"})
    try:
        frames = rig.tester.create_publisher(CompressedImage, "/camera/compressed", qos_profile_sensor_data)
        bomb = CompressedImage(format="png", data=png_bomb())
        jpeg = CompressedImage(format="jpeg", data=cv2.imencode(".jpg", FRAME)[1].tobytes())
        rig.send_task(TASK)
        rss_before = process_rss_bytes(os.getpid())
        end = time.monotonic() + 1.5
        while time.monotonic() < end:
            frames.publish(bomb)
            rig.spin(0.1)
        assert process_rss_bytes(os.getpid()) - rss_before < 200 * 2 ** 20  # one decoded bomb: 1.2 GB
        assert "image_too_large: frame refused: png header says 20000x20000" in rig.last_status().message
        resumed = time.monotonic()
        end = resumed + 1.5
        while time.monotonic() < end:
            frames.publish(jpeg)
            rig.spin(0.1)
        assert MODEL in rig.sources(since=resumed)
    finally:
        rig.close()


def test_a_slow_decode_is_reported_and_the_control_loop_never_waits(make_rig, spec_decoder) -> None:
    rig = make_rig(SlowDecoder(spec_decoder, 2.5), **LIVE, latency_budget_ms=200.0,
                   **{"model.startup_check": False})
    rig.send_task(TASK)
    rig.spin(1.6, frame_hz=10)  # the first decode is in flight for 2.5 s
    during = [m.source for t, m in rig.commands]
    assert len(during) >= 15 and set(during) == {ZERO}  # 20 Hz ticks while the model has not answered
    status = rig.last_status()
    assert status.level == DiagnosticStatus.WARN and "decode_over_budget: a decode has been running" in status.message
    rig.spin(2.5, frame_hz=10)
    assert int(values(rig.last_status())["count.decode_over_budget"]) >= 1


# ----- bad shutdown (signals: test_fuzz.test_fuzz_shutdown_at_random_moments_exits_cleanly) ------------
def test_shutdown_sends_zeros_last_and_does_not_wait_for_a_long_decode(make_rig, spec_decoder) -> None:
    decoder = SlowDecoder(spec_decoder, 0.3)
    rig = make_rig(decoder, **LIVE, **{"model.startup_check": False, "inference.shutdown_timeout_s": 0.5})
    rig.send_task(TASK)
    rig.spin(1.5, frame_hz=10)
    assert MODEL in rig.sources()
    decoder.delay_s = 5.0  # the next decode takes long
    rig.spin(0.4, frame_hz=10)
    started = time.monotonic()
    assert rig.node.shutdown() is False  # the decode outlived the bound: reported, not waited for
    assert time.monotonic() - started < 0.5 + 1.0
    rig.spin(0.5)
    assert [m.source for _, m in rig.commands][-3:] == [ZERO] * 3


# ----- health that lies -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def nan_checkpoint(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("nan_pair")
    shutil.copytree(BUNDLED / "draft", folder / "draft")
    target = TinyVLA.load(BUNDLED / "target")
    with torch.no_grad():
        for parameter in target.parameters():
            parameter.fill_(float("nan"))
    target.save(folder / "target")
    return folder


def test_a_nan_checkpoint_is_refused_at_start_up_in_a_thread(ros_context, nan_checkpoint) -> None:
    overrides = [Parameter("model.path", value=str(nan_checkpoint / "target")),
                 Parameter("model.draft_path", value=str(nan_checkpoint / "draft"))]
    with pytest.raises(ModelCheckError, match="failed the start-up check.*NaN/inf logits"):
        SpecVLANode(context=ros_context, parameter_overrides=overrides)


def test_a_nan_checkpoint_is_refused_at_start_up_in_a_decoder_process(ros_context, nan_checkpoint) -> None:
    overrides = [Parameter("model.path", value=str(nan_checkpoint / "target")),
                 Parameter("model.draft_path", value=str(nan_checkpoint / "draft")),
                 Parameter("inference.isolation", value="process")]
    with pytest.raises(DecoderStartError, match="ModelCheckError.*NaN/inf logits"):
        SpecVLANode(context=ros_context, parameter_overrides=overrides)


def test_weights_turning_nan_at_run_time_stop_model_commands(make_rig) -> None:
    decoder = load_decoder(BUNDLED / "target", BUNDLED / "draft", DecoderConfig())  # passes the check
    rig = make_rig(decoder, **LIVE)
    rig.send_task(TASK)
    rig.spin(1.2, frame_hz=10)
    assert MODEL in rig.sources()
    with torch.no_grad():  # the numerics break while running (e.g. an overflow on a new device)
        for parameter in decoder.backbone.parameters():
            parameter.fill_(float("nan"))
    broken = time.monotonic()
    rig.spin(2.0, frame_hz=10)
    assert MODEL not in rig.sources(since=broken + LIVE["action_timeout_s"] + 0.2)  # stale policy: zeros
    status = rig.last_status()
    assert status.level == DiagnosticStatus.ERROR and "nonfinite_output" in status.message
    assert "NaN/inf logits" in status.message


def test_a_stopped_decoder_process_is_reported_as_not_responding(ros_context) -> None:
    parameters = {**LIVE, "model.path": str(BUNDLED / "target"), "model.draft_path": str(BUNDLED / "draft"),
                  "inference.isolation": "process", "inference.heartbeat_timeout_s": 1.0}
    rig = Rig(ros_context, None, **parameters)
    try:
        worker = rig.node._worker
        rig.send_task(TASK)
        rig.spin(1.5, frame_hz=10)
        assert values(rig.last_status())["decoder_process"].startswith("running (pid")
        os.kill(worker.pid, signal.SIGSTOP)  # hung: alive, but never answers
        rig.spin(3.0, frame_hz=10)
        status = rig.last_status()
        assert status.level == DiagnosticStatus.ERROR
        assert "not responding: no heartbeat" in status.message
        assert values(status)["decoder_process"].startswith("not responding")
        assert rig.destroy_node_under_test() < 6.0  # killed after the shutdown bound
        assert not worker.alive
    finally:
        rig.close()


# ----- surprising state: a latched enable ----------------------------------------------------------
@pytest.mark.parametrize("accept_latched", [False, True])
def test_a_latched_enable_from_before_start_up(ros_context, spec_decoder, accept_latched) -> None:
    other = Node("enabler", context=ros_context)
    latch = other.create_publisher(Bool, "/vla/enable", TASK_QOS)
    latch.publish(Bool(data=True))  # published before the node exists, transient local
    rig = Rig(ros_context, spec_decoder, **{**LIVE, "start_enabled": False, "topics.enable": "/vla/enable",
                                            "accept_latched_enable": accept_latched})
    try:
        rig.executor.add_node(other)
        rig.send_task(TASK)
        rig.spin(1.5, frame_hz=10)
        assert (MODEL in rig.sources()) is accept_latched
        if not accept_latched:
            assert rig.commands == []
            latch.publish(Bool(data=True))  # published after start-up: applies
            enabled = time.monotonic()
            rig.spin(1.2, frame_hz=10)
            assert MODEL in rig.sources(since=enabled)
    finally:
        rig.close()
        other.destroy_node()


# ----- non-action tokens ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def text_preferring_pair(tmp_path_factory) -> Path:
    """A real tiny VLA whose head prefers text ids over action ids (as models do off-distribution)."""
    folder = tmp_path_factory.mktemp("text_pair")
    target = TinyVLA.random(SMALL, 5)
    first = target.action_tokenizer.first_action_token
    with torch.no_grad():
        weight = target.lm_head.weight
        weight[:first] = 3.0 * weight[first:].std() * torch.randn(weight[:first].shape,
                                                                  generator=torch.Generator().manual_seed(5))
    target.save(folder / "target")
    DraftHead.random(target, 6, num_heads=2).save(folder / "draft")
    return folder


def _text_pair_parameters(folder: Path, **extra) -> dict:
    return {**LIVE, "model.path": str(folder / "target"), "model.draft_path": str(folder / "draft"), **extra}


def test_an_action_with_non_action_tokens_is_never_published(make_rig, text_preferring_pair) -> None:
    rig = make_rig(None, **_text_pair_parameters(text_preferring_pair, **{"model.startup_check": False}))
    rig.send_task(TASK)
    rig.spin(2.0, frame_hz=10)
    assert rig.stats and all(s.non_action_tokens > 0 for s in rig.stats)
    assert MODEL not in rig.sources() and ZERO in rig.sources()
    status = rig.last_status()
    assert status.level == DiagnosticStatus.WARN and status.message.startswith("non_action_tokens: 7 of the 7")
    # Every such decode is counted: compare with a status published after the last decode (no frames,
    # no decodes; the 1 Hz status and the per-decode stats otherwise race by up to a second).
    rig.spin(0.5)
    decoded, seen = len(rig.stats), len(rig.diagnostics)
    assert spin_until(rig.executor, lambda: len(rig.diagnostics) > seen, 3.0)
    assert len(rig.stats) == decoded
    assert int(values(rig.last_status())["count.non_action_tokens"]) == decoded


def test_action_tokens_only_keeps_the_choice_among_actions(make_rig, text_preferring_pair) -> None:
    rig = make_rig(None, **_text_pair_parameters(text_preferring_pair, **{"decoder.action_tokens_only": True}))
    rig.send_task(TASK)
    rig.spin(2.0, frame_hz=10)
    assert rig.stats and all(s.non_action_tokens == 0 for s in rig.stats)
    assert MODEL in rig.sources()


def test_the_start_up_check_refuses_a_model_that_emits_text(ros_context, text_preferring_pair) -> None:
    overrides = [Parameter(k, value=v) for k, v in _text_pair_parameters(text_preferring_pair).items()]
    with pytest.raises(ModelCheckError, match="not action tokens.*decoder.action_tokens_only true"):
        SpecVLANode(context=ros_context, parameter_overrides=overrides)


# ----- errors a user can read ----------------------------------------------------------------------
def test_bad_frames_log_one_line_per_interval_and_tasks_cannot_forge_lines(make_rig, spec_decoder, capfd) -> None:
    from sensor_msgs.msg import Image

    rig = make_rig(spec_decoder, **LIVE)
    rig.send_task("pick up the red cube\n[ERROR] [0.0] [specvla_node]: forged")
    rig.spin(2.0, frame_hz=20, frame=Image(height=0, width=0, encoding="rgb8", step=0, data=b""))
    err = capfd.readouterr().err
    assert err.count("image_rejected: empty image") == 1  # 40 bad frames, one line (10 s interval)
    assert "\n[ERROR] [0.0] [specvla_node]: forged" not in err and "cube\\n[ERROR]" in err
    assert int(values(rig.last_status())["count.image_rejected"]) >= 20


def _run_node_cli(arguments: list[str], timeout_s: float = 60.0) -> subprocess.CompletedProcess:
    node = Path(sys.executable).parent / "specvla_node"
    return subprocess.run([str(node), "--ros-args", *arguments], capture_output=True, text=True, timeout=timeout_s)


def test_a_bad_draft_config_is_one_line_and_exit_code_1(tmp_path) -> None:
    shutil.copytree(BUNDLED, tmp_path / "pair")
    config = tmp_path / "pair" / "draft" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "num_heads": 0}))
    result = _run_node_cli(["-p", f"model.path:={tmp_path / 'pair' / 'target'}",
                            "-p", f"model.draft_path:={tmp_path / 'pair' / 'draft'}"])
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("specvla_node:")]
    assert len(errors) == 1 and "draft head config" in errors[0] and "num_heads must be a positive integer" in errors[0]
    assert "Traceback" not in result.stderr


def test_bad_parameter_types_on_the_command_line_are_one_line(tmp_path) -> None:
    result = _run_node_cli(["-p", f"model.path:={BUNDLED / 'target'}", "-p", "control_rate_hz:=fast"])
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "specvla_node: parameter control_rate_hz must be a double, got 'fast'" in result.stderr


def test_a_misspelt_choice_in_a_params_file_stops_the_start(tmp_path) -> None:
    """Issue 20's finding: `inference.isolation: procss` used to run in a thread without a word."""
    params = tmp_path / "arm.yaml"
    params.write_text("specvla_node:\n  ros__parameters:\n    inference.isolation: procss\n"
                      f"    model.path: {BUNDLED / 'target'}\n")
    result = _run_node_cli(["--params-file", str(params)])
    assert result.returncode == 1 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("specvla_node:")]
    assert errors == ["specvla_node: parameter inference.isolation must be one of thread, process, got 'procss'"]
