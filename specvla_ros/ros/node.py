"""specvla_node: camera + task in, end-effector deltas out at control rate.

Wiring only. Decoding lives in specvla_ros.core, the inference thread in worker.py (or the
decoder process in process_worker.py, with inference.isolation "process"), the publish/stop rules
in safety.py, health in diagnostics.py (what went wrong, per cause, in incidents.py), parameters
in parameters.py, input budgets in input_budget.py, trust in the model's output in model_check.py.
node_entry.py runs it as a process (signals, exit codes).
"""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, KeyValue
from geometry_msgs.msg import TwistStamped
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Bool, String
from std_srvs.srv import SetBool

from specvla_ros.core.config import PAPER_TREE, DecoderConfig, TreeConfig
from specvla_ros.core.decoder import ActionResult
from specvla_ros.core.errors import ConfigError, InputError, SpecVLAError
from specvla_ros.core.temporal_draft import TemporalDraftConfig
from specvla_ros.msg import DecodeStats, EndEffectorDelta
from specvla_ros.ros import diagnostics
from specvla_ros.ros.dds_profile import current_setup
from specvla_ros.ros.image_conversion import to_rgb
from specvla_ros.ros.image_qos import describe_image_qos, image_qos
from specvla_ros.ros.incidents import PER_DECODE, WARN, Cause, Incidents, printable
from specvla_ros.ros.input_budget import ImageTooLarge, TaskTooLong, check_image, check_task
from specvla_ros.ros.messages import command_msg, decode_stats_msg, time_to_ns, twist_msg
from specvla_ros.ros.model_check import check_model, verdict
from specvla_ros.ros.parameters import SPECS, check_update, compile_setting, declare_all, unknown_overrides
from specvla_ros.ros.process_worker import DecodeCall, DecoderProcessError, DecoderSpec, ProcessWorker
from specvla_ros.ros.safety import Command, CommandGate, GateSettings, SafetyLimits, TimedAction
from specvla_ros.ros.worker import InferenceWorker, MailboxWorker

CAMERA_QOS = qos_profile_sensor_data
TASK_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
COMMAND_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
STATS_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
# Enable topic: volatile ignores a value latched before start-up (accept_latched_enable false).
ENABLE_LIVE_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)


class Decoder(Protocol):
    def decode(self, image: np.ndarray, instruction: str) -> ActionResult: ...


@dataclass(frozen=True)
class InferenceRequest:
    image: Image | CompressedImage
    task: str
    received_s: float  # monotonic arrival time of the frame


class SpecVLANode(Node):
    """The Spec-VLA policy node. Pass `decoder` to use an already-built decoder (tests, demo)."""

    def __init__(self, decoder: Decoder | None = None, **node_kwargs: Any) -> None:
        super().__init__("specvla_node", **node_kwargs)
        values = declare_all(self)  # ConfigError, one line, on any bad start-up value
        for warning in unknown_overrides(self):
            self.get_logger().warning(warning)
        self.add_on_set_parameters_callback(self._on_set_parameters)

        self._lock = threading.Lock()
        # Held from a tick's decision to its publish; every change that can stop commands (enable, dry_run,
        # bounds, task, shutdown) takes it first, so no command decided before a stop goes out after it.
        self._publish_lock = threading.Lock()
        self._task: str | None = None
        self._last_frame: InferenceRequest | None = None  # newest frame, kept for a task change
        self._incidents = Incidents()
        self._commands_published = 0
        self._shut_down = False
        self._completions: deque[float] = deque(maxlen=50)
        self._latency = {name: diagnostics.RollingWindow() for name in ("draft", "verify", "total", "accept")}
        self._gate = CommandGate(self._gate_settings(values), enabled=values["start_enabled"])

        self._decoder_config = self._build_decoder_config()
        self._isolation = self._param("inference.isolation")
        self._decoder: Decoder | None = None  # in this process; None when it lives in the decoder process
        self._worker: MailboxWorker[InferenceRequest, ActionResult] = self._start_worker(decoder)
        try:
            self._wire()
        except BaseException:  # a signal or an error after the model loaded: no worker left behind
            self._worker.stop(timeout_s=self._param("inference.shutdown_timeout_s"))
            raise

    def _wire(self) -> None:
        """Publishers, subscriptions, the service and the timers."""
        self._command_pub = self.create_publisher(EndEffectorDelta, self._param("topics.command"), COMMAND_QOS)
        self._twist_pub = (self.create_publisher(TwistStamped, self._param("topics.twist"), COMMAND_QOS)
                           if self._param("publish_twist") else None)
        self._stats_pub = self.create_publisher(DecodeStats, "~/decode_stats", STATS_QOS)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)

        camera_qos = image_qos(self._param("topics.image_qos"))
        if self._param("topics.compressed_image"):
            self.create_subscription(CompressedImage, self._param("topics.compressed_image"), self._on_image,
                                     camera_qos)
        else:
            self.create_subscription(Image, self._param("topics.image"), self._on_image, camera_qos)
        # How frames reach this node, for logs and /diagnostics (large frames need one of the two set up).
        self._transport = {"camera_qos": describe_image_qos(self._param("topics.image_qos")),
                           "dds_transport": current_setup().describe()}
        self.create_subscription(String, self._param("topics.task"), self._on_task, TASK_QOS)
        if self._param("topics.enable"):
            # A latched value from before start-up must not override start_enabled unless asked.
            self.create_subscription(Bool, self._param("topics.enable"), self._on_enable_topic,
                                     TASK_QOS if self._param("accept_latched_enable") else ENABLE_LIVE_QOS)
        self.create_service(SetBool, "~/enable", self._on_enable_service)

        self._control_period_s = 1.0 / self._param("control_rate_hz")
        self.create_timer(self._control_period_s, self._on_control_tick,
                          callback_group=MutuallyExclusiveCallbackGroup())
        self.create_timer(1.0, self._publish_diagnostics)
        # What loading decided (decoder.tree.auto's choice), from this process's decoder or the child's.
        for note in getattr(self._decoder if self._decoder is not None else self._worker, "start_notes", []):
            self.get_logger().info(note)
        self.get_logger().info(
            f"ready: {self._decoder_config.mode} decoding in a {self._isolation}, "
            f"r={list(self._decoder_config.relax_bins)}, "
            f"temporal drafts {'on' if self._decoder_config.temporal.enabled else 'off'}, "
            f"{1.0 / self._control_period_s:g} Hz, dry_run={self._param('dry_run')}, "
            f"enabled={self._gate.enabled}")
        self.get_logger().info(f"camera QoS {self._transport['camera_qos']}; DDS: {self._transport['dds_transport']}")

    # ----- start-up -------------------------------------------------------------------------
    def _param(self, name: str) -> Any:
        return self.get_parameter(name).value

    def _build_decoder_config(self) -> DecoderConfig:
        relax = tuple(int(r) for r in self._param("decoder.relax_bins"))
        auto = self._param("decoder.tree.auto")
        # 0 = free for decoder.tree.auto to choose, or the authors' value without it.
        shape = {name: self._param(f"decoder.tree.{name}") or (0 if auto else default)
                 for name, default in PAPER_TREE.items()}
        tree = TreeConfig(**shape, auto=auto,
                          restrict_to_action_tokens=self._param("decoder.tree.restrict_to_action_tokens"))
        return DecoderConfig(
            action_tokens_only=self._param("decoder.action_tokens_only"),
            mode=self._param("decoder.mode"),
            relax_bins=relax if len(relax) == 7 else relax[0],
            tree=tree,
            unnorm_key=self._param("model.unnorm_key") or None,
            temporal=TemporalDraftConfig(
                enabled=self._param("temporal_draft.enabled"),
                history=self._param("temporal_draft.history"),
                proposals=tuple(self._param("temporal_draft.proposals")),
                draft_head=self._param("temporal_draft.draft_head"),
                max_frame_age_s=self._param("temporal_draft.max_frame_age_s"),
                max_gap_s=self._param("temporal_draft.max_gap_s"),
                datastore=self._param("temporal_draft.datastore"),
                retrieved=self._param("temporal_draft.retrieved"),
            ),
            prefill_drafts=self._param("decoder.prefill_drafts"),
        )

    def _decoder_spec(self) -> DecoderSpec:
        """What to load, from the model parameters; loaded here or in the decoder process."""
        path = self._param("model.path")
        if not path:
            raise SpecVLAError("parameter model.path is empty: point it at a checkpoint folder "
                               "(see config/arm.yaml)")
        crop = {"auto": None, "true": True, "false": False}[self._param("model.center_crop")]
        quantization = self._param("model.quantization")
        return DecoderSpec(path, self._param("model.draft_path") or None, self._decoder_config,
                           device=self._param("model.device"), dtype=self._param("model.dtype"),
                           center_crop=crop, quantization=None if quantization == "auto" else quantization,
                           compile=compile_setting(self._param("model.compile")),
                           startup_check=self._param("model.startup_check"))

    def _start_worker(self, decoder: Decoder | None) -> MailboxWorker[InferenceRequest, ActionResult]:
        """The inference thread over an in-process decoder, or the decoder process (loads the model)."""
        if self._isolation == "process":
            if decoder is not None:
                raise ConfigError("inference.isolation 'process' loads the model from model.path in a child "
                                  "process; a decoder object passed to SpecVLANode cannot move there: pass no "
                                  "decoder, or use inference.isolation 'thread'")
            spec = self._decoder_spec()
            self.get_logger().info(f"loading model from {spec.model_path} on {spec.device} in a decoder process")
            return ProcessWorker(spec, self._decode_call, self._on_result, self._on_error,
                                 start_timeout_s=self._param("inference.start_timeout_s"),
                                 heartbeat_timeout_s=self._param("inference.heartbeat_timeout_s"))
        if decoder is None:
            spec = self._decoder_spec()
            self.get_logger().info(f"loading model from {spec.model_path} on {spec.device}")
            decoder = spec.load()  # with the start-up check unless model.startup_check is false
        elif self._param("model.startup_check"):
            check_model(decoder, "the decoder passed to SpecVLANode")
        self._decoder = decoder
        return InferenceWorker(self._infer, self._on_result, self._on_error)

    def _parameter_values(self) -> dict[str, Any]:
        return {spec.name: self._param(spec.name) for spec in SPECS}

    @staticmethod
    def _gate_settings(values: dict[str, Any]) -> GateSettings:
        """The live safety parameters, from a name -> value mapping of all parameters."""
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

    def _on_set_parameters(self, parameters: list) -> SetParametersResult:
        updates = {p.name: p.value for p in parameters}
        current = self._parameter_values()
        reason = check_update(updates, current)
        if reason:
            self._report(Cause.PARAMETER_REFUSED, f"refused parameter update: {reason}")
            self._incidents.resolve([Cause.PARAMETER_REFUSED])  # shown as recent, not as a lasting state
            return SetParametersResult(successful=False, reason=reason)
        # Accepted: rclpy sets the values after this returns; apply the live ones now.
        with self._publish_lock, self._lock:
            self._gate.update_settings(self._gate_settings({**current, **updates}))
        return SetParametersResult(successful=True)

    def _report(self, cause: Cause, message: str) -> None:
        """Count an incident and log it, throttled per cause."""
        line = self._incidents.report(cause, message, time.monotonic())
        if line is None:
            return
        # One severity per call site: rclpy refuses a log call whose severity changes between calls.
        if cause.level == WARN:
            self.get_logger().warning(line)
        else:
            self.get_logger().error(line)

    # ----- inputs ---------------------------------------------------------------------------
    def _on_image(self, msg: Image | CompressedImage) -> None:
        try:
            check_image(msg, self._param("inputs.max_image_pixels"))
        except InputError as error:  # refused before any decompression or conversion
            self._report(Cause.IMAGE_TOO_LARGE if isinstance(error, ImageTooLarge) else Cause.IMAGE_REJECTED,
                         str(error))
            return
        with self._lock:
            self._last_frame = InferenceRequest(msg, self._task or "", time.monotonic())
            task = self._task
        if task is not None:
            self._worker.submit(self._last_frame)

    def _on_task(self, msg: String) -> None:
        task = msg.data.strip()
        refusal = None if task else "empty task received: publish a non-empty instruction"
        try:
            check_task(task, self._param("inputs.max_task_bytes"))
        except TaskTooLong as error:
            refusal = str(error)
        with self._publish_lock, self._lock:
            if refusal is None and task == self._task:
                return
            self._gate.invalidate()  # actions decoded for the old task must not go out
            self._task = None if refusal else task
            frame = self._last_frame
        if refusal:  # the old task stops too: the sender meant to change it
            self._report(Cause.TASK_REJECTED, refusal)
            return
        self._incidents.resolve([Cause.TASK_REJECTED])
        self.get_logger().info(f"task: '{printable(task, 120)}'")
        if frame is not None and time.monotonic() - frame.received_s <= self._param("image_timeout_s"):
            # Answer the new task from the newest frame now, not one camera period later.
            self._worker.submit(InferenceRequest(frame.image, task, frame.received_s))

    def _on_enable_service(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        self._set_enabled(request.data)
        response.success = True
        response.message = "enabled" if request.data else "disabled: zero commands sent, then silence"
        if self._param("dry_run"):
            response.message += " (dry_run is true: nothing is published until it is false)"
        return response

    def _on_enable_topic(self, msg: Bool) -> None:
        self._set_enabled(msg.data)

    def _set_enabled(self, enabled: bool) -> None:
        with self._publish_lock, self._lock:
            changed = enabled != self._gate.enabled
            self._gate.set_enabled(enabled)
        if changed:
            self.get_logger().info("commands enabled" if enabled else "commands disabled")

    # ----- inference thread -----------------------------------------------------------------
    def _decode_call(self, request: InferenceRequest) -> DecodeCall:
        """The decoder's arguments for a request; called when its decode starts (the frame's age)."""
        if not self._decoder_config.temporal.enabled:
            return DecodeCall(to_rgb(request.image), request.task)
        # Temporal drafting's reset rules need the frame's time (its stamp; arrival if unstamped) and age.
        stamp_ns = time_to_ns(request.image.header.stamp)
        return DecodeCall(to_rgb(request.image), request.task,
                          time_s=stamp_ns / 1e9 if stamp_ns else request.received_s,
                          frame_age_s=time.monotonic() - request.received_s)

    def _infer(self, request: InferenceRequest) -> ActionResult:
        return self._decode_call(request).run(self._decoder)

    def _on_result(self, request: InferenceRequest, result: ActionResult) -> None:
        image_stamp = request.image.header.stamp
        timed = TimedAction(action=np.asarray(result.action, dtype=float),
                            normalized=np.asarray(result.normalized, dtype=float),
                            bins=tuple(result.bins), frame_received_s=request.received_s,
                            image_stamp_ns=time_to_ns(image_stamp))
        problem = verdict(result)  # NaN/inf or a non-action token: never a model command
        stats = result.stats
        with self._lock:
            if request.task != self._task:
                return  # the task changed while decoding
            if problem is None:
                self._gate.offer(timed)
            self._completions.append(time.monotonic())
            self._latency["draft"].add(stats.draft_ms)
            self._latency["verify"].add(stats.verify_ms)
            self._latency["total"].add(stats.total_ms)
            self._latency["accept"].add(stats.mean_acceptance_length)
        if problem is None:
            self._incidents.resolve(PER_DECODE)
        else:
            self._report(problem.cause, f"{problem.message}: not published, commands follow stale_action_policy")
        budget_ms = self._param("latency_budget_ms")
        # The whole job (conversion, transfer to a decoder process, decoding), still timed by the worker here.
        elapsed_ms = max(stats.total_ms, 1000.0 * (self._worker.busy_for_s() or 0.0))
        if elapsed_ms > budget_ms:
            self._report(Cause.DECODE_OVER_BUDGET, f"a decode took {elapsed_ms:.0f} ms (the decoder's own "
                                                   f"{stats.total_ms:.0f} ms), over latency_budget_ms "
                                                   f"({budget_ms:.0f})")
        else:
            self._incidents.resolve([Cause.DECODE_OVER_BUDGET])
        self._stats_pub.publish(decode_stats_msg(result, self.get_clock().now().to_msg(), image_stamp,
                                                 request.image.header.frame_id))

    def _on_error(self, request: InferenceRequest, error: BaseException, trace: str) -> None:
        if isinstance(error, DecoderProcessError):  # every frame fails the same way
            self._report(Cause.DECODER_PROCESS, str(error))
            return
        cause = Cause.IMAGE_REJECTED if isinstance(error, InputError) else Cause.MODEL_ERROR
        self._report(cause, f"{type(error).__name__}: {error}" if cause == Cause.MODEL_ERROR else str(error))
        if not isinstance(error, SpecVLAError):
            self.get_logger().debug(trace)

    # ----- outputs --------------------------------------------------------------------------
    def _on_control_tick(self) -> None:
        with self._publish_lock:
            if self._shut_down:
                return
            with self._lock:
                command = self._gate.next_command(time.monotonic(), task_known=self._task is not None)
            if command is not None:
                self._publish(command)

    def _publish(self, command: Command) -> None:
        stamp = self.get_clock().now().to_msg()
        frame_id = self._param("frame_id")
        self._command_pub.publish(command_msg(command, stamp, frame_id))
        if self._twist_pub is not None:
            self._twist_pub.publish(twist_msg(command, stamp, frame_id, self._control_period_s,
                                              self._gate.settings.limits))
        self._commands_published += 1

    def _publish_diagnostics(self) -> None:
        now = time.monotonic()
        counters = self._worker.counters
        process = self._worker if isinstance(self._worker, ProcessWorker) else None
        if process is not None and not process.responsive:  # also when it died between frames
            self._report(Cause.DECODER_PROCESS, f"decoder process {process.state}: restart the node")
        elif process is not None:
            self._incidents.resolve([Cause.DECODER_PROCESS])  # it answers again (was stopped, continued)
        with self._lock:
            recent = [t for t in self._completions if now - t <= 5.0]
            inputs = diagnostics.HealthInputs(
                task_known=self._task is not None,
                image_age_s=None if self._last_frame is None else now - self._last_frame.received_s,
                image_timeout_s=self._param("image_timeout_s"),
                incidents=self._incidents.current(now),
                incident_counts=self._incidents.counts(),
                decoding_for_s=self._worker.busy_for_s(now),
                latency_budget_ms=self._param("latency_budget_ms"),
                dry_run=self._gate.settings.dry_run,
                enabled=self._gate.enabled,
                relax_bins=self._decoder_config.relax_bins,
                mode=self._decoder_config.mode,
                dropped_frames=counters.dropped,
                inferences=counters.completed,
                failed_inferences=counters.failed,
                commands_published=self._commands_published,
                inference_rate_hz=len(recent) / 5.0,
                draft_ms=self._latency["draft"], verify_ms=self._latency["verify"],
                total_ms=self._latency["total"], acceptance_length=self._latency["accept"],
            )
            status = diagnostics.build_status(self.get_name(), self._param("model.path") or "in-process", inputs)
        status.values += [KeyValue(key=key, value=value) for key, value in self._transport.items()]
        if process is not None:
            status.values.append(KeyValue(key="decoder_process", value=process.state))
        array = DiagnosticArray()
        array.header.stamp = self.get_clock().now().to_msg()
        array.status = [status]
        self._diag_pub.publish(array)

    # ----- shutdown -------------------------------------------------------------------------
    def shutdown(self) -> bool:
        """Stop: the zero commands owed go out now (if commands were flowing), then the worker stops
        within inference.shutdown_timeout_s. True when nothing of the decoder is left running."""
        worker = getattr(self, "_worker", None)  # absent when start-up failed (e.g. no model)
        if worker is None:
            return True
        if self._shut_down:
            return not worker.busy
        wired = getattr(self, "_command_pub", None) is not None  # not when start-up failed before wiring
        with self._publish_lock:  # after this, no tick publishes: the zeros are the last commands
            self._shut_down = True
            with self._lock:
                stops = self._gate.stop_commands() if wired else []
            for command in stops:
                self._publish(command)
        if stops:
            self._command_pub.wait_for_all_acked(Duration(seconds=0.5))  # out before the process goes
        timeout_s = self._param("inference.shutdown_timeout_s")
        stopped = worker.stop(timeout_s=timeout_s)
        if not stopped:
            self.get_logger().warning(f"the decode in flight did not end within {timeout_s:g} s; exiting without it")
        return stopped

    def destroy_node(self) -> None:
        if getattr(self, "_gate", None) is not None:
            self.shutdown()
        super().destroy_node()
