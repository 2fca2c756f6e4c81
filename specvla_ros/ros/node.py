"""specvla_node: camera + task in, end-effector deltas out at control rate.

Wiring only. Decoding lives in specvla_ros.core, the inference thread in worker.py (or the
decoder process in process_worker.py, with inference.isolation "process"), the publish/stop rules
in safety.py, health in diagnostics.py, parameters in parameters.py.
"""
from __future__ import annotations

import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import TwistStamped
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Bool, String
from std_srvs.srv import SetBool

from specvla_ros.core.config import PAPER_TREE, DecoderConfig, TreeConfig
from specvla_ros.core.decoder import ActionResult
from specvla_ros.core.errors import ConfigError, SpecVLAError
from specvla_ros.core.temporal_draft import TemporalDraftConfig
from specvla_ros.msg import DecodeStats, EndEffectorDelta
from specvla_ros.ros import diagnostics
from specvla_ros.ros.dds_profile import current_setup, use_large_image_profile
from specvla_ros.ros.image_conversion import to_rgb
from specvla_ros.ros.image_qos import describe_image_qos, image_qos
from specvla_ros.ros.messages import command_msg, decode_stats_msg, time_to_ns, twist_msg
from specvla_ros.ros.parameters import SPECS, check_update, compile_setting
from specvla_ros.ros.process_worker import DecodeCall, DecoderProcessError, DecoderSpec, ProcessWorker
from specvla_ros.ros.safety import CommandGate, GateSettings, SafetyLimits, TimedAction
from specvla_ros.ros.worker import InferenceWorker, MailboxWorker

CAMERA_QOS = qos_profile_sensor_data
TASK_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
COMMAND_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
STATS_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


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
        for spec in SPECS:
            self.declare_parameter(spec.name, spec.default, spec.descriptor())
        self.add_on_set_parameters_callback(self._on_set_parameters)

        self._lock = threading.Lock()
        self._task: str | None = None
        self._last_frame: InferenceRequest | None = None  # newest frame, kept for a task change
        self._last_error: str | None = None
        self._commands_published = 0
        self._completions: deque[float] = deque(maxlen=50)
        self._latency = {name: diagnostics.RollingWindow() for name in ("draft", "verify", "total", "accept")}
        self._gate = CommandGate(self._gate_settings(self._parameter_values()),
                                 enabled=self._param("start_enabled"))

        self._decoder_config = self._build_decoder_config()
        self._isolation = self._param("inference.isolation")
        self._decoder: Decoder | None = None  # in this process; None when it lives in the decoder process
        self._worker: MailboxWorker[InferenceRequest, ActionResult] = self._start_worker(decoder)

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
            self.create_subscription(Bool, self._param("topics.enable"), self._on_enable_topic, TASK_QOS)
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
                           compile=compile_setting(self._param("model.compile")))

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
                                 start_timeout_s=self._param("inference.start_timeout_s"))
        if decoder is None:
            spec = self._decoder_spec()
            self.get_logger().info(f"loading model from {spec.model_path} on {spec.device}")
            decoder = spec.load()
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
            self.get_logger().warning(f"refused parameter update: {reason}")
            return SetParametersResult(successful=False, reason=reason)
        # Accepted: rclpy sets the values after this returns; apply the live ones now.
        with self._lock:
            self._gate.settings = self._gate_settings({**current, **updates})
        return SetParametersResult(successful=True)

    # ----- inputs ---------------------------------------------------------------------------
    def _on_image(self, msg: Image | CompressedImage) -> None:
        with self._lock:
            self._last_frame = InferenceRequest(msg, self._task or "", time.monotonic())
            task = self._task
        if task is not None:
            self._worker.submit(self._last_frame)

    def _on_task(self, msg: String) -> None:
        task = msg.data.strip()
        with self._lock:
            if not task:
                self._task = None
                self._gate.invalidate()
                self._last_error = "empty task received: publish a non-empty instruction"
                self.get_logger().warning(self._last_error)
                return
            if task == self._task:
                return
            self._gate.invalidate()  # actions decoded for the old task must not go out
            self._task = task
            frame = self._last_frame
        self.get_logger().info(f"task: '{task}'")
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
        with self._lock:
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
        with self._lock:
            if request.task != self._task:
                return  # the task changed while decoding
            if not self._gate.offer(timed):
                self._last_error = f"model produced a non-finite action {result.action}: not published"
                self.get_logger().error(self._last_error)
                return
            self._last_error = None
            self._completions.append(time.monotonic())
            stats = result.stats
            self._latency["draft"].add(stats.draft_ms)
            self._latency["verify"].add(stats.verify_ms)
            self._latency["total"].add(stats.total_ms)
            self._latency["accept"].add(stats.mean_acceptance_length)
        self._stats_pub.publish(decode_stats_msg(result, self.get_clock().now().to_msg(), image_stamp,
                                                 request.image.header.frame_id))

    def _on_error(self, request: InferenceRequest, error: BaseException, trace: str) -> None:
        if isinstance(error, DecoderProcessError):  # every frame fails the same way: log it now and then
            with self._lock:
                self._last_error = str(error)
            self.get_logger().error(str(error), throttle_duration_sec=10.0)
            return
        kind = "bad input" if isinstance(error, SpecVLAError) else "model error"
        with self._lock:
            self._last_error = f"{kind}: {error}"
        self.get_logger().error(f"{kind}: {error}")
        if not isinstance(error, SpecVLAError):
            self.get_logger().debug(trace)

    # ----- outputs --------------------------------------------------------------------------
    def _on_control_tick(self) -> None:
        with self._lock:
            command = self._gate.next_command(time.monotonic(), task_known=self._task is not None)
        if command is None:
            return
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
        with self._lock:
            recent = [t for t in self._completions if now - t <= 5.0]
            inputs = diagnostics.HealthInputs(
                task_known=self._task is not None,
                image_age_s=None if self._last_frame is None else now - self._last_frame.received_s,
                image_timeout_s=self._param("image_timeout_s"),
                last_error=self._last_error,
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
        if isinstance(self._worker, ProcessWorker):
            status.values.append(KeyValue(key="decoder_process", value=self._worker.state))
            if not self._worker.alive:  # also when it died between frames, with no request to fail
                status.level = DiagnosticStatus.ERROR
                status.message = f"decoder process {self._worker.state}: restart the node"
        array = DiagnosticArray()
        array.header.stamp = self.get_clock().now().to_msg()
        array.status = [status]
        self._diag_pub.publish(array)

    # ----- shutdown -------------------------------------------------------------------------
    def destroy_node(self) -> None:
        worker = getattr(self, "_worker", None)  # absent when start-up failed (e.g. no model)
        if worker is not None and not worker.stop(timeout_s=2.0):
            self.get_logger().warning("inference worker still busy after 2 s; leaving it to exit")
        super().destroy_node()


CONTROL_SWITCH_INTERVAL_S = 0.0005


def main(args: list[str] | None = None) -> int:
    """Entry point of `specvla_node` / `ros2 run specvla_ros specvla_node`."""
    use_large_image_profile()  # before the participant exists (dds_profile.py says when it applies)
    rclpy.init(args=args)
    node: SpecVLANode | None = None
    try:
        node = SpecVLANode()
        # The inference thread runs Python-heavy decoding and holds the GIL for most of each 5 ms
        # default switch interval; the control timer waits for it. A 0.5 ms interval keeps ticks on time.
        # (With inference.isolation "process" the thread only waits on a pipe; the interval costs nothing.)
        sys.setswitchinterval(CONTROL_SWITCH_INTERVAL_S)
        executor = MultiThreadedExecutor(num_threads=2)
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except SpecVLAError as error:
        print(f"specvla_node: {error}", file=sys.stderr)
        return 1
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
