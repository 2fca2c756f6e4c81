"""Parameter table: defaults pass their own checks, bad values are refused with a reason."""
from __future__ import annotations

from specvla_ros.ros.parameters import SPECS, SPECS_BY_NAME, check_update


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
