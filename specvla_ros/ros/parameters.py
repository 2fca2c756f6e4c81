"""The node's parameters: one table with defaults, descriptions, ranges and checks.

Declared with ParameterDescriptor (so `ros2 param describe` explains each), refused on set
when out of range or inconsistent, and checked the same way at start-up (declare_all). Model and
decoder parameters are read-only: they take effect at start-up (configure), where the model loads.
The values (name -> value) then become the configs the rest uses, by plain functions at the end:
the core's DecoderConfig, the DecoderSpec that loads the model (here or in the decoder process), and
the command gate's live safety settings.
"""
from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import InvalidParameterTypeException, ParameterException
from rclpy.expand_topic_name import expand_topic_name
from rclpy.node import Node
from rclpy.validate_full_topic_name import validate_full_topic_name

from specvla_ros.core.errors import ConfigError, SpecVLAError
from specvla_ros.ros.qos import IMAGE_QOS_CHOICES
from specvla_ros.ros.safety import GateSettings, SafetyLimits
from specvla_ros.ros.topics import CAMERA_TOPIC, TASK_TOPIC

if TYPE_CHECKING:  # they import torch: launch files read the table without it
    from specvla_ros.core.config import DecoderConfig
    from specvla_ros.ros.process_worker import DecoderSpec

DECODER_MODES = ("speculative", "autoregressive")
STALE_ACTION_POLICIES = ("zero", "hold")
DEVICES_HINT = "cpu, cuda, cuda:N"
DTYPES = ("float32", "bfloat16", "float16")
TEMPORAL_PROPOSALS = ("previous", "linear", "before")  # specvla_ros.core.temporal_draft.PROPOSALS
ISOLATION_MODES = ("thread", "process")
COMPILE_MODES = ("auto", "off", "default", "reduce-overhead")  # specvla_ros.core.compilation.COMPILE_MODES
DEVICE_PATTERN = re.compile(r"cpu|cuda(:[0-9]+)?")
# Kinds of string parameter with a syntax of their own (ParamSpec.kind).
TOPIC, OPTIONAL_TOPIC, DEVICE = "topic", "optional topic", "device"


@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: Any
    description: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    read_only: bool = False
    length: tuple[int, ...] = ()  # allowed list lengths for array parameters
    also_bool: bool = False  # YAML reads a bare off / on as a boolean: accept it too (see compile_setting)
    kind: str = ""  # TOPIC (a ROS topic name), OPTIONAL_TOPIC (the same, or empty = off), DEVICE

    def descriptor(self) -> ParameterDescriptor:
        descriptor = ParameterDescriptor(description=self.description, read_only=self.read_only,
                                         dynamic_typing=self.also_bool)
        if self.choices:
            descriptor.additional_constraints = "one of: " + ", ".join(self.choices)
        if self.length:
            descriptor.additional_constraints = f"list of length {' or '.join(map(str, self.length))}"
        if self.low is not None and not isinstance(self.default, list):
            if isinstance(self.default, int) and not isinstance(self.default, bool):
                descriptor.integer_range = [IntegerRange(from_value=int(self.low), to_value=int(self.high), step=0)]
            else:
                descriptor.floating_point_range = [
                    FloatingPointRange(from_value=float(self.low), to_value=float(self.high), step=0.0)]
        return descriptor

    def check(self, value: Any) -> str | None:
        """A reason the value is refused, or None when it is fine."""
        if self.also_bool and isinstance(value, bool):
            return None
        if self.choices and isinstance(self.default, list):
            if not value or any(item not in self.choices for item in value):
                return f"{self.name} must be a non-empty list of {', '.join(self.choices)}, got {list(value)}"
        elif self.choices and value not in self.choices:
            return f"{self.name} must be one of {', '.join(self.choices)}, got '{value}'"
        if self.kind:
            return self._check_kind(value)
        if self.length:
            if len(value) not in self.length:
                return (f"{self.name} must have {' or '.join(map(str, self.length))} entries, got {len(value)}: "
                        f"{list(value)}")
            values = list(value)
        else:
            values = [value]
        if self.low is not None:
            for item in values:
                if isinstance(item, float) and not math.isfinite(item):
                    return f"{self.name} must be a finite number, got {item}"
                if not self.low <= item <= self.high:
                    return f"{self.name} must lie in [{self.low}, {self.high}], got {item}"
        return None

    def _check_kind(self, value: str) -> str | None:
        if self.kind == DEVICE:
            if not DEVICE_PATTERN.fullmatch(value):
                return f"{self.name} must be {DEVICES_HINT} (a torch device), got '{value}'"
            return None
        if self.kind == OPTIONAL_TOPIC and value == "":
            return None
        try:  # as the node will: relative names and ~ expand against the node's name
            validate_full_topic_name(expand_topic_name(value, NODE_NAME, "/"))
        except Exception as error:  # noqa: BLE001 - rclpy raises several kinds; all mean "not a topic name"
            allowed = "a ROS topic name" + (" or empty (off)" if self.kind == OPTIONAL_TOPIC else "")
            why = str(error).splitlines()[0].removeprefix("Invalid topic name: ").rstrip(":")
            return f"{self.name} must be {allowed}, got '{value}' ({why})"
        return None


NODE_NAME = "specvla_node"

SPECS: tuple[ParamSpec, ...] = (
    # model
    ParamSpec("model.path", "", "Checkpoint folder of the VLA (config.json + safetensors).", read_only=True),
    ParamSpec("model.draft_path", "", "Checkpoint folder of the Spec-VLA draft head; needed in speculative mode.",
              read_only=True),
    ParamSpec("model.device", "cpu", f"Torch device: {DEVICES_HINT}.", read_only=True, kind=DEVICE),
    ParamSpec("model.dtype", "float32", "Weights and activations dtype (bfloat16 on CUDA).", choices=DTYPES,
              read_only=True),
    ParamSpec("model.unnorm_key", "", "Dataset key of the action statistics in the checkpoint; empty = the only one.",
              read_only=True),
    ParamSpec("model.center_crop", "auto", "OpenVLA only: centre crop before resizing, as for LIBERO fine-tunes "
              "(auto = what the checkpoint's config.json says).", choices=("auto", "true", "false"), read_only=True),
    ParamSpec("model.quantization", "auto", "OpenVLA only: load the language model in 8 or 4 bit (needs "
              "bitsandbytes and CUDA); auto = what the checkpoint's config.json says, else none.",
              choices=("auto", "none", "8bit", "4bit"), read_only=True),
    ParamSpec("model.compile", "auto", "torch.compile the decode path at start-up (graphs built before 'ready', "
              "never on the first camera frame): off, default, reduce-overhead (CUDA graphs), auto = default on CPU, "
              "reduce-overhead on CUDA. A platform where compiling fails runs eager, said once in the log.",
              choices=COMPILE_MODES, read_only=True, also_bool=True),
    # decoder
    ParamSpec("decoder.mode", "speculative", "speculative (Spec-VLA) or autoregressive (plain greedy).",
              choices=DECODER_MODES, read_only=True),
    ParamSpec("decoder.relax_bins", [0], "Relaxed-acceptance threshold r in bins: one value for all 7 dimensions "
              "or 7 values (dx dy dz droll dpitch dyaw gripper). 0 = exact (lossless).", low=0, high=254,
              length=(1, 7), read_only=True),
    ParamSpec("decoder.tree.auto", True, "Choose the draft tree at start-up from costs measured on this machine and "
              "the draft head's tree_calibration.json (bench/decode_benchmark.py --calibrate); no tree at all when "
              "none beats autoregressive decoding. Tree values set below (non-zero) are kept.", read_only=True),
    ParamSpec("decoder.tree.top_k", 0, "Draft tree: nodes expanded per depth (EAGLE-2 top_k); 0 = chosen by "
              "decoder.tree.auto, or the authors' 8 without it.", low=0, high=64, read_only=True),
    ParamSpec("decoder.tree.depth", 0, "Draft tree depth (drafted tokens per verify step, at most 6); 0 = chosen "
              "by decoder.tree.auto, or the authors' 4 without it.", low=0, high=6, read_only=True),
    ParamSpec("decoder.tree.total_tokens", 0, "Draft tree: nodes kept for verification; 0 = chosen by "
              "decoder.tree.auto, or the authors' 50 without it.", low=0, high=512, read_only=True),
    ParamSpec("decoder.prefill_drafts", True, "Verify the guesses known before the frame (temporal drafts, "
              "retrieval) inside the prefill forward: a right guess costs one target forward for the whole action. "
              "Needs temporal_draft.enabled; r = 0 stays lossless.", read_only=True),
    ParamSpec("decoder.tree.restrict_to_action_tokens", True, "Draft only among the 256 action tokens.",
              read_only=True),
    ParamSpec("decoder.action_tokens_only", False, "Constrained greedy: the target chooses among the action "
              "tokens only. false (default): the model's own argmax; an action holding a text or padding id "
              "is then refused (diagnostics WARN, stale-action policy) instead of published.", read_only=True),
    # temporal drafting: guesses from the robot's own recent actions join the draft tree
    ParamSpec("temporal_draft.enabled", False, "Add draft branches guessed from the last decoded actions of the "
              "same task (speculative mode; r = 0 stays lossless).", read_only=True),
    ParamSpec("temporal_draft.history", 4, "Past actions kept (K).", low=1, high=64, read_only=True),
    ParamSpec("temporal_draft.proposals", ["previous", "before"], "Guesses offered: previous (the last action), "
              "linear (extrapolated from the last two), before (the action before the last); the last two need "
              "history >= 2.", choices=TEMPORAL_PROPOSALS,
              read_only=True),
    ParamSpec("temporal_draft.draft_head", True, "Keep the draft head's tree beside the temporal branches; false = "
              "temporal branches only (no draft head needed, no draft forwards).", read_only=True),
    ParamSpec("temporal_draft.datastore", "", "Retrieval datastore (specvla build-datastore): demonstrated actions "
              "that followed the robot's last ones become extra guesses; empty = none.", read_only=True),
    ParamSpec("temporal_draft.retrieved", 2, "Guesses taken from the datastore per frame.", low=1, high=8,
              read_only=True),
    ParamSpec("temporal_draft.max_frame_age_s", 1.0, "Forget the history when a frame waited longer than this "
              "(from arrival) before decoding; 0 = no bound.", low=0.0, high=60.0, read_only=True),
    ParamSpec("temporal_draft.max_gap_s", 1.0, "Forget the history when consecutive decoded frames' stamps lie "
              "further apart (or go back in time); 0 = no bound.", low=0.0, high=60.0, read_only=True),
    # where decoding runs
    ParamSpec("inference.isolation", "thread", "thread: decode on a thread of the node's process; process: in a "
              "child process, so the control timer never waits for the decoder (Python's GIL). process loads "
              "the model from model.path in the child; a child that dies is reported, not restarted.",
              choices=ISOLATION_MODES, read_only=True),
    ParamSpec("inference.start_timeout_s", 300.0, "inference.isolation process: start-up fails when the child "
              "has not loaded the model within this time.", low=1.0, high=3600.0, read_only=True),
    ParamSpec("inference.heartbeat_timeout_s", 3.0, "inference.isolation process: the decoder process is "
              "reported as not responding (diagnostics ERROR) after this long without its heartbeat.",
              low=0.5, high=600.0, read_only=True),
    ParamSpec("inference.shutdown_timeout_s", 2.0, "On shutdown, wait this long for the decode in flight; then "
              "the decoder process is killed (process) or the node exits without it (thread).", low=0.1,
              high=60.0, read_only=True),
    ParamSpec("model.startup_check", True, "At start-up, decode a synthetic frame and refuse to start when the "
              "logits are NaN/inf or a token falls outside the action range (a broken checkpoint).",
              read_only=True),
    # input budgets: a message over them is refused and reported, never decoded
    ParamSpec("inputs.max_task_bytes", 256, "Longest task instruction accepted, in UTF-8 bytes (a bound on its "
              "tokens: decode cost grows with its square). A longer task is refused, not truncated.",
              low=1, high=65536),
    ParamSpec("inputs.max_image_pixels", 3840 * 2160, "Largest camera frame accepted (width x height); "
              "compressed frames are checked from their header, before decompression.", low=1,
              high=100_000_000),
    # topics
    ParamSpec("topics.image", CAMERA_TOPIC, "Camera topic (sensor_msgs/Image).", read_only=True,
              kind=TOPIC),
    ParamSpec("topics.compressed_image", "", "If set, subscribe to this sensor_msgs/CompressedImage topic "
              "(jpeg/png) instead of topics.image.", read_only=True, kind=OPTIONAL_TOPIC),
    ParamSpec("topics.image_qos", "sensor_data", "Camera subscription QoS: sensor_data (best effort; connects to "
              "any camera) or reliable (only reliable cameras; carries full-size frames without the shared-memory "
              "Fast DDS profile on the camera's side, see docs/rosbags.md).", choices=IMAGE_QOS_CHOICES,
              read_only=True),
    ParamSpec("topics.task", TASK_TOPIC, "Task instruction topic (std_msgs/String).", read_only=True,
              kind=TOPIC),
    ParamSpec("topics.command", "~/command", "End-effector delta commands (specvla_ros/EndEffectorDelta).",
              read_only=True, kind=TOPIC),
    ParamSpec("topics.twist", "/servo_node/delta_twist_cmds", "TwistStamped output for MoveIt Servo "
              "(used when publish_twist is true).", read_only=True, kind=TOPIC),
    ParamSpec("topics.enable", "", "Optional std_msgs/Bool enable topic; empty = service only.", read_only=True,
              kind=OPTIONAL_TOPIC),
    ParamSpec("accept_latched_enable", False, "false: the enable topic's value from before start-up is ignored "
              "(start_enabled decides; messages published after start-up apply). true: the last value "
              "latched (transient local) before start-up applies too.", read_only=True),
    ParamSpec("publish_twist", False, "Also publish geometry_msgs/TwistStamped (deltas / control period).",
              read_only=True),
    ParamSpec("frame_id", "base_link", "frame_id stamped on commands: the frame the deltas are expressed in."),
    # rates and timeouts
    ParamSpec("control_rate_hz", 10.0, "Rate of the command timer.", low=0.5, high=1000.0, read_only=True),
    ParamSpec("action_timeout_s", 0.5, "An action older than this (from its camera frame's arrival) is stale.",
              low=0.01, high=60.0),
    ParamSpec("image_timeout_s", 1.0, "Camera silent for longer than this: diagnostics report a stale camera.",
              low=0.01, high=60.0),
    ParamSpec("latency_budget_ms", 500.0, "Decode latency above this: diagnostics WARN.", low=1.0, high=60000.0),
    # lifecycle
    ParamSpec("autostart", True, "Go through configure and activate by itself at start-up, so a plain run "
              "decodes at once. false: wait unconfigured for a lifecycle manager (launch/arm.launch.py sends the "
              "standard transitions); configure loads the model, activate starts the commands.", read_only=True),
    # safety
    ParamSpec("dry_run", True, "Compute and report, publish nothing on command topics."),
    ParamSpec("start_enabled", False, "Commands enabled at start-up (else call ~/enable or use topics.enable).",
              read_only=True),
    ParamSpec("stale_action_policy", "zero", "On a stale action: zero (stop, keep gripper) or hold (repeat the "
              "last action; only for consumers that treat commands as targets).", choices=STALE_ACTION_POLICIES),
    ParamSpec("zero_commands_on_disable", 3, "Zero commands published right after disabling.", low=0, high=100),
    ParamSpec("action_low", [-0.05, -0.05, -0.05, -0.25, -0.25, -0.25, 0.0],
              "Per-dimension lower clamp of the action per control step (m, m, m, rad, rad, rad, gripper).",
              low=-100.0, high=100.0, length=(7,)),
    ParamSpec("action_high", [0.05, 0.05, 0.05, 0.25, 0.25, 0.25, 1.0],
              "Per-dimension upper clamp of the action per control step (m, m, m, rad, rad, rad, gripper).",
              low=-100.0, high=100.0, length=(7,)),
    ParamSpec("max_linear_speed_mps", 0.25, "Twist output: cap on the linear speed norm.", low=0.0, high=10.0),
    ParamSpec("max_angular_speed_radps", 1.0, "Twist output: cap on the angular speed norm.", low=0.0, high=20.0),
)

SPECS_BY_NAME = {spec.name: spec for spec in SPECS}


def compile_setting(value: str | bool) -> str:
    """model.compile as a mode name: YAML turns a bare `off` / `on` into false / true."""
    if isinstance(value, bool):
        return "auto" if value else "off"
    return value


MOTION_DIMS = 6  # dx dy dz droll dpitch dyaw; the 7th is the gripper


def check_update(updates: dict[str, Any], current: dict[str, Any]) -> str | None:
    """Why a set of parameter updates must be refused, or None to accept it."""
    merged = {**current, **updates}
    for name, value in updates.items():
        spec = SPECS_BY_NAME.get(name)
        if spec is None:
            continue
        reason = spec.check(value)
        if reason:
            return reason
    return check_bounds(merged.get("action_low"), merged.get("action_high"))


def check_startup(values: dict[str, Any]) -> str | None:
    """Why the parameters a node starts with must be refused (every value, as on update), or None."""
    return check_update(values, values)


def check_bounds(low: list[float] | None, high: list[float] | None) -> str | None:
    """action_low / action_high as a pair: low <= high, and zero motion inside, so a stop can be sent."""
    if low is None or high is None:
        return None
    if len(low) != len(high):
        return f"action_low and action_high must have the same length, got {len(low)} and {len(high)}"
    for index, (lo, hi) in enumerate(zip(low, high, strict=True)):
        if lo > hi:
            return f"action_low must not exceed action_high: dimension {index} has {lo} > {hi}"
        if index < MOTION_DIMS and not lo <= 0.0 <= hi:
            return (f"action_low/action_high must contain 0 in the motion dimensions (a stop must be sendable): "
                    f"dimension {index} is [{lo}, {hi}]")
    return None



def declare_all(node: Node) -> dict[str, Any]:
    """Declare every parameter on `node` and check the values it starts with, as an update would be.

    Raises ConfigError naming the first bad parameter, its value and what is allowed, in one line
    (rclpy's own refusals included: a wrong type, a value out of a declared range), with the words a
    live update is refused with. Returns name -> value.
    """
    overrides = getattr(node, "_parameter_overrides", {})  # rclpy keeps them there (Humble and later)
    for spec in SPECS:
        try:
            node.declare_parameter(spec.name, spec.default, spec.descriptor())
        except ParameterException as error:
            override = overrides.get(spec.name)
            raise ConfigError(_refusal(spec, None if override is None else override.value, error)) from None
    values = {spec.name: node.get_parameter(spec.name).value for spec in SPECS}
    reason = check_startup(values)
    if reason:
        raise ConfigError(f"parameter {reason}")  # the update's own message: it starts with the name
    return values


def unknown_overrides(node: Node) -> list[str]:
    """One warning per parameter given at start-up that the node does not have (a typo is silently
    ignored by ROS: `dryrun:=false` leaves dry_run at its default)."""
    overrides = getattr(node, "_parameter_overrides", {})
    warnings = []
    for name in sorted(overrides):
        if node.has_parameter(name) or name.startswith("qos_overrides."):
            continue
        close = difflib.get_close_matches(name, SPECS_BY_NAME, n=1)
        warnings.append(f"unknown parameter '{name}' ignored" + (f" (did you mean '{close[0]}'?)" if close else ""))
    return warnings


def _refusal(spec: ParamSpec, value: Any, error: ParameterException) -> str:
    """A one-line reason for rclpy's refusal of a start-up value."""
    if isinstance(error, InvalidParameterTypeException):
        expected = _type_name(spec.default)
        hint = ""
        if "double" in expected and ("INTEGER" in str(error)):
            hint = " (write floats with a decimal point: 10.0, not 10)"
        given = "" if value is None else f", got {value!r}"
        return f"parameter {spec.name} must be {expected}{given}{hint}"
    reason = spec.check(value) if value is not None else None
    return f"parameter {reason}" if reason else f"parameter {spec.name}: {str(error).splitlines()[0]}"


def _type_name(default: Any) -> str:
    if isinstance(default, list):
        return f"a list of {_type_name(default[0]).split(' ', 1)[1]}s" if default else "a list"
    return {bool: "a bool", int: "an integer", float: "a double", str: "a string"}[type(default)]


def decoder_config(values: dict[str, Any]) -> DecoderConfig:
    """How to decode; its own checks (e.g. temporal proposals that need history >= 2) raise ConfigError."""
    # torch (see TYPE_CHECKING above)
    from specvla_ros.core.config import PAPER_TREE, DecoderConfig, TreeConfig, relax_setting
    from specvla_ros.core.temporal_draft import TemporalDraftConfig

    auto = values["decoder.tree.auto"]
    # 0 = free for decoder.tree.auto to choose, or the authors' value without it.
    shape = {name: values[f"decoder.tree.{name}"] or (0 if auto else default) for name, default in PAPER_TREE.items()}
    tree = TreeConfig(**shape, auto=auto, restrict_to_action_tokens=values["decoder.tree.restrict_to_action_tokens"])
    return DecoderConfig(
        action_tokens_only=values["decoder.action_tokens_only"],
        mode=values["decoder.mode"],
        relax_bins=relax_setting(values["decoder.relax_bins"]),
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
    from specvla_ros.ros.process_worker import DecoderSpec  # torch (see TYPE_CHECKING above)

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
