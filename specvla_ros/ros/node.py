"""specvla_node: camera + task in, end-effector deltas out at control rate; a managed (lifecycle) node.

Wiring only. Decoding lives in specvla_ros.core, the inference thread in worker.py (or the
decoder process in process_worker.py, with inference.isolation "process"), the publish/stop rules
in safety.py, health in diagnostics.py (what went wrong, per cause, in incidents.py), parameters
and the configs their values become in parameters.py, QoS profiles in qos.py, input budgets in
input_budget.py, trust in the model's output in model_check.py, lifecycle glue in lifecycle.py.
node_entry.py runs it as a process (signals, exit codes).

Lifecycle: construction checks every parameter (a bad value raises ConfigError, one line);
configure loads the model, checks it and compiles it (the inference worker or decoder process
starts) and creates the topics; activate lets frames reach the model and commands out (still
gated by dry_run and enable); deactivate sends the zero commands owed, then silence; cleanup and
shutdown stop the worker or process and free the model. `autostart` (default true) runs configure
and activate from the constructor, so a plain run starts by itself.
"""
from __future__ import annotations

import threading
import time
import traceback
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import TwistStamped
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.duration import Duration
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.publisher import Publisher
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Bool, Header, String
from std_srvs.srv import SetBool

from specvla_ros.core.config import DecoderConfig
from specvla_ros.core.decoder import ActionResult
from specvla_ros.core.errors import ConfigError, InputError, SpecVLAError
from specvla_ros.msg import DecodeStats, EndEffectorDelta
from specvla_ros.ros import diagnostics, lifecycle
from specvla_ros.ros.dds_profile import current_setup
from specvla_ros.ros.incidents import PER_DECODE, WARN, Cause, Incidents, printable
from specvla_ros.ros.input_budget import ImageTooLarge, TaskTooLong, check_image, check_task
from specvla_ros.ros.messages import command_msg, decode_stats_msg, time_to_ns, twist_msg
from specvla_ros.ros.model_check import check_model, verdict
from specvla_ros.ros.parameters import (
    NODE_NAME,
    SPECS,
    check_startup,
    check_update,
    declare_all,
    decoder_config,
    decoder_spec,
    gate_settings,
    unknown_overrides,
)
from specvla_ros.ros.process_worker import DecoderProcessError, ProcessWorker
from specvla_ros.ros.qos import COMMAND_QOS, ENABLE_LIVE_QOS, STATS_QOS, TASK_QOS, describe_image_qos, image_qos
from specvla_ros.ros.safety import Command, CommandGate, TimedAction
from specvla_ros.ros.worker import Decoder, InferenceRequest, InferenceWorker, WorkerCounters


class SpecVLANode(LifecycleNode):
    """The Spec-VLA policy node. Pass `decoder` to use an already-built decoder (tests, demo)."""

    def __init__(self, decoder: Decoder | None = None, **node_kwargs: Any) -> None:
        super().__init__(NODE_NAME, **node_kwargs)
        try:
            self._set_up(decoder)
        except BaseException:
            self.destroy_node()  # a refused node leaves nothing to the garbage collector (destroy_node says why)
            raise

    def _set_up(self, decoder: Decoder | None) -> None:
        """Parameters, state, the diagnostics publisher; with autostart, configure and activate."""
        lifecycle.answer_refused_transitions(self)  # Humble and Jazzy would raise out of the service
        values = declare_all(self)  # ConfigError, one line, on any bad start-up value
        for warning in unknown_overrides(self):
            self.get_logger().warning(warning)
        self.add_on_set_parameters_callback(self._on_set_parameters)

        self._lock = threading.Lock()
        # Held from a tick's decision to its publish; every change that can stop commands (enable, dry_run,
        # bounds, task, deactivate, shutdown) takes it first: no command decided before a stop goes out after it.
        self._publish_lock = threading.Lock()
        self._task: str | None = None
        self._last_frame: InferenceRequest | None = None  # newest frame, kept for a task change
        self._incidents = Incidents()
        self._commands_published = 0
        self._active = False  # frames reach the model and commands may leave (lifecycle state active)
        self._decodes = diagnostics.DecodeWindows()
        self._gate = CommandGate(gate_settings(values), enabled=values["start_enabled"])

        self._given_decoder = decoder  # not ours to free: kept across cleanup / configure
        self._isolation = values["inference.isolation"]
        self._decoder_config: DecoderConfig | None = None
        self._worker: InferenceWorker | ProcessWorker | None = None
        self._stopped_worker: InferenceWorker | ProcessWorker | None = None
        self._entities: list[Any] = []  # publishers, subscriptions, service, timer made by configure
        self._command_pub: Publisher | None = None
        self._twist_pub: Publisher | None = None
        self._stats_pub: Publisher | None = None
        self._control_period_s = 1.0 / values["control_rate_hz"]
        self._transition_error: BaseException | None = None  # why the last configure / activate failed
        self._autostarting = False  # transition failures are raised to the caller, not logged here
        self._transport = {"camera_qos": describe_image_qos(values["topics.image_qos"]),
                           "dds_transport": current_setup().describe()}

        # Health in every lifecycle state, from construction on.
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(1.0, self._publish_diagnostics)
        if values["autostart"]:
            self._autostart()

    def _autostart(self) -> None:
        """configure, then activate; on failure, raise the reason (the node is not returned)."""
        self._autostarting = True
        try:
            for transition in ("configure", "activate"):
                if not lifecycle.trigger(self, transition):
                    self._release()
                    raise self._transition_error or SpecVLAError(
                        f"lifecycle transition {transition} failed in state {lifecycle.state_of(self)}")
        finally:
            self._autostarting = False

    # ----- lifecycle transitions --------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Check the parameters again, load, check and compile the model, create the topics."""
        self._transition_error = None
        try:
            values = self._parameter_values()
            reason = check_startup(values)
            if reason:
                raise ConfigError(f"parameter {reason}")
            self._decoder_config = decoder_config(values)
            self._worker = self._start_worker(self._given_decoder, values)  # loads the model (or the process does)
            self._wire()
        except Exception as error:  # noqa: BLE001 - reported, and raised again by autostart
            self._release()
            return self._refuse("configure", error)
        except BaseException:  # a signal during loading: nothing left behind, the signal goes on
            self._release()
            raise
        self._incidents.resolve([Cause.TRANSITION_FAILED])
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Frames reach the model and commands leave again; enabled as start_enabled says."""
        result = super().on_activate(state)  # the lifecycle publishers first, then the flag that uses them
        with self._publish_lock, self._lock:
            self._gate.set_enabled(self._param("start_enabled"))
            self._active = True
            frame, task = self._last_frame, self._task
        if task is not None and frame is not None and \
                time.monotonic() - frame.received_s <= self._param("image_timeout_s"):
            self._worker.submit(InferenceRequest(frame.image, task, frame.received_s))
        self.get_logger().info(
            f"ready (active): {self._decoder_config.mode} decoding in a {self._isolation}, "
            f"r={list(self._decoder_config.relax_bins)}, "
            f"temporal drafts {'on' if self._decoder_config.temporal.enabled else 'off'}, "
            f"{1.0 / self._control_period_s:g} Hz, dry_run={self._param('dry_run')}, "
            f"enabled={self._gate.enabled}")
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """The zero commands owed (if commands were flowing), then silence; the model stays loaded."""
        self._stop_commands()
        self.get_logger().info("inactive: no decoding, no commands (activate to resume)")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop the worker or decoder process, free the model, remove the topics."""
        self._release()
        self.get_logger().info("unconfigured: model freed")
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """From any primary state: the zero commands owed, then everything released."""
        self._stop_commands()
        self._release()
        return super().on_shutdown(state)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        """A transition raised past its own handling: release everything and go back to unconfigured."""
        self._stop_commands()
        self._release()
        return super().on_error(state)

    def _refuse(self, transition: str, error: BaseException) -> TransitionCallbackReturn:
        """A failed transition: remember why (autostart raises it), else log and report it; FAILURE."""
        self._transition_error = error
        if self._autostarting:
            return TransitionCallbackReturn.FAILURE
        if isinstance(error, SpecVLAError):
            text = printable(error, 2000)
        else:
            self.get_logger().debug(traceback.format_exc())
            text = f"unexpected {type(error).__name__}: {printable(error, 2000)} (please report it)"
        self._report(Cause.TRANSITION_FAILED, f"{transition} failed: {text}")
        return TransitionCallbackReturn.FAILURE

    @property
    def lifecycle_state(self) -> str:
        return lifecycle.state_of(self)

    def _wire(self) -> None:
        """Publishers, subscriptions, the service and the control timer (configure)."""
        made = self._entities  # each as it is made: a failure half-way releases what exists
        # Lifecycle publishers: they publish only while the node is active.
        self._command_pub = self.create_lifecycle_publisher(EndEffectorDelta, self._param("topics.command"),
                                                            COMMAND_QOS)
        made.append(self._command_pub)
        if self._param("publish_twist"):
            self._twist_pub = self.create_lifecycle_publisher(TwistStamped, self._param("topics.twist"), COMMAND_QOS)
            made.append(self._twist_pub)
        self._stats_pub = self.create_lifecycle_publisher(DecodeStats, "~/decode_stats", STATS_QOS)
        made.append(self._stats_pub)

        camera_qos = image_qos(self._param("topics.image_qos"))
        if self._param("topics.compressed_image"):
            made.append(self.create_subscription(CompressedImage, self._param("topics.compressed_image"),
                                                 self._on_image, camera_qos))
        else:
            made.append(self.create_subscription(Image, self._param("topics.image"), self._on_image, camera_qos))
        made.append(self.create_subscription(String, self._param("topics.task"), self._on_task, TASK_QOS))
        if self._param("topics.enable"):
            # A latched value from before start-up must not override start_enabled unless asked.
            made.append(self.create_subscription(
                Bool, self._param("topics.enable"), self._on_enable_topic,
                TASK_QOS if self._param("accept_latched_enable") else ENABLE_LIVE_QOS))
        made.append(self.create_service(SetBool, "~/enable", self._on_enable_service))

        self._control_period_s = 1.0 / self._param("control_rate_hz")
        made.append(self.create_timer(self._control_period_s, self._on_control_tick,
                                      callback_group=MutuallyExclusiveCallbackGroup()))
        # What loading decided (decoder.tree.auto's choice), in this process or the decoder process.
        for note in self._worker.start_notes:
            self.get_logger().info(note)
        # How frames reach this node, for logs and /diagnostics (large frames need one of the two set up).
        self.get_logger().info(f"configured: camera QoS {self._transport['camera_qos']}; "
                               f"DDS: {self._transport['dds_transport']}")

    # ----- start-up -------------------------------------------------------------------------
    def _param(self, name: str) -> Any:
        return self.get_parameter(name).value

    def _start_worker(self, decoder: Decoder | None, values: dict[str, Any]) -> InferenceWorker | ProcessWorker:
        """The inference thread over an in-process decoder, or the decoder process (loads the model)."""
        if self._isolation == "process":
            if decoder is not None:
                raise ConfigError("inference.isolation 'process' loads the model from model.path in a child "
                                  "process; a decoder object passed to SpecVLANode cannot move there: pass no "
                                  "decoder, or use inference.isolation 'thread'")
            spec = decoder_spec(values, self._decoder_config)
            self.get_logger().info(f"loading model from {spec.model_path} on {spec.device} in a decoder process")
            return ProcessWorker(spec, self._on_result, self._on_error,
                                 start_timeout_s=self._param("inference.start_timeout_s"),
                                 heartbeat_timeout_s=self._param("inference.heartbeat_timeout_s"))
        if decoder is None:
            spec = decoder_spec(values, self._decoder_config)
            self.get_logger().info(f"loading model from {spec.model_path} on {spec.device}")
            decoder = spec.load()  # with the start-up check unless model.startup_check is false
        elif self._param("model.startup_check"):
            check_model(decoder, "the decoder passed to SpecVLANode")
        return InferenceWorker(decoder, self._on_result, self._on_error,
                               frame_times=self._decoder_config.temporal.enabled)

    def _parameter_values(self) -> dict[str, Any]:
        return {spec.name: self._param(spec.name) for spec in SPECS}

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
            self._gate.update_settings(gate_settings({**current, **updates}))
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
            task, worker = self._task, self._worker if self._active else None
        if task is not None and worker is not None:
            worker.submit(self._last_frame)

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
            frame, worker = self._last_frame, self._worker if self._active else None
        if refusal:  # the old task stops too: the sender meant to change it
            self._report(Cause.TASK_REJECTED, refusal)
            return
        self._incidents.resolve([Cause.TASK_REJECTED])
        self.get_logger().info(f"task: '{printable(task, 120)}'")
        if worker is not None and frame is not None and \
                time.monotonic() - frame.received_s <= self._param("image_timeout_s"):
            # Answer the new task from the newest frame now, not one camera period later.
            worker.submit(InferenceRequest(frame.image, task, frame.received_s))

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
    def _on_result(self, request: InferenceRequest, result: ActionResult) -> None:
        image_stamp = request.image.header.stamp
        timed = TimedAction(action=np.asarray(result.action, dtype=float),
                            normalized=np.asarray(result.normalized, dtype=float),
                            bins=tuple(result.bins), frame_received_s=request.received_s,
                            image_stamp_ns=time_to_ns(image_stamp))
        problem = verdict(result)  # NaN/inf or a non-action token: never a model command
        stats = result.stats
        with self._lock:
            if request.task != self._task or not self._active:
                return  # the task changed while decoding, or the node was deactivated
            if problem is None:
                self._gate.offer(timed)
            self._decodes.record(stats, time.monotonic())
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
        with self._lock:  # not after a deactivate or cleanup (which take the lock)
            if self._active:
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
            if not self._active:
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
        worker = self._worker
        counters = worker.counters if worker is not None else WorkerCounters()
        process = worker if isinstance(worker, ProcessWorker) else None
        if process is not None and not process.responsive:  # also when it died between frames
            self._report(Cause.DECODER_PROCESS, f"decoder process {process.state}: restart the node")
        elif process is not None:
            self._incidents.resolve([Cause.DECODER_PROCESS])  # it answers again (was stopped, continued)
        with self._lock:
            inputs = diagnostics.HealthInputs(
                task_known=self._task is not None,
                image_age_s=None if self._last_frame is None else now - self._last_frame.received_s,
                image_timeout_s=self._param("image_timeout_s"),
                incidents=self._incidents.current(now),
                incident_counts=self._incidents.counts(),
                decoding_for_s=worker.busy_for_s(now) if worker is not None else None,
                latency_budget_ms=self._param("latency_budget_ms"),
                dry_run=self._gate.settings.dry_run,
                enabled=self._gate.enabled,
                relax_bins=self._decoder_config.relax_bins if self._decoder_config else (),
                mode=self._decoder_config.mode if self._decoder_config else self._param("decoder.mode"),
                dropped_frames=counters.dropped,
                inferences=counters.completed,
                failed_inferences=counters.failed,
                commands_published=self._commands_published,
                inference_rate_hz=self._decodes.rate_hz(now),
                decodes=self._decodes,
                lifecycle_state=self.lifecycle_state,
            )
            extra = {**self._transport, **({"decoder_process": process.state} if process is not None else {})}
            status = diagnostics.build_status(self.get_name(), self._param("model.path") or "in-process", inputs,
                                              extra)
        self._diag_pub.publish(DiagnosticArray(header=Header(stamp=self.get_clock().now().to_msg()),
                                               status=[status]))

    # ----- stopping -------------------------------------------------------------------------
    def _stop_commands(self) -> None:
        """Commands stop: the zero commands owed go out now (if commands were flowing), then nothing."""
        with self._publish_lock:  # after this, no tick publishes: the zeros are the last commands
            with self._lock:
                was_active, self._active = self._active, False
                stops = self._gate.stop_commands() if was_active else []
                self._gate.invalidate()  # an action decoded before the stop never goes out after it
            for command in stops:
                self._publish(command)
        if stops:
            self._command_pub.wait_for_all_acked(Duration(seconds=0.5))  # out before the node goes

    def _release(self) -> bool:
        """Stop the worker (or decoder process) within inference.shutdown_timeout_s, free the model,
        remove what configure made. True when nothing of the decoder is left running."""
        with self._publish_lock, self._lock:
            self._active = False
            worker, self._worker = self._worker, None
            entities, self._entities = self._entities, []
            self._task, self._last_frame = None, None
        stopped = True
        if worker is not None:
            self._stopped_worker = worker
            timeout_s = self._param("inference.shutdown_timeout_s")
            stopped = worker.stop(timeout_s=timeout_s)
            if not stopped:
                self.get_logger().warning(f"the decode in flight did not end within {timeout_s:g} s; going on "
                                          "without it")
        for entity in entities:
            lifecycle.destroy_entity(self, entity)
        self._command_pub = self._twist_pub = self._stats_pub = None
        if self._decoder_config is not None and self._param("model.device").startswith("cuda"):
            import torch  # the model's memory goes back to the GPU now, not at the next allocation

            torch.cuda.empty_cache()
        return stopped

    def shutdown(self) -> bool:
        """Stop for good (SIGINT / SIGTERM, destroy_node): the lifecycle shutdown transition, i.e. the
        zero commands owed, then the worker within inference.shutdown_timeout_s. True when nothing of
        the decoder is left running."""
        if self.lifecycle_state != lifecycle.FINALIZED and not lifecycle.trigger(self, "shutdown"):
            # A transition in flight (a configure still loading the model when the signal came): stop what
            # exists; that transition's thread cannot be interrupted, so the process must end without it.
            self._stop_commands()
            self._release()
            return False
        worker = self._stopped_worker
        return worker is None or not worker.busy

    def destroy_node(self) -> None:
        if getattr(self, "_gate", None) is not None:
            self.shutdown()
        super().destroy_node()
        # rclpy's LifecycleNode does not free its state machine, which holds the rcl node: without this the
        # node stays in the graph until garbage collection, and the collector may then destroy the context's
        # DDS participant while holding the GIL (Fast DDS waits for a listener thread that needs it: a hang).
        state_machine = getattr(self, "_state_machine", None)
        if state_machine is not None:
            state_machine.destroy_when_not_in_use()
