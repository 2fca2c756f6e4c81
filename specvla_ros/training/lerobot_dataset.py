"""LeRobot datasets as a source of observations: one camera's frames and each frame's task string.

LeRobot's own reader is not used: its releases for Python 3.11 (0.4.x) require torch < 2.11 and
opencv-python-headless < 4.13, which clash with our torch==2.13.0 and OpenCV 5 pins, and 0.5 onwards
needs Python 3.12 (checked with pip in a throwaway venv, docs/training.md). The format is plain files,
so it is read here with the libraries it is built on: pyarrow for the parquet tables and PyAV for the
videos (the decoder lerobot itself falls back to; its wheels bundle FFmpeg with dav1d, so AV1,
LeRobot's default codec, decodes without a system FFmpeg).

Layouts, told apart by meta/info.json's codebase_version:
  v3.0  data/chunk-XXX/file-YYY.parquet (many episodes per file), meta/tasks.parquet,
        meta/episodes/chunk-XXX/file-YYY.parquet, videos/KEY/chunk-XXX/file-YYY.mp4 (many episodes
        per file: episode e starts at its videos/KEY/from_timestamp)
  v2.x  data/chunk-XXX/episode_NNNNNN.parquet, meta/tasks.jsonl, meta/episodes.jsonl,
        videos/chunk-XXX/KEY/episode_NNNNNN.mp4 (one episode per file, from 0 s)
A frame of episode e with timestamp t is the video frame at from_timestamp(e) + t, within
TOLERANCE_S, as lerobot decodes it. Camera features stored as images live in the parquet itself.
Frames are decoded only when asked for (`images_at`), so a large dataset costs only the frames used.
"""
from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Sequence

import numpy as np

from specvla_ros.core.errors import InputError

INFO_FILE = "meta/info.json"
TOLERANCE_S = 1e-4   # lerobot's default tolerance between a frame's timestamp and its video frame
RESEEK_GAP_S = 1.0   # decode forward through gaps shorter than this; seek to a keyframe past longer ones


def is_lerobot_dataset(path: Path) -> bool:
    return path.is_dir() and (path / INFO_FILE).is_file()


def _read_table(paths: list[Path], columns: list[str]):
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pa.concat_tables([pq.read_table(path, columns=columns) for path in paths])
    except (OSError, pa.ArrowInvalid, KeyError) as bad:
        raise InputError(f"cannot read the LeRobot tables {paths[0].parent} ({bad})") from None


def _jsonl(path: Path) -> list[dict]:
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, json.JSONDecodeError) as bad:
        raise InputError(f"cannot read {path} ({bad})") from None


class LeRobotFrames:
    """A local LeRobot dataset as observations: `instructions[i]` and `images_at([i])` for frame i
    (the dataset's global frame order, its `index` column)."""

    def __init__(self, root: str | Path, camera_key: str | None = None) -> None:
        self.root = Path(root)
        try:
            self.info = json.loads((self.root / INFO_FILE).read_text())
        except (OSError, json.JSONDecodeError) as bad:
            raise InputError(f"cannot read {self.root / INFO_FILE} ({bad})") from None
        self.version = str(self.info.get("codebase_version", ""))
        if not self.version.startswith(("v2.", "v3.")):
            raise InputError(f"{self.root}: LeRobot codebase_version '{self.version}' is not supported (v2.x, v3.x)")
        features = self.info.get("features", {})
        cameras = [key for key, feature in features.items() if feature.get("dtype") in ("video", "image")]
        if not cameras:
            raise InputError(f"{self.root} has no camera feature (dtype video or image) in {INFO_FILE}")
        self.camera_key = camera_key or cameras[0]
        if self.camera_key not in cameras:
            raise InputError(f"{self.root} has no camera '{self.camera_key}': choose --camera-key from "
                             f"{', '.join(cameras)}")
        self.stored_as_video = features[self.camera_key]["dtype"] == "video"
        self._read_frames()
        tasks = self._read_tasks()
        try:
            self.instructions = [tasks[int(t)] for t in self._task_index]
        except KeyError as missing:
            raise InputError(f"{self.root}: frames name task_index {missing}, which the tasks table lacks") from None
        if self.stored_as_video:
            self._videos = self._read_video_locations()

    # ----- tables ---------------------------------------------------------------------------
    def _read_frames(self) -> None:
        files = sorted((self.root / "data").glob("**/*.parquet"))
        if not files:
            raise InputError(f"{self.root / 'data'} holds no parquet files: not a LeRobot dataset")
        columns = ["index", "episode_index", "timestamp", "task_index"]
        index, episode, timestamp, task, file_id, row = [], [], [], [], [], []
        for number, path in enumerate(files):
            table = _read_table([path], columns)
            index.append(table["index"].to_numpy())
            episode.append(table["episode_index"].to_numpy())
            timestamp.append(table["timestamp"].to_numpy().astype(np.float64))
            task.append(table["task_index"].to_numpy())
            file_id.append(np.full(table.num_rows, number))
            row.append(np.arange(table.num_rows))
        order = np.argsort(np.concatenate(index), kind="stable")
        self._files = files
        self._episode = np.concatenate(episode)[order]
        self._timestamp = np.concatenate(timestamp)[order]
        self._task_index = np.concatenate(task)[order]
        self._file_id = np.concatenate(file_id)[order]
        self._row = np.concatenate(row)[order]

    def _read_tasks(self) -> dict[int, str]:
        if self.version.startswith("v2."):
            return {int(row["task_index"]): str(row["task"]) for row in _jsonl(self.root / "meta/tasks.jsonl")}
        table = _read_table([self.root / "meta/tasks.parquet"], None)
        # pandas writes the task strings as the table's index: a column named 'task' (or unnamed).
        text = next((name for name in ("task", "__index_level_0__") if name in table.column_names), None)
        if text is None:
            raise InputError(f"{self.root / 'meta/tasks.parquet'} has no task column ({table.column_names})")
        return dict(zip(table["task_index"].to_pylist(), table[text].to_pylist(), strict=True))

    def _read_video_locations(self) -> dict[int, tuple[Path, float]]:
        """episode -> (its video file, the time its first frame has in that file)."""
        key, template = self.camera_key, self.info.get("video_path")
        if not template:
            raise InputError(f"{self.root / INFO_FILE} has no video_path for the video feature '{key}'")
        if self.version.startswith("v2."):
            chunk = int(self.info.get("chunks_size", 1000))
            return {int(e): (self.root / template.format(episode_chunk=int(e) // chunk, video_key=key,
                                                         episode_index=int(e)), 0.0)
                    for e in np.unique(self._episode)}
        files = sorted((self.root / "meta/episodes").glob("**/*.parquet"))
        prefix = f"videos/{key}/"
        table = _read_table(files, ["episode_index", prefix + "chunk_index", prefix + "file_index",
                                    prefix + "from_timestamp"])
        return {int(e): (self.root / template.format(video_key=key, chunk_index=int(c), file_index=int(f)), float(t))
                for e, c, f, t in zip(*(table[name].to_pylist() for name in table.column_names), strict=True)}

    # ----- frames ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.instructions)

    @property
    def images(self) -> Sequence[np.ndarray]:
        """Frame i decoded on access (prefer `images_at` for many frames: it decodes each file once)."""
        return _LazyImages(self)

    def images_at(self, indices: Sequence[int]) -> list[np.ndarray]:
        """(H, W, 3) uint8 RGB frames, in the order asked; each file is opened once."""
        images: list[np.ndarray | None] = [None] * len(indices)
        groups: dict[Path, list[tuple[int, float | int]]] = {}
        for slot, frame in enumerate(indices):
            if self.stored_as_video:
                path, start = self._videos[int(self._episode[frame])]
                groups.setdefault(path, []).append((slot, start + float(self._timestamp[frame])))
            else:
                groups.setdefault(self._files[int(self._file_id[frame])], []).append((slot, int(self._row[frame])))
        for path, wanted in groups.items():
            read = _decode_video if self.stored_as_video else self._parquet_images
            for (slot, _), image in zip(wanted, read(path, [where for _, where in wanted]), strict=True):
                images[slot] = image
        return images  # type: ignore[return-value]

    def _parquet_images(self, path: Path, rows: list[int]) -> list[np.ndarray]:
        """Camera images stored in the parquet (struct of PNG/JPEG bytes and a path)."""
        from PIL import Image

        cells = _read_table([path], [self.camera_key])[self.camera_key].take(rows).to_pylist()
        images = []
        for cell in cells:
            source = io.BytesIO(cell["bytes"]) if cell.get("bytes") else self.root / str(cell.get("path"))
            try:
                with Image.open(source) as image:
                    images.append(np.array(image.convert("RGB")))
            except OSError as bad:
                raise InputError(f"{path}: cannot decode an image of '{self.camera_key}' ({bad})") from None
        return images


class _LazyImages(Sequence):
    def __init__(self, frames: LeRobotFrames) -> None:
        self.frames = frames

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return self.frames.images_at(range(len(self))[index])
        return self.frames.images_at([int(index)])[0]


def _decode_video(path: Path, times: list[float]) -> list[np.ndarray]:
    """The frames shown at `times` (seconds) in a video: seek to the keyframe before each run of close
    times, decode forward, keep the frame within TOLERANCE_S of each time."""
    import av

    order = sorted(range(len(times)), key=times.__getitem__)
    found: list[np.ndarray | None] = [None] * len(times)
    k = 0
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            while k < len(order):
                container.seek(max(0, round(times[order[k]] / stream.time_base) - 1), backward=True,
                               any_frame=False, stream=stream)
                for frame in container.decode(stream):
                    if frame.pts is None:
                        continue
                    t = float(frame.pts * stream.time_base)
                    while k < len(order) and t >= times[order[k]] - TOLERANCE_S:
                        if abs(t - times[order[k]]) > TOLERANCE_S:
                            raise InputError(f"{path} has no frame at {times[order[k]]:.4f} s (nearest {t:.4f} s): "
                                             "the dataset's timestamps and its video disagree")
                        found[order[k]] = frame.to_ndarray(format="rgb24")
                        k += 1
                    if k == len(order) or times[order[k]] - t > RESEEK_GAP_S:
                        break
                else:
                    if k < len(order):
                        raise InputError(f"{path} ends before {times[order[k]]:.4f} s: the video is shorter "
                                         "than its episodes say")
    except av.FFmpegError as bad:
        raise InputError(f"cannot decode {path} ({bad})") from None
    return found  # type: ignore[return-value]
