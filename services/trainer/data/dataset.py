"""Reading a clothing-photo directory (``images.csv`` + ``images/<id>.jpg``) and splitting it.

The split is by sender: one person's photos look alike (same floor, same light), so a photo's
neighbours from the same sender in the training set would flatter the test score. The split is
deterministic and written to a JSON file so it stays stable as code changes.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from shared.photos import decode_photo
from shared.taxonomy import Taxonomy, TaxonomyError

__all__ = ["Sample", "Dataset", "DatasetError", "load_dataset", "split_by_sender", "SPLITS", "load_photo", "PhotoRef", "photo_sha256"]

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "cal", "test")
DEFAULT_FRACTIONS = {"train": 0.62, "val": 0.09, "cal": 0.11, "test": 0.18}


class DatasetError(ValueError):
    """The dataset directory has a problem that would make a silently wrong model."""


@dataclass(frozen=True)
class Sample:
    image_id: str
    path: Path
    sender: str
    label: str  # the dataset's label as written
    leaf: str | None  # taxonomy leaf, None for ignored labels ('Not sure', 'Other', 'Skip')
    kids: bool | None = None  # images.csv's ``kids`` (children's clothes); None without the column


@dataclass
class Dataset:
    root: Path
    samples: list[Sample]  # usable, labelled photos (ignored labels included, leaf=None)
    skipped: list[tuple[str, str]]  # (image id or row, reason)

    @property
    def classified(self) -> list[Sample]:
        return [s for s in self.samples if s.leaf is not None]

    @property
    def ignored(self) -> list[Sample]:
        return [s for s in self.samples if s.leaf is None]


def _check_image(path: Path) -> str | None:
    """A reason the file is unusable, or None. Reads the header and decodes the image."""
    from PIL import Image

    if not path.is_file():
        return f"missing file {path}"
    try:
        with Image.open(path) as img:
            img.load()
    except Exception as exc:  # noqa: BLE001 - any decoder failure means "unusable"
        return f"unreadable image {path}: {exc}"
    return None


def _kids(cell: str | None) -> bool | None:
    """The ``kids`` column: 'True'/'False' (any case, or 1/0); None when absent or empty. Children's
    clothes are reported apart ([J2]: right far less often than adults' on new people)."""
    value = (cell or "").strip().lower()
    return {"true": True, "1": True, "false": False, "0": False}.get(value) if value else None


def load_dataset(
    root: str | Path,
    taxonomy: Taxonomy,
    on_error: str = "skip",
    verify_images: bool = True,
) -> Dataset:
    """Read ``root/images.csv``; each bad row is named and either skipped or stops the load.

    on_error: 'skip' (log and count) or 'stop' (raise DatasetError at the first problem).
    """
    assert on_error in ("skip", "stop"), f"on_error must be 'skip' or 'stop', got {on_error!r}"
    root = Path(root)
    csv_path = root / "images.csv"
    if not csv_path.is_file():
        raise DatasetError(f"{csv_path} not found: a dataset directory holds images.csv and images/")
    samples: list[Sample] = []
    skipped: list[tuple[str, str]] = []
    with csv_path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing_cols = {"image", "sender_id", "label"} - set(reader.fieldnames or [])
        if missing_cols:
            raise DatasetError(f"{csv_path} lacks columns {sorted(missing_cols)}")
        for row_no, row in enumerate(reader, start=2):
            image_id, label = (row["image"] or "").strip(), (row["label"] or "").strip()
            try:
                leaf = taxonomy.leaf_for_label(label)
            except TaxonomyError as exc:
                reason = f"{csv_path}:{row_no}: {exc}"
                if on_error == "stop":
                    raise DatasetError(reason) from None
                skipped.append((image_id, reason))
                continue
            path = root / "images" / f"{image_id}.jpg"
            problem = _check_image(path) if verify_images else (None if path.is_file() else f"missing file {path}")
            if problem:
                if on_error == "stop":
                    raise DatasetError(f"{csv_path}:{row_no}: {problem}")
                skipped.append((image_id, problem))
                continue
            samples.append(Sample(image_id, path, str(row["sender_id"]).strip(), label, leaf, _kids(row.get("kids"))))
    for image_id, reason in skipped:
        log.warning("skipped %s: %s", image_id, reason)
    if skipped:
        log.warning("skipped %d of %d rows of %s", len(skipped), len(samples) + len(skipped), csv_path)
    if not any(s.leaf for s in samples):
        raise DatasetError(f"{csv_path}: no usable labelled photo")
    return Dataset(root, samples, skipped)


def _sender_order_key(sender: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}:{sender}".encode()).hexdigest()


def split_by_sender(
    samples: list[Sample], seed: int = 0, fractions: dict[str, float] | None = None
) -> dict[str, list[str]]:
    """Assign every sender to one split; returns split → sorted image ids.

    Greedy and deterministic: senders from largest to smallest (ties by a seeded hash) each go to
    the split furthest below its target share, so big senders don't unbalance small splits.
    """
    fractions = fractions or DEFAULT_FRACTIONS
    assert abs(sum(fractions.values()) - 1) < 1e-6, f"split fractions must sum to 1: {fractions}"
    by_sender: dict[str, list[str]] = {}
    for s in samples:
        by_sender.setdefault(s.sender, []).append(s.image_id)
    total = len(samples)
    order = sorted(by_sender, key=lambda snd: (-len(by_sender[snd]), _sender_order_key(snd, seed)))
    assigned: dict[str, list[str]] = {name: [] for name in fractions}
    for sender in order:
        deficit = {name: fractions[name] * total - len(ids) for name, ids in assigned.items()}
        target = max(deficit, key=lambda name: (deficit[name], fractions[name]))
        assigned[target].extend(by_sender[sender])
    return {name: sorted(ids) for name, ids in assigned.items()}


def load_or_create_split(samples: list[Sample], split_file: Path, seed: int = 0) -> dict[str, list[str]]:
    """Read the split file if it exists (new photos from known senders join their sender's
    split; new senders are assigned by hash), else create and write it."""
    if split_file.is_file():
        split = json.loads(split_file.read_text())
        known = {i for ids in split.values() for i in ids}
        new = [s for s in samples if s.image_id not in known]
        if new:
            log.warning("%d photos not in %s; assigning them by sender", len(new), split_file)
            sender_split = {}
            by_id = {s.image_id: s for s in samples}
            for name, ids in split.items():
                for i in ids:
                    if i in by_id:
                        sender_split[by_id[i].sender] = name
            names = list(split)
            for s in new:
                name = sender_split.get(s.sender) or names[int(_sender_order_key(s.sender, seed), 16) % len(names)]
                split[name].append(s.image_id)
        return split
    split = split_by_sender(samples, seed=seed)
    split_file.parent.mkdir(parents=True, exist_ok=True)
    split_file.write_text(json.dumps(split, indent=0) + "\n")
    return split


def load_photo(path: Path):  # noqa: ANN201 - a PIL image
    """Dataset photos go through the same decoder as uploads (EXIF orientation, RGB)."""
    return decode_photo(Path(path).read_bytes())


def photo_sha256(path: Path) -> str:
    """The photo store's key for a file: sha256 of its bytes (uploads are stored under it)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@dataclass(frozen=True)
class PhotoRef:
    """A photo the trainer can read, with its content key (uploads: the photo store's key)."""

    path: Path
    sha256: str

    @classmethod
    def of(cls, path: Path, sha256: str | None = None) -> "PhotoRef":
        return cls(Path(path), sha256 or photo_sha256(path))
