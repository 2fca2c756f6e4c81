"""Decoding in a child process, so the control timer never waits for the decoder's GIL.

With a small CPU model, decoding is mostly Python call overhead: on a thread in the node's
interpreter it holds the GIL for most of every switch interval and the control timer ticks late
(publish-period jitter p99 65 ms at 30 Hz, docs/benchmarks.md). Here the decoder lives in a child
process started with the "spawn" context (fork would copy rclpy's and DDS's threads and locks in
whatever state they are in); the node keeps the same single-slot mailbox (`MailboxWorker`), and its
thread only converts the image, sends it and blocks on the pipe, with the GIL released.

What crosses the pipe is small: a `DecodeCall` (rgb numpy image, instruction, two floats) in, the
decoder's `ActionResult` (numpy arrays, tuples, a stats dataclass) out. The child builds its own
decoder from a picklable `DecoderSpec`, so decoder state that lives across calls (the temporal-draft
history and its reset rules, applied inside `decode`) lives there too.

A child that dies (out-of-memory kill, a native crash, a CUDA fault) is not restarted: the request
in flight and every later one fail with `DecoderProcessError` (counted, logged, on /diagnostics),
commands fall to the stale-action policy after `action_timeout_s`, and a person restarts the node.
A silent restart would hide the fault, could loop on a deterministic crash, and for a 7B model takes
tens of seconds and the GPU memory again. A child that lives but stops answering (stopped, or hung
holding its interpreter) is caught by its heartbeat: a thread in the child stamps a shared clock
every `HEARTBEAT_PERIOD_S`, and `state` says "not responding" once the stamp is older than the
node's `inference.heartbeat_timeout_s`.

The child ignores SIGINT and SIGTERM (a Ctrl-C or a service manager signals the whole process
group): the parent decides when it ends, and kills it if a decode outlasts the shutdown bound.
"""
from __future__ import annotations

import ctypes
import multiprocessing
import os
import pickle
import signal
import threading
import time
import traceback
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any, Callable

import torch

from specvla_ros.core.config import DecoderConfig
from specvla_ros.core.decoder import ActionResult
from specvla_ros.core.errors import CheckpointError, SpecVLAError
from specvla_ros.core.loading import load_decoder
from specvla_ros.ros.model_check import check_model
from specvla_ros.ros.worker import Decoder, InferenceRequest, MailboxWorker, WorkerStopped

HEARTBEAT_PERIOD_S = 0.25


class DecoderProcessError(SpecVLAError):
    """The decoder process died or cannot serve requests; restart the node."""


class DecoderStartError(DecoderProcessError):
    """The decoder process could not load the model, or did not report ready in time."""


class RemoteDecodeError(Exception):
    """An exception raised in the decoder process that could not be sent back as itself."""


class _RemoteTraceback(Exception):
    """Carries the child's traceback text as the cause of a re-raised exception."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class DecoderSpec:
    """Everything the child needs to build the decoder itself: the arguments of `load_decoder`.

    torch_threads defaults to this process's torch thread count, so both isolation modes decode
    with the same number of threads.
    """

    model_path: str
    draft_path: str | None
    config: DecoderConfig
    device: str = "cpu"
    dtype: str = "float32"
    center_crop: bool | None = None
    quantization: str | None = None
    compile: str = "off"
    torch_threads: int = field(default_factory=torch.get_num_threads)
    startup_check: bool = True  # decode a synthetic frame after loading (model_check.check_model)

    def load(self) -> Decoder:
        if self.torch_threads > 0 and torch.get_num_threads() != self.torch_threads:
            torch.set_num_threads(self.torch_threads)
        try:
            decoder = load_decoder(self.model_path, self.draft_path, self.config, device=self.device,
                                   dtype=self.dtype, center_crop=self.center_crop, quantization=self.quantization,
                                   compile=self.compile)
        except SpecVLAError:
            raise
        except Exception as error:  # a corruption the loaders do not name: still one line, still typed
            raise CheckpointError(f"model.path '{self.model_path}' (model.draft_path '{self.draft_path or ''}') "
                                  f"could not be loaded: {type(error).__name__}: {str(error).strip()}; a config.json "
                                  "there may be corrupt") from error
        if self.startup_check:
            check_model(decoder, f"model.path '{self.model_path}'")
        return decoder


def _portable(error: BaseException) -> BaseException:
    """The exception itself if it survives pickling, else a RemoteDecodeError with its text."""
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:
        return RemoteDecodeError(f"{type(error).__name__}: {error}")


def _beat(heartbeat: Any) -> None:
    """The child's heartbeat: stamp the shared clock until the process ends (a daemon thread)."""
    while True:
        heartbeat.value = time.monotonic()  # CLOCK_MONOTONIC: one clock for every process on the machine
        time.sleep(HEARTBEAT_PERIOD_S)


def _serve(spec: DecoderSpec, conn: Connection, heartbeat: Any = None) -> None:
    """The child: load the decoder, say so, then answer ("decode", call) until ("stop",) or EOF."""
    # Ctrl-C and service managers signal the whole process group; the parent decides when this ends.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if heartbeat is not None:
        threading.Thread(target=_beat, args=(heartbeat,), name="specvla_heartbeat", daemon=True).start()
    try:
        decoder = spec.load()
    except BaseException as error:
        conn.send(("load_error", _portable(error), traceback.format_exc()))
        return
    conn.send(("ready", os.getpid(), list(getattr(decoder, "start_notes", []))))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return  # the parent is gone
        if message[0] == "stop":
            return
        try:
            reply: tuple[Any, ...] = ("result", message[1].run(decoder))
        except Exception as error:
            reply = ("error", _portable(error), traceback.format_exc())
        try:
            conn.send(reply)  # pickles first, then writes: a reply that does not pickle writes nothing
        except (EOFError, OSError):
            return  # the parent is gone
        except Exception as error:
            conn.send(("error", RemoteDecodeError(f"the result could not be sent back: {error}"),
                       traceback.format_exc()))


def describe_exit(exitcode: int | None) -> str:
    if exitcode is None:
        return "still running"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hint = " (out of memory? see `dmesg`)" if name == "SIGKILL" else ""
        return f"killed by {name}{hint}"
    return f"exited with code {exitcode}"


class ProcessWorker(MailboxWorker[InferenceRequest, ActionResult]):
    """`InferenceWorker`'s semantics with the decoder in a spawned child process.

    The request becomes a `DecodeCall` on the worker thread in this process (image conversion: bad
    input fails here), with the frame's time and age when the spec's config drafts temporally; the
    call is sent to the child. Start-up blocks until the child has loaded the model, raising
    `DecoderStartError` on a load error or after `start_timeout_s`.
    """

    def __init__(
        self,
        spec: DecoderSpec,
        on_result: Callable[[InferenceRequest, ActionResult], None],
        on_error: Callable[[InferenceRequest, BaseException, str], None],
        name: str = "specvla_inference",
        start_timeout_s: float = 300.0,
        heartbeat_timeout_s: float = 3.0,
    ) -> None:
        super().__init__(on_result, on_error, name)
        self._spec = spec
        self._frame_times = spec.config.temporal.enabled
        self.start_notes: list[str] = []  # what the child's loading decided, for the node's log
        self._send_lock = threading.Lock()
        self._failure: str | None = None  # why the child can no longer serve, once it died
        self.heartbeat_timeout_s = heartbeat_timeout_s
        context = multiprocessing.get_context("spawn")
        self._heartbeat = context.RawValue(ctypes.c_double, 0.0)  # written by the child only
        self._conn, child_conn = context.Pipe(duplex=True)
        self._process = context.Process(target=_serve, args=(spec, child_conn, self._heartbeat),
                                        name=f"{name}_process", daemon=True)
        self._process.start()
        child_conn.close()  # only the child holds its end: its exit shows here as EOF
        try:
            self._await_ready(start_timeout_s)
        except BaseException:
            self._end_process(grace_s=0.0)
            self._conn.close()
            raise
        self._start_thread()

    @property
    def pid(self) -> int | None:
        return self._process.pid

    @property
    def alive(self) -> bool:
        return self._process.is_alive()

    @property
    def heartbeat_age_s(self) -> float | None:
        """Seconds since the child's last heartbeat; None before its first."""
        stamp = self._heartbeat.value
        return None if stamp == 0.0 else time.monotonic() - stamp

    @property
    def responsive(self) -> bool:
        """Alive and its heartbeat younger than heartbeat_timeout_s."""
        age = self.heartbeat_age_s
        return self.alive and (age is None or age <= self.heartbeat_timeout_s)

    @property
    def state(self) -> str:
        """For diagnostics: 'running (pid N)', 'not responding ...' or how the child ended."""
        if not self._process.is_alive():
            return describe_exit(self._process.exitcode)
        if not self.responsive:
            return (f"not responding: no heartbeat for {self.heartbeat_age_s:.1f} s (pid {self._process.pid}; "
                    f"stopped or hung)")
        return f"running (pid {self._process.pid})"

    def _await_ready(self, timeout_s: float) -> None:
        started = time.monotonic()
        ready = wait([self._conn, self._process.sentinel], timeout_s)
        where = f"model.path '{self._spec.model_path}' on {self._spec.device}"
        if self._conn in ready:
            try:
                message = self._conn.recv()
            except (EOFError, OSError):
                message = None
            if message is not None and message[0] == "ready":
                self.start_notes = list(message[2])
                return
            if message is not None and message[0] == "load_error":
                error = message[1]
                raise DecoderStartError(f"the decoder process could not load the model ({where}): "
                                        f"{type(error).__name__}: {error}") from error
        if ready:
            self._process.join(1.0)
            raise DecoderStartError(f"the decoder process {describe_exit(self._process.exitcode)} before it was "
                                    f"ready ({where}): its traceback is on stderr; a script that starts the node "
                                    f"needs an `if __name__ == '__main__':` guard (spawn imports it again)")
        raise DecoderStartError(f"the decoder process did not report ready within {time.monotonic() - started:.0f} s "
                                f"({where}): raise inference.start_timeout_s for a slow disk or a large model")

    def _execute(self, request: InferenceRequest) -> ActionResult:
        if self._stopping:
            raise WorkerStopped()
        if self._failure is not None:
            raise DecoderProcessError(self._failure)
        call = request.decode_call(self._frame_times)
        try:
            with self._send_lock:
                self._conn.send(("decode", call))
        except (OSError, ValueError):
            pass  # the child is gone: _receive sees its exit
        reply = self._receive()
        if reply[0] == "result":
            return reply[1]
        error, trace = reply[1], reply[2]
        error.__cause__ = _RemoteTraceback(f"\n\"\"\"\n{trace}\"\"\"")  # the child's traceback in ours
        raise error

    def _receive(self) -> tuple[Any, ...]:
        """The child's reply, or DecoderProcessError once it has died (WorkerStopped when stopping)."""
        ready = wait([self._conn, self._process.sentinel])
        if self._conn in ready:
            try:
                return self._conn.recv()
            except (EOFError, OSError):
                pass  # died mid-reply
            except Exception as error:  # a reply that does not unpickle here
                return ("error", RemoteDecodeError(f"the decoder process's reply could not be read: {error}"), "")
        self._process.join(1.0)
        if self._stopping:
            raise WorkerStopped()
        self._failure = (f"decoder process (pid {self._process.pid}) {describe_exit(self._process.exitcode)}; "
                         f"not restarted: no model actions until the node is restarted")
        raise DecoderProcessError(self._failure)

    def stop(self, timeout_s: float = 2.0) -> bool:
        """Stop the thread and the child; the child is killed if it is still busy after timeout_s.

        True when both have ended. A process, unlike a thread, can be ended mid-decode safely.
        """
        deadline = time.monotonic() + timeout_s
        self._request_stop()
        # The worker thread may hold the lock, blocked writing a frame to a child that stopped reading.
        if self._send_lock.acquire(timeout=min(0.2, timeout_s)):
            try:
                self._conn.send(("stop",))
            except (OSError, ValueError):
                pass
            finally:
                self._send_lock.release()
        self._end_process(grace_s=max(0.0, deadline - time.monotonic()))
        self._thread.join(max(0.5, deadline - time.monotonic()))
        if not self._thread.is_alive():
            self._conn.close()
        return not self._process.is_alive() and not self._thread.is_alive()

    def _end_process(self, grace_s: float) -> None:
        """Wait grace_s for the child to finish, then kill it (it ignores SIGTERM; SIGKILL also ends a
        stopped process)."""
        self._process.join(grace_s)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(2.0)
