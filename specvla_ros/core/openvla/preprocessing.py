"""OpenVLA's image preprocessing, reproduced operation for operation.

PrismaticImageProcessor (openvla `prismatic/extern/hf/processing_prismatic.py`) applies, per vision
backbone: PIL resize to (S, S) ('resize-naive', bicubic), a no-op centre crop, to_tensor (/255) and
normalize with the mean/std it saved in preprocessor_config.json (`tvf_normalize_params`), then
stacks the backbones' tensors along channels. The resize is pinned to what Pillow 10.3-12.x computed,
whatever Pillow is installed (`resize_like_openvla`). The LIBERO fine-tunes were trained with random-crop
augmentation and are evaluated after a centre crop to 0.9 of the area and a bilinear resize back
(`experiments/robot/openvla_utils.py: crop_and_resize`, TensorFlow's crop_and_resize kernel);
`center_crop_like_openvla` reproduces that kernel's arithmetic in float32.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from specvla_ros.core.errors import ConfigError
from specvla_ros.core.openvla.config import OpenVLAConfig

# PIL resampling codes (what torchvision's pil_modes_mapping stores in tvf_resize_params) and names.
PIL_RESAMPLE = {"nearest": 0, "lanczos": 1, "bilinear": 2, "bicubic": 3, "box": 4, "hamming": 5}
LIBERO_CROP_SCALE = 0.9


@dataclass(frozen=True)
class BackboneTransform:
    """One backbone's resize + normalization (what PrismaticImageProcessor applies for it)."""

    size: int
    resample: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        """uint8 (H, W, 3) -> float32 (3, size, size)."""
        if image.shape[:2] != (self.size, self.size):  # PIL returns an unchanged copy at the same size
            image = resize_like_openvla(image, self.size, self.resample)
        pixels = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).float().div(255)  # to_tensor
        mean = torch.tensor(self.mean, dtype=torch.float32)[:, None, None]
        std = torch.tensor(self.std, dtype=torch.float32)[:, None, None]
        return pixels.sub(mean).div(std)  # TVF.normalize


@dataclass(frozen=True)
class ImagePreprocessor:
    transforms: tuple[BackboneTransform, ...]
    center_crop: bool = False
    crop_size: int = 224

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        """uint8 RGB (H, W, 3) -> (1, 3 * backbones, S, S) float32, channel-stacked as OpenVLA's processor."""
        if self.center_crop:
            image = center_crop_like_openvla(image, LIBERO_CROP_SCALE, self.crop_size)
        return torch.cat([transform(image) for transform in self.transforms])[None]

    @classmethod
    def from_config(cls, config: OpenVLAConfig, processor: dict) -> "ImagePreprocessor":
        """Use what preprocessor_config.json says the processor applies; timm's defaults where it is silent."""
        count = len(config.vision)
        resize = processor.get("tvf_resize_params") or [None] * count
        normalize = processor.get("tvf_normalize_params") or [None] * count
        crops = processor.get("tvf_crop_params") or [None] * count
        strategy = processor.get("image_resize_strategy", "resize-naive")
        if strategy != "resize-naive" or processor.get("tvf_do_letterbox"):
            raise ConfigError("preprocessor_config.json asks for letterbox / resize-crop preprocessing; OpenVLA "
                              "checkpoints use resize-naive, the only strategy this loader implements")
        if not len(resize) == len(normalize) == len(crops) == count:
            raise ConfigError(f"preprocessor_config.json describes {len(resize)} backbones, config.json {count}")
        transforms = []
        for index, spec in enumerate(config.vision):
            size, resample = spec.image_size, _resample_code(spec.interpolation)
            mean, std = spec.mean, spec.std
            if processor.get("interpolations"):
                resample = _resample_code(processor["interpolations"][index])
            if processor.get("means") and processor.get("stds"):
                mean, std = processor["means"][index], processor["stds"][index]
            if resize[index]:
                size = _square_size(resize[index].get("size"), spec.image_size)
                resample = _resample_code(resize[index].get("interpolation", resample))
            if normalize[index]:  # the values apply_transform really uses (bf16-rounded in OpenVLA's export)
                mean, std = normalize[index]["mean"], normalize[index]["std"]
            if crops[index] and _square_size(crops[index].get("output_size"), size) != size:
                raise ConfigError("preprocessor_config.json crops after resizing (resize-crop); not supported")
            if size != spec.image_size:
                raise ConfigError(f"preprocessor_config.json resizes to {size} px, config.json's image_sizes say "
                                  f"{spec.image_size}")
            transforms.append(BackboneTransform(size, resample, _triple(mean), _triple(std)))
        return cls(tuple(transforms), center_crop=bool(config.center_crop), crop_size=config.vision[0].image_size)


def resize_like_openvla(image: np.ndarray, size: int, resample: int) -> np.ndarray:
    """uint8 (H, W, 3) -> (size, size, 3), as `Image.resize((size, size), resample)` gave in Pillow 10.3-12.x.

    Pillow resizes in two one-dimensional passes with an 8-bit image in between, so their order shows
    in the result. Up to 12.x the horizontal pass ran first; Pillow 13 orders them differently on frames
    taller than wide whose height shrinks and whose width is not already `size` (480x300 or 300x100 to
    224, 90x70 to 56: up to ~20 levels apart on ~30 % of the values; square and landscape frames are
    unaffected). Each pass run on its own is the same computation in all these
    versions, so running them one at a time, horizontal first, gives OpenVLA's input on any of them
    (test/core/openvla/test_resize.py checks it against Pillow's arithmetic written out).
    """
    picture = Image.fromarray(image)
    height, width = image.shape[:2]
    if width != size:
        picture = picture.resize((size, height), resample=resample)
    if height != size:
        picture = picture.resize((size, size), resample=resample)
    return np.asarray(picture)


def center_crop_like_openvla(image: np.ndarray, crop_scale: float, out_size: int) -> np.ndarray:
    """Centre crop to `crop_scale` of the area, bilinear resize to out_size², as OpenVLA's LIBERO eval.

    Mirrors tf.image.convert_image_dtype (x * (1/255)), tf.image.crop_and_resize (corner-aligned
    bilinear sampling, CPU kernel arithmetic in float32), clip to [0, 1] and the conversion back to
    uint8 (x * 255.5, truncated). Note OpenVLA resizes to a fixed 224 x 224 whatever the input size.
    """
    height, width = image.shape[:2]
    pixels = image.astype(np.float32) * np.float32(1.0 / 255)
    side = np.clip(np.sqrt(np.float32(crop_scale)), np.float32(0), np.float32(1)).astype(np.float32)
    offset = ((np.float32(1) - side) / np.float32(2)).astype(np.float32)
    low, high = offset, (offset + side).astype(np.float32)

    def sample_points(length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        scale = np.float32((high - low) * np.float32(length - 1) / np.float32(out_size - 1))
        points = (low * np.float32(length - 1) + np.arange(out_size, dtype=np.float32) * scale).astype(np.float32)
        lower = np.floor(points).astype(np.int64)
        return lower, np.ceil(points).astype(np.int64), (points - lower.astype(np.float32)).astype(np.float32)

    top, bottom, y_lerp = sample_points(height)
    left, right, x_lerp = sample_points(width)
    x_lerp = x_lerp[None, :, None]
    upper = pixels[top][:, left] + (pixels[top][:, right] - pixels[top][:, left]) * x_lerp
    lower = pixels[bottom][:, left] + (pixels[bottom][:, right] - pixels[bottom][:, left]) * x_lerp
    crop = upper + (lower - upper) * y_lerp[:, None, None]
    crop = np.clip(crop, 0.0, 1.0).astype(np.float32)
    return np.clip(crop * np.float32(255.5), 0, 255).astype(np.uint8)  # saturate_cast truncates


def _resample_code(value: str | int) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"unknown image interpolation {value!r}")
    if isinstance(value, int) and value in PIL_RESAMPLE.values():
        return value
    if isinstance(value, str) and value.lower() in PIL_RESAMPLE:
        return PIL_RESAMPLE[value.lower()]
    raise ConfigError(f"unknown image interpolation {value!r}; expected one of {', '.join(PIL_RESAMPLE)}")


def _square_size(size: object, default: int) -> int:
    if size is None:
        return default
    if isinstance(size, int):
        return size
    if isinstance(size, (list, tuple)) and len(size) == 2 and size[0] == size[1]:
        return int(size[0])
    raise ConfigError(f"preprocessor_config.json: image size {size!r} is not square; OpenVLA resizes to S x S")


def _triple(values: object) -> tuple[float, float, float]:
    if not isinstance(values, (list, tuple)) or len(values) != 3:
        raise ConfigError(f"preprocessor_config.json: normalization values {values!r} must be 3 numbers (R, G, B)")
    return tuple(float(v) for v in values)
