"""The node's parameter values (name -> value, parameters.py) turned into the configs the rest uses:
the core's DecoderConfig, the DecoderSpec that loads the model (here or in the decoder process), and
the command gate's live safety settings. Plain functions, no rclpy: the node reads its parameters and
hands them over.
"""
from __future__ import annotations

from typing import Any

from specvla_ros.core.config import PAPER_TREE, DecoderConfig, TreeConfig
from specvla_ros.core.errors import SpecVLAError
from specvla_ros.core.temporal_draft import TemporalDraftConfig
from specvla_ros.ros.parameters import compile_setting
from specvla_ros.ros.process_worker import DecoderSpec
from specvla_ros.ros.safety import GateSettings, SafetyLimits


def decoder_config(values: dict[str, Any]) -> DecoderConfig:
    """How to decode; its own checks (e.g. temporal proposals that need history >= 2) raise ConfigError."""
    relax = tuple(int(r) for r in values["decoder.relax_bins"])
    auto = values["decoder.tree.auto"]
    # 0 = free for decoder.tree.auto to choose, or the authors' value without it.
    shape = {name: values[f"decoder.tree.{name}"] or (0 if auto else default) for name, default in PAPER_TREE.items()}
    tree = TreeConfig(**shape, auto=auto, restrict_to_action_tokens=values["decoder.tree.restrict_to_action_tokens"])
    return DecoderConfig(
        action_tokens_only=values["decoder.action_tokens_only"],
        mode=values["decoder.mode"],
        relax_bins=relax if len(relax) == 7 else relax[0],
        tree=tree,
        unnorm_key=values["model.unnorm_key"] or None,
        temporal=TemporalDraftConfig(
            enabled=values["temporal_draft.enabled"],
            history=values["temporal_draft.history"],
            proposals=tuple(values["temporal_draft.proposals"]),
            draft_head=values["temporal_draft.draft_head"],
            max_frame_age_s=values["temporal_draft.max_frame_age_s"],
            max_gap_s=values["temporal_draft.max_gap_s"],
            datastore=values["temporal_draft.datastore"],
            retrieved=values["temporal_draft.retrieved"],
        ),
        prefill_drafts=values["decoder.prefill_drafts"],
    )


def decoder_spec(values: dict[str, Any], config: DecoderConfig) -> DecoderSpec:
    """What to load, from the model parameters; loaded in the node's process or in the decoder process."""
    path = values["model.path"]
    if not path:
        raise SpecVLAError("parameter model.path is empty: point it at a checkpoint folder (see config/arm.yaml)")
    crop = {"auto": None, "true": True, "false": False}[values["model.center_crop"]]
    quantization = values["model.quantization"]
    return DecoderSpec(path, values["model.draft_path"] or None, config,
                       device=values["model.device"], dtype=values["model.dtype"],
                       center_crop=crop, quantization=None if quantization == "auto" else quantization,
                       compile=compile_setting(values["model.compile"]),
                       startup_check=values["model.startup_check"])


def gate_settings(values: dict[str, Any]) -> GateSettings:
    """The live safety parameters (they change on a parameter update, see SpecVLANode._on_set_parameters)."""
    return GateSettings(
        action_timeout_s=values["action_timeout_s"],
        stale_action_policy=values["stale_action_policy"],
        dry_run=values["dry_run"],
        zero_commands_on_disable=values["zero_commands_on_disable"],
        limits=SafetyLimits(
            action_low=tuple(values["action_low"]),
            action_high=tuple(values["action_high"]),
            max_linear_speed_mps=values["max_linear_speed_mps"],
            max_angular_speed_radps=values["max_angular_speed_radps"],
        ),
    )
