"""Front activations cached on disk, keyed by photo sha256 + front hash.

The quick refit trains only the layers after the frozen front (``Recipe.split_block``), and the
front is the ImageNet-pretrained stem + early blocks: the same weights in every version the quick
recipe makes. So a photo's front activations (its plain, served view and ``views`` augmented
views) are computed once and reused by every later refit, gate and bench run; a refit then costs
only the fine-tuning. The key names everything that changes the numbers (front weights, split,
input size, preprocessing, augmentation settings), so a changed recipe never reads stale maps.

Layout: ``<root>/<front key>/<sha[:2]>/<sha>.<view>.npy`` (float16; ``plain`` or ``aug<k>``).
Writes go through a temporary file and ``os.replace``: a reader never sees half an array and
two processes filling the cache at once only repeat work.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from services.trainer.data.dataset import PhotoRef
from services.trainer.data.augment import augmented_view, rotate_photo, shrink_for_cache, training_transform
from services.trainer.fit.front import OrtRunner
from services.trainer.model.net import GarmentNet
from shared.recipe import Recipe
from shared.model_card import PreprocessConfig
from shared.photos import decode_photo
from shared.preprocessing import preprocess

__all__ = ["FeatureStore", "front_key", "save_array"]

log = logging.getLogger(__name__)

# recipe fields that change a cached map (the rest only change the fine-tuning)
_KEY_FIELDS = ("architecture", "input_size", "resize_size", "split_block", "crop_scale",
               "rotation_degrees", "hflip", "color_jitter")


def front_key(net: GarmentNet, recipe: Recipe, cfg: PreprocessConfig) -> str:
    """Hash of the front's weights and of every setting that shapes its inputs."""
    h = hashlib.sha256()
    for name, tensor in sorted(net.front.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    settings = {f: getattr(recipe, f) for f in _KEY_FIELDS}
    h.update(json.dumps({"recipe": settings, "preprocess": cfg.model_dump(mode="json")},
                        sort_keys=True, default=list).encode())
    return h.hexdigest()[:16]


class FeatureStore:
    """``plain(photos)`` / ``augmented(photos, views)`` → float16 front activations, from disk
    where present, computed (in batches, through the ONNX Runtime front) where not."""

    def __init__(self, root: Path, net: GarmentNet, recipe: Recipe, cfg: PreprocessConfig,
                 batch_size: int = 32) -> None:
        self.net, self.recipe, self.cfg, self.batch_size = net, recipe, cfg, batch_size
        self.key = front_key(net, recipe, cfg)
        self.dir = Path(root) / self.key
        self.dir.mkdir(parents=True, exist_ok=True)
        self.computed = 0  # arrays computed by this store (the rest came from disk)

    @cached_property
    def _front(self) -> OrtRunner:
        # exported only when something is missing: a warm cache never pays for the export
        return OrtRunner(self.net.front, self.recipe.input_size, self.recipe.threads)

    @cached_property
    def _transform(self):
        return training_transform(self.recipe, self.cfg)

    def _path(self, sha: str, view: str) -> Path:
        return self.dir / sha[:2] / f"{sha}.{view}.npy"

    def plain(self, photos: Sequence[PhotoRef], progress: Callable[[float], None] | None = None) -> np.ndarray:
        """(N, C, h, w): each photo as served (resize, centre crop), through the front."""
        return self._get(photos, ["plain"], progress)[:, 0]

    def augmented(self, photos: Sequence[PhotoRef], views: int,
                  progress: Callable[[float], None] | None = None) -> np.ndarray:
        """(N, views, C, h, w): augmented views; view k of a photo is the same in every run
        (its random draws are seeded by the photo's sha256 and k)."""
        return self._get(photos, [f"aug{k}" for k in range(views)], progress)

    def _get(self, photos: Sequence[PhotoRef], views: list[str], progress) -> np.ndarray:
        out: list[list[np.ndarray | None]] = [[None] * len(views) for _ in photos]
        missing: list[tuple[int, int]] = []
        for i, ref in enumerate(photos):
            for j, view in enumerate(views):
                path = self._path(ref.sha256, view)
                if path.is_file():
                    out[i][j] = np.load(path)
                else:
                    missing.append((i, j))
        if missing:
            log.info("front activations: %d of %d to compute (cache %s)", len(missing),
                     len(photos) * len(views), self.dir)
        for start in range(0, len(missing), self.batch_size):
            chunk = missing[start:start + self.batch_size]
            decoded: dict[int, object] = {}
            arrays = []
            for i, j in chunk:
                if i not in decoded:
                    decoded[i] = decode_photo(photos[i].path.read_bytes())
                arrays.append(self._input(decoded[i], photos[i].sha256, views[j]))
            acts = self._front(np.stack(arrays)).astype(np.float16)
            for (i, j), act in zip(chunk, acts):
                save_array(self._path(photos[i].sha256, views[j]), act)
                out[i][j] = act
            self.computed += len(chunk)
            if progress:
                progress(min(1.0, (start + len(chunk)) / len(missing)))
        if not photos:
            return np.zeros((0, len(views), 1, 1, 1), np.float16)
        return np.stack([np.stack(row) for row in out])  # type: ignore[arg-type]

    def served(self, photos: Sequence[PhotoRef], angles: Sequence[int],
               progress: Callable[[float], None] | None = None) -> np.ndarray:
        """(N, len(angles), C, h, w): each photo as served, turned by each angle (0: ``plain``)."""
        return self._get(photos, ["plain" if a == 0 else f"rot{int(a)}" for a in angles], progress)

    def _input(self, img, sha: str, view: str) -> np.ndarray:
        if view == "plain":
            return preprocess(img, self.cfg)
        if view.startswith("rot"):  # the rotation check's crops (``wardrobe cv`` scores them too)
            return preprocess(rotate_photo(img, int(view[3:]), self.cfg), self.cfg)
        # torchvision draws from torch's global generator: seed it per (photo, view)
        torch.manual_seed(int(sha[:12], 16) * 101 + int(view[3:]))
        return augmented_view(shrink_for_cache(img, self.cfg), self._transform, self.cfg)


def save_array(path: Path, array: np.ndarray) -> None:
    """``np.save`` through a temporary file and ``os.replace``: readers never see half an array."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npy")
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, array)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
