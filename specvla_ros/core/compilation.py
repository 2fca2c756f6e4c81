"""torch.compile for the decode path, with the fallback a robot needs: eager, said once, never a crash.

Modes (`model.compile`): "off" runs eager; "default" is inductor (on CPU with its C++ wrapper, which
measured 0.28 ms against 0.38 ms per tabletop decode step: the Python wrapper is most of a small
step); "reduce-overhead" adds CUDA graphs on a CUDA device (on a CPU it is "default"); "auto"
picks per device (see `resolve_mode`). Shapes: the first call of a new size compiles a graph for
it, the second size recompiles one graph with a symbolic row count, so a decoder compiles a few
graphs during its warm-up and none afterwards (test/core/test_compiled.py counts them).
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Literal

import torch

from specvla_ros.core.errors import ConfigError

log = logging.getLogger(__name__)

CompileMode = Literal["off", "default", "reduce-overhead"]
COMPILE_MODES = ("off", "default", "reduce-overhead", "auto")
# Each model shape, and the target and draft stacks, add graphs to the same function: keep room.
RECOMPILE_LIMIT = 64


def resolve_mode(mode: str, device: torch.device | str) -> CompileMode:
    """`model.compile` -> the mode used on this device.

    auto: "default" on a CPU (measured faster than eager per step, docs/benchmarks.md) and
    "reduce-overhead" (CUDA graphs) on CUDA, where launch overhead dominates a decode step (gpt-fast,
    KERV); the GPU choice is not measured on this project's machines yet.
    """
    if mode not in COMPILE_MODES:
        raise ConfigError(f"model.compile must be one of {', '.join(COMPILE_MODES)}, got '{mode}'")
    device_type = torch.device(device).type
    if mode == "auto":
        return "reduce-overhead" if device_type == "cuda" else "default"
    if mode == "reduce-overhead" and device_type != "cuda":
        log.info("model.compile reduce-overhead uses CUDA graphs, which need a CUDA device: using 'default' on %s",
                 device_type)
        return "default"
    return mode  # type: ignore[return-value]


class CompiledFunction:
    """`fn` under torch.compile (eager for "off"). Where compiling fails on a platform, the call runs
    eager from then on, and one log line says why: a missing C++ compiler must not stop a robot."""

    def __init__(self, fn: Callable[..., Any], mode: CompileMode, device_type: str = "cpu") -> None:
        self.eager = fn
        self.mode = mode
        self._compiled: Callable[..., Any] | None = None
        if mode != "off":
            config = torch._dynamo.config
            config.recompile_limit = max(config.recompile_limit, RECOMPILE_LIMIT)
            if mode == "reduce-overhead":
                self._compiled = torch.compile(fn, mode="reduce-overhead")
            elif device_type == "cpu":
                self._compiled = torch.compile(fn, options={"cpp_wrapper": True})
            else:
                self._compiled = torch.compile(fn)

    @property
    def compiled(self) -> bool:
        return self._compiled is not None

    def __call__(self, *args: Any) -> Any:
        if self._compiled is not None:
            try:
                return self._compiled(*args)
            except Exception as error:  # dynamo / inductor / toolchain failures: keep decoding, eager
                log.warning("torch.compile failed here (%s: %s); decoding eager from now on",
                            type(error).__name__, str(error).splitlines()[0] if str(error) else "")
                self._compiled = None
        return self.eager(*args)
