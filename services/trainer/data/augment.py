"""Online augmentation for training views, built from the recipe and the model card's
preprocessing so both stay in step. Everything ends in ``shared.preprocessing.to_input_array``,
the same normalisation serving uses."""

from __future__ import annotations

import numpy as np
from PIL import Image
from torchvision.transforms import v2

from shared.recipe import Recipe
from shared.model_card import PreprocessConfig
from shared.preprocessing import resample_filter, to_input_array

__all__ = ["training_transform", "augmented_view", "rotate_photo", "FILL"]

FILL = (124, 117, 104)  # ImageNet mean colour for the corners a rotation uncovers


def training_transform(recipe: Recipe, cfg: PreprocessConfig) -> v2.Compose:
    interp = v2.InterpolationMode(cfg.interpolation)
    return v2.Compose([
        v2.RandomRotation(recipe.rotation_degrees, interpolation=interp, fill=FILL),
        v2.RandomResizedCrop(cfg.input_size, scale=recipe.crop_scale, interpolation=interp, antialias=True),
        v2.RandomHorizontalFlip(recipe.hflip),
        v2.ColorJitter(recipe.color_jitter, recipe.color_jitter, recipe.color_jitter),
    ])


def augmented_view(img: Image.Image, transform: v2.Compose, cfg: PreprocessConfig) -> np.ndarray:
    return to_input_array(transform(img), cfg)


def rotate_photo(img: Image.Image, degrees: float, cfg: PreprocessConfig) -> Image.Image:
    """The evaluation's rotation check: the whole photo turned by ``degrees`` (corners filled)."""
    if degrees == 0:
        return img
    return img.rotate(degrees, resample=resample_filter(cfg), fillcolor=FILL)


def shrink_for_cache(img: Image.Image, cfg: PreprocessConfig) -> Image.Image:
    """Keep decoded photos small in memory: shorter side 1.25 × input (crops need some slack)."""
    target = int(cfg.input_size * 1.25)
    w, h = img.size
    if min(w, h) <= target:
        return img
    scale = target / min(w, h)
    return img.resize((round(w * scale), round(h * scale)), resample_filter(cfg))
