"""The ROS user's path, run for real: the package built in a colcon workspace and run from its install space.

A fresh workspace gets the package in src/ (the files a clone has), and colcon (pinned, in .venv-colcon;
`make setup` makes it) builds it with this venv's ROS 2 wheels as the underlay, where a robot would have
/opt/ros/<distro>. Then, from another directory and with only install/setup.bash sourced (plus the
underlay's Python on PATH, as a distro's is), the installed specvla_node runs on the bundled model pair:
a lifecycle manager here configures and activates it over the standard services, as launch/arm.launch.py
would, and receives its commands over DDS on loopback. What this does not run: launch_ros itself (not
installable without a distro), rosdep, and a distro other than the venv's.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image
from specvla_ros.msg import EndEffectorDelta
from std_msgs.msg import String

from specvla_ros.ros.image_conversion import rgb_to_image
from specvla_ros.ros.qos import TASK_QOS

pytestmark = pytest.mark.slow  # see pytest.ini: make test-fast leaves these out

REPO = Path(__file__).resolve().parents[1]
UNDERLAY = Path(sys.prefix)  # this venv: its ROS 2 wheels stand where a distro's install would
COLCON = Path(os.environ.get("SPECVLA_COLCON", REPO / ".venv-colcon" / "bin" / "colcon"))
PACKAGE = "specvla_ros"
MODEL, ZERO = EndEffectorDelta.SOURCE_MODEL, EndEffectorDelta.SOURCE_ZERO


def clean_environment() -> dict[str, str]:
    """What a fresh terminal on the robot has before sourcing anything: no PYTHONPATH, no ament paths,
    DDS kept on this machine, the underlay's interpreter on PATH."""
    return {"HOME": os.environ.get("HOME", "/tmp"), "LANG": "C.UTF-8",
            "PATH": f"{UNDERLAY / 'bin'}:/usr/bin:/bin",
            "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
            "ROS_DOMAIN_ID": os.environ["ROS_DOMAIN_ID"]}  # this test process's domain (test/conftest.py)


def clone_files() -> list[str]:
    """The files a clone of this checkout has (tracked, plus new ones not yet committed and not ignored)."""
    listing = subprocess.run(["git", "-C", str(REPO), "ls-files", "-co", "--exclude-standard", "-z"],
                             capture_output=True, text=True, check=True).stdout
    return [name for name in listing.split("\0") if name and (REPO / name).is_file()]


def sourced(workspace: Path, command: str, **popen: object) -> subprocess.Popen:
    """`command` in bash after `source install/setup.bash`, run from a directory outside the workspace."""
    elsewhere = workspace.parent / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    script = f'source "{workspace}/install/setup.bash" && {command}'
    return subprocess.Popen(["bash", "-c", script], cwd=elsewhere, env=clean_environment(), text=True, **popen)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A colcon workspace with the package built and installed (isolated layout, as colcon's default)."""
    if not COLCON.is_file():
        pytest.fail(f"colcon not found at {COLCON}: `make setup` installs it (requirements-colcon.txt)")
    workspace = tmp_path_factory.mktemp("colcon") / "ws"
    source = workspace / "src" / PACKAGE
    for name in clone_files():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, source / name)
    environment = {**clean_environment(), "AMENT_PREFIX_PATH": str(UNDERLAY), "CMAKE_PREFIX_PATH": str(UNDERLAY)}
    build = subprocess.run(
        [str(COLCON), "build", "--packages-select", PACKAGE, "--event-handlers", "console_direct-",
         "--cmake-args", f"-DPython3_EXECUTABLE={UNDERLAY / 'bin' / 'python'}", "-DBUILD_TESTING=OFF"],
        cwd=workspace, env=environment, capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, f"colcon build failed:\n{build.stdout[-3000:]}\n{build.stderr[-3000:]}"
    return workspace


def test_the_install_space_holds_launch_config_messages_models_and_executables(workspace: Path) -> None:
    prefix = workspace / "install" / PACKAGE
    share = prefix / "share" / PACKAGE
    site = prefix / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages" / PACKAGE
    assert (prefix / "share" / "ament_index" / "resource_index" / "packages" / PACKAGE).is_file()
    assert (share / "package.xml").read_bytes() == (REPO / "package.xml").read_bytes()
    for folder in ("launch", "config"):
        shipped = sorted(p.name for p in (REPO / folder).iterdir())
        assert shipped and sorted(p.name for p in (share / folder).iterdir()) == shipped, folder
    for definition in sorted((REPO / "msg").glob("*.msg")):
        assert (share / "msg" / definition.name).is_file(), definition.name
        module = "_" + "".join("_" + c.lower() if c.isupper() else c for c in definition.stem).lstrip("_") + ".py"
        assert (site / "msg" / module).is_file(), module
    assert list(site.glob(f"{PACKAGE}_s__rosidl_typesupport_c*.so")), "no type-support module installed"
    for script in sorted((REPO / "scripts").iterdir()):
        installed = prefix / "lib" / PACKAGE / script.name
        assert installed.is_file() and os.access(installed, os.X_OK), script.name
    models = [name for name in clone_files() if name.startswith(f"{PACKAGE}/models/")]
    assert any(name.endswith(".safetensors") for name in models)
    for name in models:  # every weight, config and card of the bundled pair, byte for byte
        installed = site / Path(name).relative_to(PACKAGE)
        assert installed.is_file(), name
        assert hashlib.sha256(installed.read_bytes()).digest() == hashlib.sha256((REPO / name).read_bytes()).digest()


def test_the_installed_node_runs_from_another_directory_and_commands_over_dds(workspace: Path) -> None:
    # What the sourced environment imports: the package from install/, not from this checkout.
    probe = sourced(workspace, "python3 -c 'import json, specvla_ros, specvla_ros.msg, specvla_ros.ros.node as n; "
                               "from specvla_ros.models import BUNDLED; "
                               "from ament_index_python.packages import get_package_prefix as prefix; "
                               "print(json.dumps([specvla_ros.__file__, specvla_ros.msg.__file__, n.__file__, "
                               f"str(BUNDLED), prefix(\"{PACKAGE}\")]))'", stdout=subprocess.PIPE)
    out, _ = probe.communicate(timeout=120)
    assert probe.returncode == 0
    *modules, bundled, prefix = json.loads(out)
    install = str(workspace / "install")
    assert all(path.startswith(install) for path in [*modules, bundled, prefix]), (modules, bundled, prefix)

    # `ros2 run specvla_ros specvla_node`, without ros2cli: the executable under the package's prefix.
    arguments = [f"model.path:={bundled}/target", f"model.draft_path:={bundled}/draft", "model.compile:=off",
                 "autostart:=false", "dry_run:=false", "start_enabled:=true", "control_rate_hz:=20.0"]
    command = f'exec "{prefix}/lib/{PACKAGE}/specvla_node" --ros-args ' + " ".join(f"-p {a}" for a in arguments)
    node = sourced(workspace, command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    context = Context()
    rclpy.init(context=context)
    manager = Node("colcon_test_manager", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(manager)
    commands: list[int] = []
    try:
        manager.create_subscription(EndEffectorDelta, "/specvla_node/command", lambda m: commands.append(m.source), 10)
        camera = manager.create_publisher(Image, "/camera/image_raw", qos_profile_sensor_data)
        task = manager.create_publisher(String, "/vla/instruction", TASK_QOS)
        change_state = manager.create_client(ChangeState, "/specvla_node/change_state")
        get_state = manager.create_client(GetState, "/specvla_node/get_state")
        assert change_state.wait_for_service(timeout_sec=120.0), "the installed node never offered its services"
        # A request sent before DDS has matched both directions of a service can be lost (no answer ever):
        # ask for the state until one comes back, so that a transition's answer below always arrives.
        answered = False
        for _ in range(30):
            future = get_state.call_async(GetState.Request())
            executor.spin_until_future_complete(future, timeout_sec=2.0)
            if answered := future.done():
                break
            get_state.remove_pending_request(future)
        assert answered, "the installed node's get_state service never answered"
        assert future.result().current_state.label == "unconfigured"  # autostart:=false

        def transition(transition_id: int) -> bool:
            future = change_state.call_async(ChangeState.Request(transition=Transition(id=transition_id)))
            executor.spin_until_future_complete(future, timeout_sec=120.0)
            assert future.done(), f"change_state ({transition_id}) got no answer"
            return future.result().success

        # A transition the state does not allow is refused, and the node goes on (Jazzy's rclpy raised it).
        assert not transition(Transition.TRANSITION_ACTIVATE)
        assert transition(Transition.TRANSITION_CONFIGURE), "configure failed (the model did not load)"
        assert transition(Transition.TRANSITION_ACTIVATE)
        task.publish(String(data="pick up the red cube"))
        frame = rgb_to_image(np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8))
        deadline = time.monotonic() + 60.0
        while commands.count(MODEL) < 5 and time.monotonic() < deadline:
            frame.header.stamp = manager.get_clock().now().to_msg()
            camera.publish(frame)
            for _ in range(10):
                executor.spin_once(timeout_sec=0.01)
        assert commands.count(MODEL) >= 5, f"commands received: {commands}"

        assert transition(Transition.TRANSITION_DEACTIVATE)
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.05)
        assert commands[-3:] == [ZERO] * 3  # the deactivate's zero commands, then silence
    finally:
        node.send_signal(signal.SIGINT)
        try:
            log, _ = node.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            node.kill()
            log, _ = node.communicate()
        executor.shutdown()
        manager.destroy_node()
        rclpy.try_shutdown(context=context)
    assert node.returncode == 0, log[-3000:]
    assert "Traceback" not in log
