"""The one preprocessing function, shared by training, evaluation, export checks and serving.

Only PIL and numpy: the inference worker must not need torch. Training augmentations produce a
PIL image of ``input_size`` and then go through ``to_input_array`` like everything else.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from shared.model_card import PreprocessConfig

__all__ = ["resize_and_center_crop", "to_input_array", "preprocess", "preprocess_batch", "decode_min_side"]

_RESAMPLING = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


def resample_filter(cfg: PreprocessConfig) -> Image.Resampling:
    return _RESAMPLING[cfg.interpolation]


# Longest side / shortest side kept before resizing. Only the centre of a strip reaches the crop,
# and resizing a 20000 × 2 strip whole would make it 2.5 million pixels wide (gigabytes). No
# dataset photo comes close (the widest is 2.2 : 1), so ordinary photos are resized as before.
MAX_ASPECT = 4


def resize_and_center_crop(img: Image.Image, cfg: PreprocessConfig) -> Image.Image:
    """Shorter side to ``resize_size`` (aspect kept), then the central ``input_size`` square."""
    w, h = img.size
    if max(w, h) > MAX_ASPECT * min(w, h):  # a strip: keep its central MAX_ASPECT : 1 part
        keep = MAX_ASPECT * min(w, h)
        box = ((w - keep) // 2, 0, (w - keep) // 2 + keep, h) if w > h else (0, (h - keep) // 2, w, (h - keep) // 2 + keep)
        img = img.crop(box)
        w, h = img.size
    scale = cfg.resize_size / min(w, h)
    new_w, new_h = max(cfg.input_size, round(w * scale)), max(cfg.input_size, round(h * scale))
    img = img.resize((new_w, new_h), resample_filter(cfg))
    left, top = (new_w - cfg.input_size) // 2, (new_h - cfg.input_size) // 2
    return img.crop((left, top, left + cfg.input_size, top + cfg.input_size))


def to_input_array(img: Image.Image, cfg: PreprocessConfig) -> np.ndarray:
    """RGB image of input_size → float32 (3, H, W), normalised with the card's mean/std."""
    assert img.mode == "RGB", f"expected an RGB image, got mode {img.mode}"
    x = np.asarray(img, dtype=np.float32) / 255.0  # (H, W, 3)
    x = (x - np.asarray(cfg.mean, dtype=np.float32)) / np.asarray(cfg.std, dtype=np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def preprocess(img: Image.Image, cfg: PreprocessConfig) -> np.ndarray:
    """Decoded RGB photo → network input (3, input_size, input_size) for evaluation/serving."""
    return to_input_array(resize_and_center_crop(img, cfg), cfg)


def preprocess_batch(images: list[Image.Image], cfg: PreprocessConfig) -> np.ndarray:
    return np.stack([preprocess(img, cfg) for img in images]) if images else np.zeros(
        (0, 3, cfg.input_size, cfg.input_size), dtype=np.float32
    )


def decode_min_side(cfg: PreprocessConfig) -> int:
    """The shorter side serving needs from the decoder (``shared.photos.decode_photo(min_side=...)``):
    ``resize_and_center_crop`` brings it to ``resize_size`` anyway, so a decoder may reduce a large
    photo as long as it stays well above that."""
    return cfg.resize_size
