"""Seeded generators of what users, files and other nodes may send specvla_node: valid and malformed
camera frames (raw and compressed), tasks, live parameter sets, enable switches, start-up
parameter sets. Shared by test/ros/test_fuzz.py (CI budget) and bench/fuzz_soak.py (10 minutes).

Each generated input carries the incident cause it must provoke when the node receives it (None:
a valid input; "any": the outcome depends on a decoder, e.g. a truncated JPEG may still decode).
"""
from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import cv2
import numpy as np
from sensor_msgs.msg import CompressedImage, Image

from specvla_ros.ros.input_budget import PNG_SIGNATURE
from specvla_ros.ros.parameters import SPECS_BY_NAME

TASKS = ["pick up the red cube", "push the blue cube to the left", "Put the red cube on the green plate",
         "pick up the yellow cube", "push the purple cube to the right"]
FORGED_LINE = "\n[ERROR] [0.0] [specvla_node]: forged line"
ODD_TEXT = ["\u202epick up", "pick\u200bup the cube", "\U0001F916 pick up", "put\tit\x1b[31m down", "\r\n", "é" * 40]
# Live parameters the fuzz changes, with the values it draws from (good and bad ones).
LIVE_NUMBERS = {
    "action_timeout_s": [0.05, 0.3, 1.0, 0.0, -1.0, math.nan, math.inf, 1e9],
    "image_timeout_s": [0.2, 2.0, -3.0, math.nan],
    "latency_budget_ms": [5.0, 200.0, 5000.0, 0.0, math.inf],
    "max_linear_speed_mps": [0.0, 0.05, 0.25, 3.0, -0.1, math.nan, 1e6],
    "max_angular_speed_radps": [0.0, 0.2, 1.0, -2.0, math.inf],
}
LIVE_INTEGERS = {
    "zero_commands_on_disable": [0, 1, 3, 7, -1, 101],
    "inputs.max_task_bytes": [8, 64, 256, 0, 10 ** 9],
    "inputs.max_image_pixels": [64 * 64, 300 * 300, 3840 * 2160, 0, -5],
}
READ_ONLY = {"control_rate_hz": 50.0, "decoder.relax_bins": [3], "model.path": "/elsewhere",
             "inference.isolation": "process", "topics.command": "/other"}


@dataclass
class Input:
    """One generated input: what to send and the incident cause it must provoke (see module doc)."""

    kind: str                 # raw_image | compressed_image | task | parameters | enable | enable_topic
    payload: Any
    cause: str | None = None
    note: str = ""


@dataclass
class Mix:
    """How often each kind is drawn (weights)."""

    weights: dict[str, float] = field(default_factory=lambda: {
        "image": 0.62, "task": 0.12, "parameters": 0.14, "enable": 0.10, "enable_topic": 0.02})


@lru_cache(maxsize=1)
def png_bomb() -> bytes:
    """A real decompression bomb: a 20000 x 20000 grey PNG of zeros, ~400 kB compressed, 1.2 GB as RGB."""
    width = height = 20000
    compressor = zlib.compressobj(9)
    row = b"\x00" * (width + 1)  # filter byte + pixels
    chunks = [compressor.compress(row) for _ in range(height)]
    data = b"".join(chunks) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return PNG_SIGNATURE + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", data) + _png_chunk(b"IEND", b"")


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def jpeg_header_claiming(width: int, height: int) -> bytes:
    """SOI + a baseline frame header for width x height, then end of image: no pixel data."""
    sof = struct.pack(">BBHBHHB", 0xFF, 0xC0, 11, 8, height, width, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + sof + b"\xff\xd9"


class Traffic:
    """Seeded inputs; the same seed gives the same sequence."""

    def __init__(self, seed: int, mix: Mix | None = None, max_image_pixels: int = 3840 * 2160) -> None:
        self.rng = np.random.default_rng(seed)
        self.mix = mix or Mix()
        self.max_image_pixels = max_image_pixels

    def _pick(self, options: list) -> Any:
        return options[int(self.rng.integers(len(options)))]

    def frame(self, size: tuple[int, int] | None = None) -> np.ndarray:
        height, width = size or (int(self.rng.integers(8, 80)), int(self.rng.integers(8, 80)))
        return self.rng.integers(0, 256, (height, width, 3), dtype=np.uint8)

    # ----- camera ------------------------------------------------------------------------------
    def raw_image(self) -> Input:
        variant = self._pick(["valid", "valid", "valid", "valid", "short", "long", "step", "empty", "encoding",
                              "claims_huge", "tiny", "padded"])
        rgb = self.frame()
        height, width = rgb.shape[:2]
        encoding = self._pick(["rgb8", "bgr8", "mono8", "rgba8", "bgra8"])
        channels = {"mono8": 1, "rgba8": 4, "bgra8": 4}.get(encoding, 3)
        pixels = rgb[:, :, :1] if channels == 1 else np.concatenate([rgb, rgb[:, :, :1]], 2) if channels == 4 else rgb
        msg = Image(height=height, width=width, encoding=encoding, step=width * channels,
                    data=np.ascontiguousarray(pixels).tobytes())
        cause = None
        if variant == "padded":
            pad = int(self.rng.integers(1, 9))
            rows = np.zeros((height, width * channels + pad), np.uint8)
            rows[:, : width * channels] = pixels.reshape(height, -1)
            msg.step, msg.data = width * channels + pad, rows.tobytes()
        elif variant == "short":
            msg.data = msg.data[: int(self.rng.integers(0, len(msg.data)))]
            cause = "image_rejected"
        elif variant == "long":
            msg.data = bytes(msg.data) + b"\x00" * int(self.rng.integers(1, 64))
            cause = "image_rejected"
        elif variant == "step":
            msg.step = int(self.rng.integers(0, width * channels))
            cause = "image_rejected"
        elif variant == "empty":
            msg.height, msg.width, msg.step, msg.data = 0, 0, 0, b""
            cause = "image_rejected"
        elif variant == "encoding":
            msg.encoding = self._pick(["yuv422", "16UC1", "bayer_rggb8", "", "RGB8 ", "rgb8" + FORGED_LINE,
                                       "\x1b[2J", "🦾"])
            cause = "image_rejected"
        elif variant == "claims_huge":
            msg.width, msg.height = self._pick([(100_000, 100_000), (2 ** 31 - 1, 2), (4096, 4096)])
            msg.step = msg.width * channels
            cause = "image_too_large"
        elif variant == "tiny":
            msg.height, msg.width, msg.encoding, msg.step, msg.data = 1, 1, "rgb8", 3, b"\x10\x20\x30"
            cause = "image_rejected"
        return Input("raw_image", msg, cause, variant)

    def compressed_image(self) -> Input:
        variant = self._pick(["jpeg", "jpeg", "png", "png", "random", "truncated", "bomb", "claims_huge_jpeg",
                              "claims_huge_png", "other_format", "empty", "garbage_after_header"])
        msg = CompressedImage(format=self._pick(["jpeg", "png", "rgb8; jpeg compressed bgr8", "", "\n\x07"]))
        cause = None
        rgb = self.frame()
        if variant in ("jpeg", "png", "truncated", "garbage_after_header"):
            ok, encoded = cv2.imencode(".png" if variant == "png" else ".jpg", rgb)
            data = encoded.tobytes()
            if variant == "truncated":
                data, cause = data[: int(self.rng.integers(2, len(data)))], "any"
            elif variant == "garbage_after_header":
                cut = min(len(data), 40)
                data, cause = data[:cut] + self.rng.bytes(int(self.rng.integers(1, 200))), "any"
        elif variant == "random":
            data, cause = self.rng.bytes(int(self.rng.integers(1, 4000))), "image_rejected"
        elif variant == "bomb":
            data, cause = png_bomb(), "image_too_large"
        elif variant == "claims_huge_jpeg":
            data, cause = jpeg_header_claiming(65000, 65000), "image_too_large"
        elif variant == "claims_huge_png":
            ihdr = struct.pack(">IIBBBBB", 50_000, 50_000, 8, 2, 0, 0, 0)
            data, cause = PNG_SIGNATURE + _png_chunk(b"IHDR", ihdr), "image_too_large"
        elif variant == "other_format":
            data = self._pick([b"BM" + b"\x00" * 60, b"GIF89a" + b"\x00" * 30, b"II*\x00" + b"\x00" * 30,
                               b"RIFF\x00\x00\x00\x00WEBPVP8 "])
            cause = "image_rejected"
        else:
            data, cause = b"", "image_rejected"
        msg.data = data
        return Input("compressed_image", msg, cause, variant)

    # ----- task --------------------------------------------------------------------------------
    def task(self, max_bytes: int = 256) -> Input:
        variant = self._pick(["valid", "valid", "valid", "empty", "forged", "odd", "long", "at_limit", "huge"])
        if variant == "valid":
            text = self._pick(TASKS)
            return Input("task", text.upper() if self.rng.random() < 0.2 else text, None, variant)
        if variant == "empty":
            return Input("task", self._pick(["", "   ", "\n\t "]), "task_rejected", variant)
        if variant == "forged":
            return Input("task", self._pick(TASKS) + FORGED_LINE, None, variant)
        if variant == "odd":
            text = self._pick(ODD_TEXT)
            return Input("task", text, None if text.strip() else "task_rejected", variant)
        if variant == "at_limit":
            text = ("é" * max_bytes)[: max_bytes // 2]
            return Input("task", text, None, variant)
        if variant == "long":
            size = max_bytes + int(self.rng.integers(1, 64))
        else:
            size = int(self.rng.integers(10_000, 100_000))
        return Input("task", ("pick up the cube " * (size // 17 + 1))[:size], "task_rejected", variant)

    # ----- parameters --------------------------------------------------------------------------
    def bounds(self) -> list[float]:
        """A 7-vector for action_low / action_high: mostly plausible, sometimes broken."""
        variant = self._pick(["low", "high", "high", "low", "nan", "inf", "short", "long", "huge", "zero"])
        if variant == "low":
            return [-float(self.rng.uniform(0.0, 0.3)) for _ in range(6)] + [float(self.rng.uniform(-0.5, 0.5))]
        if variant == "high":
            return [float(self.rng.uniform(0.0, 0.3)) for _ in range(6)] + [float(self.rng.uniform(0.5, 1.5))]
        if variant == "nan":
            return [math.nan] + [0.1] * 6
        if variant == "inf":
            return [0.1] * 6 + [math.inf]
        if variant == "short":
            return [0.1] * int(self.rng.integers(1, 7))
        if variant == "long":
            return [0.1] * int(self.rng.integers(8, 12))
        if variant == "huge":
            return [1e6] * 7
        return [0.0] * 7

    def parameters(self) -> Input:
        """A set of live parameter updates (applied atomically), good and bad."""
        updates: dict[str, Any] = {}
        for _ in range(int(self.rng.integers(1, 4))):
            kind = self._pick(["bounds", "bounds", "number", "integer", "dry_run", "dry_run", "policy", "frame_id",
                               "read_only", "wrong_type"])
            if kind == "bounds":
                updates[self._pick(["action_low", "action_high"])] = self.bounds()
            elif kind == "number":
                name = self._pick(list(LIVE_NUMBERS))
                updates[name] = float(self._pick(LIVE_NUMBERS[name]))
            elif kind == "integer":
                name = self._pick(list(LIVE_INTEGERS))
                updates[name] = int(self._pick(LIVE_INTEGERS[name]))
            elif kind == "dry_run":
                updates["dry_run"] = bool(self.rng.random() < 0.4)
            elif kind == "policy":
                updates["stale_action_policy"] = self._pick(["zero", "hold", "drift", ""])
            elif kind == "frame_id":
                updates["frame_id"] = self._pick(["base_link", "tool0", "", "a" * 300, "x" + FORGED_LINE])
            elif kind == "read_only":
                name = self._pick(list(READ_ONLY))
                updates[name] = READ_ONLY[name]
            else:
                name = self._pick(["action_timeout_s", "dry_run", "action_low", "zero_commands_on_disable"])
                updates[name] = self._pick(["fast", 3, [1, 2, 3], 2.5, True])
        return Input("parameters", updates)

    def startup_parameters(self) -> dict[str, Any]:
        """A start-up parameter set (overrides): mostly good, often one bad or odd value."""
        overrides: dict[str, Any] = {}
        for _ in range(int(self.rng.integers(0, 5))):
            kind = self._pick(["bounds", "number", "integer", "rate", "flag", "relax", "tree", "wrong_type"])
            if kind == "bounds":
                overrides[self._pick(["action_low", "action_high"])] = self.bounds()
            elif kind == "number":
                name = self._pick(list(LIVE_NUMBERS))
                overrides[name] = float(self._pick(LIVE_NUMBERS[name]))
            elif kind == "integer":
                name = self._pick(list(LIVE_INTEGERS))
                overrides[name] = int(self._pick(LIVE_INTEGERS[name]))
            elif kind == "rate":
                overrides["control_rate_hz"] = float(self._pick([0.1, 0.5, 10.0, 30.0, 1000.0, 5000.0, math.nan]))
            elif kind == "flag":
                overrides[self._pick(["dry_run", "start_enabled", "publish_twist", "accept_latched_enable",
                                      "decoder.action_tokens_only"])] = bool(self.rng.random() < 0.5)
            elif kind == "relax":
                overrides["decoder.relax_bins"] = self._pick([[0], [3], [1, 2, 3, 4, 5, 6, 0], [300], [1, 2], [-1]])
            elif kind == "tree":
                overrides[self._pick(["decoder.tree.top_k", "decoder.tree.depth", "decoder.tree.total_tokens"])] = \
                    int(self._pick([1, 4, 6, 7, 0, -3, 100, 1000]))
            else:
                name = self._pick(["control_rate_hz", "action_low", "decoder.relax_bins", "dry_run", "frame_id"])
                overrides[name] = self._pick([10, "fast", [1, 2], 3.5, [0.1] * 7])
        return overrides

    # ----- the mix -----------------------------------------------------------------------------
    def next(self, compressed: bool, max_task_bytes: int = 256) -> Input:
        kinds, weights = zip(*self.mix.weights.items(), strict=True)
        kind = kinds[int(self.rng.choice(len(kinds), p=np.asarray(weights) / sum(weights)))]
        if kind == "image":
            return self.compressed_image() if compressed else self.raw_image()
        if kind == "task":
            return self.task(max_task_bytes)
        if kind == "parameters":
            return self.parameters()
        return Input(kind, bool(self.rng.random() < 0.6))


def live_defaults() -> dict[str, Any]:
    return {name: spec.default for name, spec in SPECS_BY_NAME.items()}
