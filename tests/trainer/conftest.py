"""Tiny datasets generated inside the tests (never ../shared): coloured shapes per class."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from shared.taxonomy import load_taxonomy


def make_photo(label_index: int, rng: np.random.Generator, size=(80, 100)) -> Image.Image:
    """A photo whose class is learnable: background hue and shape depend on the label."""
    hue = (label_index * 47) % 255
    img = Image.new("RGB", size, (hue, 255 - hue, (hue * 3) % 255))
    draw = ImageDraw.Draw(img)
    x0, y0 = rng.integers(5, 25, size=2)
    box = (int(x0), int(y0), int(x0) + 40, int(y0) + 50)
    (draw.ellipse if label_index % 2 else draw.rectangle)(box, fill=(255 - hue, hue, 128))
    return img


def class_labels(taxonomy) -> list[str]:  # noqa: ANN001 - shared.taxonomy.Taxonomy
    """One dataset label per class of ``taxonomy`` (each leaf's first label), in leaf order."""
    return [taxonomy.nodes[leaf].labels[0] for leaf in taxonomy.leaves]


def write_dataset(root: Path, labels: list[str], per_label: int, senders: int, seed: int = 0,
                  extra_rows: list[tuple[str, str, str]] = ()) -> Path:
    """images.csv + images/ in the clothing dataset's layout."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    n = 0
    for li, label in enumerate(labels):
        for k in range(per_label):
            image_id = f"img-{li:02d}-{k:03d}"
            make_photo(li, rng).save(root / "images" / f"{image_id}.jpg", quality=90)
            rows.append((image_id, str(n % senders), label))
            n += 1
    rows.extend(extra_rows)
    with (root / "images.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "sender_id", "label", "kids"])
        for image_id, sender, label in rows:
            w.writerow([image_id, sender, label, "False"])
    return root


def every_class_dataset(root: Path, taxonomy) -> Path:  # noqa: ANN001 - shared.taxonomy.Taxonomy
    """Every leaf of ``taxonomy``, 5 photos each, 17 senders: the trainers' tiny standard dataset."""
    return write_dataset(root / "data", class_labels(taxonomy), per_label=5, senders=17)


@pytest.fixture
def taxonomy():
    return load_taxonomy()


@pytest.fixture
def tiny_dataset(tmp_path: Path, taxonomy) -> Path:
    """All 17 classes, 6 photos each, 20 senders, plus one 'Not sure' photo."""
    root = write_dataset(tmp_path / "data", class_labels(taxonomy), per_label=6, senders=20)
    make_photo(0, np.random.default_rng(1)).save(root / "images" / "unsure.jpg")
    with (root / "images.csv").open("a", newline="") as f:
        csv.writer(f).writerow(["unsure", "3", "Not sure", "False"])
    return root
