"""Per-phase decode timing that does not itself slow the decode down."""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator

import torch


class Stopwatch:
    """Milliseconds per phase: CUDA events on a CUDA device (read once, at the end), perf_counter on CPU.

    Events measure the GPU work between two points of the stream without synchronizing at every
    phase boundary, which would itself slow the decode down.
    """

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.device = device
        self._spans: list[tuple[str, object, object]] = []
        self._start = self.mark()

    def mark(self) -> object:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record(torch.cuda.current_stream(self.device))
            return event
        return time.perf_counter()

    def _elapsed_ms(self, start: object, end: object) -> float:
        if self.cuda:
            end.synchronize()
            return start.elapsed_time(end)
        return 1000.0 * (end - start)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = self.mark()
        yield
        self._spans.append((name, start, self.mark()))

    def finish(self) -> tuple[dict[str, float], float]:
        """(milliseconds per phase, total milliseconds since construction)."""
        end = self.mark()
        totals: dict[str, float] = {}
        for name, start, stop in self._spans:
            totals[name] = totals.get(name, 0.0) + self._elapsed_ms(start, stop)
        return totals, self._elapsed_ms(self._start, end)
