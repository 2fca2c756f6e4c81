"""An image folder source (manifest.json + PNGs) of random observations, for the training tests."""
from __future__ import annotations

import json
from pathlib import Path

from test.models import observations


def write_image_folder(folder: Path, count: int, seed: int) -> Path:
    from PIL import Image

    folder.mkdir(parents=True)
    rows = []
    for i, (image, text) in enumerate(observations(seed, count)):
        Image.fromarray(image).save(folder / f"{i:03d}.png")
        rows.append({"image": f"{i:03d}.png", "instruction": text})
    (folder / "manifest.json").write_text(json.dumps(rows))
    return folder
