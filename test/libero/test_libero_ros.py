"""Opt-in: LIBERO scenes through specvla_node over real DDS topics (needs `make setup-libero`).

Skipped unless the LIBERO extra is installed in the running Python, so the default CI run needs
none of it. Run: `.venv-libero/bin/python -m pytest test/libero -q` (about two minutes on 2 CPUs:
building a LIBERO scene takes 10-20 s).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from specvla_ros.libero.env import is_available

if not is_available():
    pytest.skip("LIBERO extra not installed (make setup-libero)", allow_module_level=True)

import rclpy  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from specvla_ros.msg import EndEffectorDelta  # noqa: E402

from specvla_ros.cli import main as cli_main  # noqa: E402
from specvla_ros.core.config import DecoderConfig  # noqa: E402
from specvla_ros.core.loading import load_decoder  # noqa: E402
from specvla_ros.libero import conventions as conv  # noqa: E402
from specvla_ros.libero.env import LiberoConfig, LiberoEnv  # noqa: E402
from specvla_ros.libero.errors import LiberoUsageError  # noqa: E402
from specvla_ros.models import embedded_pair  # noqa: E402
from specvla_ros.ros.libero_bridge import LIBERO_NODE_PARAMETERS, LiberoBridgeNode  # noqa: E402
from specvla_ros.ros.node import SpecVLANode  # noqa: E402
from test.ros.conftest import spin_until  # noqa: E402

pytestmark = pytest.mark.slow
STEPS = 3


@pytest.fixture(scope="module")
def decoder():
    """The tiny embedded model pair (trained on the tabletop, not LIBERO): enough to drive the loop."""
    model = embedded_pair()
    return load_decoder(model.target_path, model.draft_path, DecoderConfig(relax_bins=0))


@pytest.mark.parametrize("suite", conv.SUITES)
def test_each_suite_runs_through_the_node(suite: str, decoder) -> None:
    """Frames go out on the camera topic, the node's commands come back and step LIBERO."""
    env = LiberoEnv(LiberoConfig(suite=suite, max_steps=STEPS))
    context = Context()
    rclpy.init(context=context)
    nodes = []
    try:
        node = SpecVLANode(decoder=decoder, context=context, parameter_overrides=[
            Parameter(k, value=v) for k, v in LIBERO_NODE_PARAMETERS.items()])
        bridge = LiberoBridgeNode(env, [(0, 0)], context=context)
        listener = rclpy.create_node("listener", context=context)
        nodes = [node, bridge, listener]
        frames: list[Image] = []
        commands: list[EndEffectorDelta] = []
        listener.create_subscription(Image, "/camera/image_raw", frames.append, qos_profile_sensor_data)
        listener.create_subscription(EndEffectorDelta, "/specvla_node/command", commands.append, 10)
        executor = SingleThreadedExecutor(context=context)
        for n in nodes:
            executor.add_node(n)
        assert spin_until(executor, lambda: bridge.finished, timeout_s=120.0)
        executor.shutdown()
    finally:
        for n in nodes:
            n.destroy_node()
        rclpy.try_shutdown(context=context)
        env.close()

    assert len(bridge.records) == 1
    record = bridge.records[0]
    assert (record.task, record.seed, record.steps, record.success) == (f"{suite}/0", 0, STEPS, False)
    assert record.instruction and record.latency_ms  # the node reported its decodes
    assert bridge.frames_published == STEPS and bridge.commands_applied == STEPS and bridge.timeouts == 0
    assert frames, "no camera frame reached a subscriber"
    assert (frames[0].height, frames[0].width, frames[0].encoding) == (224, 224, "rgb8")
    pixels = np.frombuffer(bytes(frames[0].data), np.uint8)
    assert pixels.std() > 10  # a rendered scene, not a blank frame
    model_commands = [c for c in commands if c.source == EndEffectorDelta.SOURCE_MODEL]
    assert len(model_commands) >= STEPS
    stamps = {(f.header.stamp.sec, f.header.stamp.nanosec) for f in frames}
    assert any((c.image_stamp.sec, c.image_stamp.nanosec) in stamps for c in model_commands)


@pytest.fixture(scope="module")
def spatial_env():
    env = LiberoEnv(LiberoConfig(suite="libero_spatial", max_steps=4))
    yield env
    env.close()


def test_gripper_convention_in_the_simulator(spatial_env: LiberoEnv) -> None:
    """Our gripper 0 closes the Panda's fingers, 1 opens them (robosuite's -1 = open is converted)."""
    observation = spatial_env.reset(0, 0)
    assert observation.state["gripper"][0] > 0.9  # starts open after the settle steps
    for _ in range(3):
        closing = spatial_env.step([0, 0, 0, 0, 0, 0, 0.0])
    assert closing.observation.state["gripper"][0] < observation.state["gripper"][0] - 0.1
    assert closing.info["applied_action"][6] == conv.ROBOSUITE_GRIPPER_CLOSE
    last = spatial_env.step([0, 0, 0, 0, 0, 0, 1.0])
    assert last.done and last.info["truncated"] and not last.success  # max_steps=4
    assert last.info["applied_action"][6] == conv.ROBOSUITE_GRIPPER_OPEN


def test_episodes_are_the_tasks_fixed_initial_states(spatial_env: LiberoEnv) -> None:
    first = spatial_env.reset(1, 0)
    again = spatial_env.reset(1, 0)
    np.testing.assert_array_equal(first.image, again.image)  # same initial state, same frame
    np.testing.assert_allclose(first.state["ee_pos"], again.state["ee_pos"])
    assert first.image.shape == (224, 224, 3)
    assert spatial_env.n_episodes(0) == 50
    assert spatial_env.task_index(first.instruction) == 0
    with pytest.raises(LiberoUsageError):
        spatial_env.reset(50, 0)
    with pytest.raises(LiberoUsageError):
        spatial_env.reset(0, 10)


def test_libero_eval_writes_the_success_table(tmp_path: Path) -> None:
    out = tmp_path / "eval"
    assert cli_main(["libero-eval", "--suite", "libero_object", "--task", "2", "--episodes", "2",
                     "--max-steps", "2", "--out", str(out)]) == 0
    report = json.loads((out / "results.json").read_text())
    assert report["meta"]["suite"] == "libero_object" and report["meta"]["through_ros"]
    assert [e["seed"] for e in report["episodes"]] == [0, 1] and {e["steps"] for e in report["episodes"]} == {2}
    assert report["tasks"]["libero_object/2"]["episodes"] == 2
    assert "| libero_object/2 | 2 |" in (out / "results.md").read_text()
