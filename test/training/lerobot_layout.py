"""Writes small LeRobot datasets in the real on-disk layout (v3.0 and v2.1), for the reader's tests.

The `lerobot` package does not install here (docs/training.md), so this follows its format as its
own writer lays it out: parquet tables written with pyarrow (the task table with pandas' index
metadata, as pandas' to_parquet leaves it), AV1 videos (libsvtav1, yuv420p, a keyframe every 2
frames: lerobot's defaults) through PyAV; v3.0 packs several episodes into one data file and one
video file, each episode starting at its `from_timestamp`.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

CAMERA = "observation.images.image"


def _encode_video(path: Path, frames: list[np.ndarray], fps: int) -> None:
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = frames[0].shape[:2]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libsvtav1", rate=fps, options={"g": "2", "crf": "30", "preset": "12"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _png(image: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def _features(shape: tuple[int, ...], store: str, fps: int) -> dict:
    camera = {"dtype": store, "shape": list(shape), "names": ["height", "width", "channels"]}
    if store == "video":
        camera["info"] = {"video.height": shape[0], "video.width": shape[1], "video.codec": "av1",
                          "video.pix_fmt": "yuv420p", "video.is_depth_map": False, "video.fps": fps,
                          "video.channels": 3, "has_audio": False}
    scalar = {"shape": [1], "names": None}
    return {CAMERA: camera,
            "observation.state": {"dtype": "float32", "shape": [2], "names": ["x", "y"]},
            "action": {"dtype": "float32", "shape": [7], "names": [f"a{i}" for i in range(7)]},
            "timestamp": {"dtype": "float32", **scalar}, "frame_index": {"dtype": "int64", **scalar},
            "episode_index": {"dtype": "int64", **scalar}, "index": {"dtype": "int64", **scalar},
            "task_index": {"dtype": "int64", **scalar}}


def _frame_table(episodes: list[tuple[str, np.ndarray]], numbers: list[int], first_index: int,
                 task_of: dict[str, int], fps: int, store: str):
    import pyarrow as pa

    columns: dict[str, list] = {"observation.state": [], "action": [], "timestamp": [], "frame_index": [],
                                "episode_index": [], "index": [], "task_index": []}
    images = []
    index = first_index
    for number in numbers:
        task, frames = episodes[number]
        for k, image in enumerate(frames):
            columns["observation.state"].append([0.1 * k, -0.1 * k])
            columns["action"].append([0.0] * 7)
            columns["timestamp"].append(k / fps)
            columns["frame_index"].append(k)
            columns["episode_index"].append(number)
            columns["index"].append(index)
            columns["task_index"].append(task_of[task])
            if store == "image":
                images.append({"bytes": _png(image), "path": f"frame_{index:06d}.png"})
            index += 1
    arrays = {"observation.state": pa.array(columns["observation.state"], pa.list_(pa.float32())),
              "action": pa.array(columns["action"], pa.list_(pa.float32())),
              "timestamp": pa.array(columns["timestamp"], pa.float32())}
    arrays.update({name: pa.array(columns[name], pa.int64())
                   for name in ("frame_index", "episode_index", "index", "task_index")})
    if store == "image":
        arrays = {CAMERA: pa.array(images, pa.struct([("bytes", pa.binary()), ("path", pa.string())])), **arrays}
    return pa.table(arrays)


def write_lerobot_dataset(root: Path, episodes: list[tuple[str, np.ndarray]], fps: int = 10,
                          version: str = "v3.0", store: str = "video", episodes_per_file: int = 2) -> Path:
    """episodes: (task, frames (T, H, W, 3) uint8) each. -> root."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tasks = list(dict.fromkeys(task for task, _ in episodes))
    task_of = {task: i for i, task in enumerate(tasks)}
    lengths = [len(frames) for _, frames in episodes]
    (root / "meta").mkdir(parents=True, exist_ok=True)
    info = {"codebase_version": version, "robot_type": "tabletop", "total_episodes": len(episodes),
            "total_frames": sum(lengths), "total_tasks": len(tasks), "chunks_size": 1000, "fps": fps,
            "splits": {"train": f"0:{len(episodes)}"},
            "features": _features(episodes[0][1].shape[1:], store, fps)}
    if version.startswith("v2."):
        info.update(total_chunks=1, total_videos=len(episodes) if store == "video" else 0,
                    data_path="data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
                    video_path="videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
                    if store == "video" else None)
        first = 0
        for number, (_, frames) in enumerate(episodes):
            path = root / info["data_path"].format(episode_chunk=0, episode_index=number)
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(_frame_table(episodes, [number], first, task_of, fps, store), path)
            if store == "video":
                _encode_video(root / info["video_path"].format(episode_chunk=0, video_key=CAMERA,
                                                               episode_index=number), list(frames), fps)
            first += len(frames)
        (root / "meta/tasks.jsonl").write_text("".join(json.dumps({"task_index": i, "task": t}) + "\n"
                                                       for i, t in enumerate(tasks)))
        (root / "meta/episodes.jsonl").write_text("".join(
            json.dumps({"episode_index": i, "tasks": [task], "length": len(frames)}) + "\n"
            for i, (task, frames) in enumerate(episodes)))
    else:
        info.update(data_files_size_in_mb=100, video_files_size_in_mb=200,
                    data_path="data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
                    video_path="videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
                    if store == "video" else None)
        rows: dict[str, list] = {}
        first = 0
        for file_index, start in enumerate(range(0, len(episodes), episodes_per_file)):
            numbers = list(range(start, min(start + episodes_per_file, len(episodes))))
            path = root / info["data_path"].format(chunk_index=0, file_index=file_index)
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(_frame_table(episodes, numbers, first, task_of, fps, store), path)
            if store == "video":
                _encode_video(root / info["video_path"].format(video_key=CAMERA, chunk_index=0, file_index=file_index),
                              [image for n in numbers for image in episodes[n][1]], fps)
            offset_s = 0.0
            for number in numbers:
                row = {"episode_index": number, "tasks": [episodes[number][0]], "length": lengths[number],
                       "data/chunk_index": 0, "data/file_index": file_index, "dataset_from_index": first,
                       "dataset_to_index": first + lengths[number], "meta/episodes/chunk_index": 0,
                       "meta/episodes/file_index": 0}
                if store == "video":
                    row.update({f"videos/{CAMERA}/chunk_index": 0, f"videos/{CAMERA}/file_index": file_index,
                                f"videos/{CAMERA}/from_timestamp": offset_s,
                                f"videos/{CAMERA}/to_timestamp": offset_s + lengths[number] / fps})
                for key, value in row.items():
                    rows.setdefault(key, []).append(value)
                offset_s += lengths[number] / fps
                first += lengths[number]
        (root / "meta/episodes/chunk-000").mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(rows), root / "meta/episodes/chunk-000/file-000.parquet")
        pandas_index = {"index_columns": ["task"], "column_indexes": [], "pandas_version": "2.2.3",
                        "columns": [{"name": "task_index", "field_name": "task_index", "pandas_type": "int64",
                                     "numpy_type": "int64", "metadata": None},
                                    {"name": "task", "field_name": "task", "pandas_type": "unicode",
                                     "numpy_type": "object", "metadata": None}]}
        table = pa.table({"task_index": pa.array(range(len(tasks)), pa.int64()), "task": tasks})
        pq.write_table(table.replace_schema_metadata({"pandas": json.dumps(pandas_index)}),
                       root / "meta/tasks.parquet")
    (root / "meta/info.json").write_text(json.dumps(info, indent=4))
    return root
