"""Launch file and shipped YAML agree with the parameters the node declares.

`launch` / `launch_ros` are not installable without a ROS distro, so the launch file is read as
source here; where launch_ros imports, the description is also built for real.
"""
from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest
import yaml

from specvla_ros.ros.parameters import SPECS_BY_NAME

REPO = Path(__file__).resolve().parents[2]
LAUNCH_FILE = REPO / "launch" / "arm.launch.py"


def _same_type(value, default) -> bool:
    if isinstance(default, list):
        return isinstance(value, list) and all(type(v) is type(default[0]) for v in value)
    return type(value) is type(default)


def _launch_overrides() -> dict:
    tree = ast.parse(LAUNCH_FILE.read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "PARAMETER_OVERRIDES":
            return ast.literal_eval(node.value)
    raise AssertionError("PARAMETER_OVERRIDES not found in arm.launch.py")


def test_launch_overrides_name_real_parameters() -> None:
    overrides = _launch_overrides()
    assert {"model_path", "device", "dry_run"} <= set(overrides)
    for argument, (parameter, help_text) in overrides.items():
        assert parameter in SPECS_BY_NAME, f"launch argument {argument} sets unknown parameter {parameter}"
        assert help_text


@pytest.mark.parametrize("config", sorted((REPO / "config").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_yaml_matches_declared_parameters(config: Path) -> None:
    document = yaml.safe_load(config.read_text())
    parameters = document["specvla_node"]["ros__parameters"]
    for name, value in parameters.items():
        assert name in SPECS_BY_NAME, f"{config.name}: unknown parameter {name}"
        default = SPECS_BY_NAME[name].default
        assert _same_type(value, default), f"{config.name}: {name}={value!r} is not a {type(default).__name__}"
        assert SPECS_BY_NAME[name].check(value) is None


def test_arm_yaml_is_safe_by_default() -> None:
    parameters = yaml.safe_load((REPO / "config" / "arm.yaml").read_text())["specvla_node"]["ros__parameters"]
    assert parameters["dry_run"] is True
    assert parameters["start_enabled"] is False


def test_launch_description_builds_when_launch_ros_is_installed() -> None:
    pytest.importorskip("launch_ros", reason="launch_ros needs a ROS 2 distro; not on PyPI")
    spec = importlib.util.spec_from_file_location("arm_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    names = {a.name for a in description.get_launch_arguments()}
    assert {"params_file", "use_sim_time"} | set(module.PARAMETER_OVERRIDES) <= names


def _imported_names(tree: ast.Module) -> dict[str, str]:
    """name -> module it is imported from, for every `from module import name` in the file."""
    return {alias.name: node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
            for alias in node.names}


def test_launch_file_drives_the_lifecycle_node_with_the_standard_events() -> None:
    """Read as source (no launch_ros here): a launch_ros LifecycleNode started with autostart false, a
    ChangeState configure event, and an activate emitted only when configuring reaches inactive (a later
    deactivate by a supervisor must not be undone by the launch file)."""
    source = LAUNCH_FILE.read_text()
    tree = ast.parse(source)
    imported = _imported_names(tree)
    assert imported.get("LifecycleNode") == "launch_ros.actions" and "Node" not in imported
    assert imported.get("ChangeState") == "launch_ros.events.lifecycle"
    assert imported.get("OnStateTransition") == "launch_ros.event_handlers"
    assert imported.get("Transition") == "lifecycle_msgs.msg"
    calls = {node.func.id: node for node in ast.walk(tree) if isinstance(node, ast.Call)
             and isinstance(node.func, ast.Name)}
    handler = {kw.arg: kw.value for kw in calls["OnStateTransition"].keywords}
    assert ast.literal_eval(handler["start_state"]) == "configuring"
    assert ast.literal_eval(handler["goal_state"]) == "inactive"

    def transitions(root: ast.AST) -> list[str]:
        return sorted(ast.unparse(kw.value) for node in ast.walk(root) if isinstance(node, ast.Call)
                      for kw in node.keywords if kw.arg == "transition_id")

    assert transitions(tree) == ["Transition.TRANSITION_ACTIVATE", "Transition.TRANSITION_CONFIGURE"]
    assert transitions(calls["OnStateTransition"]) == ["Transition.TRANSITION_ACTIVATE"]
    assert '"autostart": False' in source
    assert SPECS_BY_NAME["autostart"].default is True  # a plain `specvla_node` still starts by itself
