"""Parameter table: defaults pass their own checks, bad values are refused with a reason, at start-up too."""
from __future__ import annotations

from typing import Any

import pytest
from rclpy.parameter import Parameter

from specvla_ros.ros.parameters import (
    DEVICE,
    DEVICES_HINT,
    OPTIONAL_TOPIC,
    SPECS,
    SPECS_BY_NAME,
    TOPIC,
    ParamSpec,
    check_update,
)


def _defaults() -> dict:
    return {spec.name: spec.default for spec in SPECS}


def test_defaults_are_valid() -> None:
    assert check_update(_defaults(), _defaults()) is None


def test_every_parameter_is_described() -> None:
    for spec in SPECS:
        assert len(spec.description) > 10, spec.name


def test_refusals_say_why() -> None:
    current = _defaults()
    assert "decoder.mode" in check_update({"decoder.mode": "beam"}, current)
    assert "7" in check_update({"decoder.relax_bins": [1, 2]}, current)
    assert "254" in check_update({"decoder.relax_bins": [300]}, current)
    assert "action_low" in check_update({"action_low": [0.1] * 7}, current)
    assert "stale_action_policy" in check_update({"stale_action_policy": "drift"}, current)


def test_safety_defaults() -> None:
    assert SPECS_BY_NAME["dry_run"].default is True
    assert SPECS_BY_NAME["start_enabled"].default is False


def test_model_compile_takes_yaml_booleans_too() -> None:
    """`-p model.compile:=off` reaches the node as the boolean false (YAML): it means off."""
    from specvla_ros.ros.parameters import SPECS_BY_NAME, compile_setting

    spec = SPECS_BY_NAME["model.compile"]
    assert spec.descriptor().dynamic_typing
    for value in (False, True, "off", "default", "reduce-overhead", "auto"):
        assert spec.check(value) is None
    assert spec.check("fast") is not None
    assert [compile_setting(value) for value in (False, True, "default")] == ["off", "auto", "default"]


# ----- issue 22: the same checks at start-up as on update ------------------------------------------
def test_startup_values_are_checked_like_updates() -> None:
    from specvla_ros.ros.parameters import check_startup

    defaults = _defaults()
    assert check_startup(defaults) is None
    nan_low = [float("nan")] + defaults["action_low"][1:]
    assert "finite" in check_startup({**defaults, "action_low": nan_low})
    assert "7 entries" in check_startup({**defaults, "action_high": [0.1, 0.1]})
    assert "dimension 6" in check_startup({**defaults, "action_high": [0.05] * 6 + [-1.0]})
    excludes_zero = [0.01] + defaults["action_low"][1:]
    assert "contain 0" in check_startup({**defaults, "action_low": excludes_zero})
    assert "finite" in check_startup({**defaults, "max_linear_speed_mps": float("inf")})
    assert "max_task_bytes" in check_startup({**defaults, "inputs.max_task_bytes": 0})


def test_action_tokens_only_default_and_budgets() -> None:
    assert SPECS_BY_NAME["decoder.action_tokens_only"].default is False  # refuse, do not re-choose (docs)
    assert SPECS_BY_NAME["accept_latched_enable"].default is False
    assert SPECS_BY_NAME["inputs.max_task_bytes"].default == 256
    assert SPECS_BY_NAME["inputs.max_image_pixels"].default == 3840 * 2160


# ----- issue 20: one bad start-up value per parameter, generated from the table -----------------------
def _type_mismatch(default: Any) -> Any:
    """A value of another type than the parameter's (rclpy refuses it at declaration)."""
    if isinstance(default, list):
        return [0.5] if default and isinstance(default[0], int) else [1] if default and isinstance(default[0], str) \
            else ["a"]
    return {bool: "maybe", int: "many", float: "fast", str: 42}[type(default)]


def _violations(spec: ParamSpec) -> list[tuple[str, Any, str]]:
    """(what is wrong, a start-up value, words the refusal must hold about what is allowed), from the table."""
    cases = []
    if not spec.also_bool:  # model.compile takes any type (YAML's off / on); its choices still apply
        default = spec.default
        expected = "a list of" if isinstance(default, list) else \
            {bool: "a bool", int: "an integer", float: "a double", str: "a string"}[type(default)]
        cases.append(("type", _type_mismatch(default), f"must be {expected}"))
    if spec.kind == DEVICE:
        cases.append(("device", "gpu0", DEVICES_HINT))
    if spec.kind in (TOPIC, OPTIONAL_TOPIC):
        cases.append(("topic", "two words", "a ROS topic name"))
    if spec.choices:
        bad = "not_" + spec.choices[0]
        cases.append(("choice", [bad] if isinstance(spec.default, list) else bad, ", ".join(spec.choices)))
    if spec.length:
        cases.append(("length", list(spec.default[:1]) * (max(spec.length) + 1), " or ".join(map(str, spec.length))))
    if spec.low is not None:
        kind = type(spec.default[0]) if isinstance(spec.default, list) else type(spec.default)
        for bad in (spec.high + 1, spec.low - 1):
            value = kind(bad)
            cases.append(("range", [value] * len(spec.default) if isinstance(spec.default, list) else value,
                          f"[{spec.low}, {spec.high}]"))
    return cases


STARTUP_CASES = [pytest.param(spec, value, allowed, id=f"{spec.name}-{what}")
                 for spec in SPECS for what, value, allowed in _violations(spec)]


def test_every_parameter_has_a_generated_bad_value() -> None:
    assert {case.values[0].name for case in STARTUP_CASES} == set(SPECS_BY_NAME)


@pytest.mark.parametrize("spec, value, allowed", STARTUP_CASES)
def test_a_bad_start_up_value_stops_the_node_in_one_line(ros_context, spec, value, allowed) -> None:
    """Refused at construction, before any model: the parameter, the value and what is allowed, one line."""
    from specvla_ros.core.errors import ConfigError
    from specvla_ros.ros.node import SpecVLANode

    with pytest.raises(ConfigError) as refused:
        SpecVLANode(context=ros_context, parameter_overrides=[Parameter(spec.name, value=value)])
    message = str(refused.value)
    shown = value[-1] if isinstance(value, list) and "length" not in message else value
    assert spec.name in message and str(shown) in message and allowed in message, message
    assert "\n" not in message


def test_a_refused_node_leaves_nothing_for_the_garbage_collector(ros_context) -> None:
    """A refused node is destroyed before the error leaves its constructor. Left to a later GC pass,
    the last node of a context destroys the DDS participant while holding the GIL, and Fast DDS waits
    for a listener thread that needs the GIL: a CI run hung there for good."""
    import gc
    import time

    from rclpy.node import Node

    from specvla_ros.core.errors import ConfigError
    from specvla_ros.ros.node import NODE_NAME, SpecVLANode

    tester = Node("refusal_watcher", context=ros_context)
    gc.disable()  # a leaked node would now stay alive, and visible in the graph
    try:
        with pytest.raises(ConfigError):
            SpecVLANode(context=ros_context, parameter_overrides=[Parameter("control_rate_hz", value=-1.0)])
        deadline = time.monotonic() + 2.0
        while NODE_NAME in tester.get_node_names() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert NODE_NAME not in tester.get_node_names()
    finally:
        gc.enable()
        tester.destroy_node()


def test_decoder_modes_are_the_same_for_the_cli_the_node_and_the_core() -> None:
    """Three copies, kept apart on purpose: `specvla --help` loads neither rclpy nor torch, the node's
    parameter table (read by launch files) no torch. They must not drift."""
    from typing import get_args

    from specvla_ros.cli.arguments import DECODER_MODES as CLI_MODES
    from specvla_ros.core.config import DecoderMode
    from specvla_ros.ros.parameters import DECODER_MODES as NODE_MODES

    assert set(CLI_MODES) == set(NODE_MODES) == set(get_args(DecoderMode))
