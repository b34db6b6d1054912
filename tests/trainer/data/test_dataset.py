from __future__ import annotations

import csv
import json

import pytest

from services.trainer.data.dataset import DatasetError, load_dataset, load_or_create_split, split_by_sender


def test_load_dataset_maps_labels_to_leaves_and_counts_ignored(tiny_dataset, taxonomy):
    ds = load_dataset(tiny_dataset, taxonomy)
    assert len(ds.classified) == 17 * 6
    assert [s.label for s in ds.ignored] == ["Not sure"]
    assert {s.leaf for s in ds.classified} == set(taxonomy.leaves)
    assert ds.skipped == []


def _append_row(root, image_id, label, sender="1"):
    with (root / "images.csv").open("a", newline="") as f:
        csv.writer(f).writerow([image_id, sender, label, "False"])


def test_missing_file_is_skipped_and_named(tiny_dataset, taxonomy):
    _append_row(tiny_dataset, "ghost", "T-Shirt")
    ds = load_dataset(tiny_dataset, taxonomy, on_error="skip")
    assert len(ds.skipped) == 1
    image_id, reason = ds.skipped[0]
    assert image_id == "ghost" and "missing file" in reason and "ghost.jpg" in reason


def test_unreadable_image_stops_when_asked(tiny_dataset, taxonomy):
    (tiny_dataset / "images" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    _append_row(tiny_dataset, "broken", "Hat")
    with pytest.raises(DatasetError, match="unreadable image .*broken.jpg"):
        load_dataset(tiny_dataset, taxonomy, on_error="stop")
    assert [i for i, _ in load_dataset(tiny_dataset, taxonomy).skipped] == ["broken"]


def test_unknown_label_is_named(tiny_dataset, taxonomy):
    _append_row(tiny_dataset, "img-00-000", "Cardigan")
    with pytest.raises(DatasetError, match="unknown dataset label 'Cardigan'"):
        load_dataset(tiny_dataset, taxonomy, on_error="stop")
    skipped = load_dataset(tiny_dataset, taxonomy).skipped
    assert len(skipped) == 1 and "Cardigan" in skipped[0][1]


def test_missing_csv_is_a_clear_error(tmp_path, taxonomy):
    with pytest.raises(DatasetError, match="images.csv not found"):
        load_dataset(tmp_path, taxonomy)


def test_split_is_deterministic_and_sender_disjoint(tiny_dataset, taxonomy):
    samples = load_dataset(tiny_dataset, taxonomy).samples
    a, b = split_by_sender(samples, seed=3), split_by_sender(list(reversed(samples)), seed=3)
    assert a == b
    sender = {s.image_id: s.sender for s in samples}
    seen: dict[str, str] = {}
    for name, ids in a.items():
        for i in ids:
            assert seen.setdefault(sender[i], name) == name, f"sender {sender[i]} in two splits"
    assert sorted(i for ids in a.values() for i in ids) == sorted(s.image_id for s in samples)
    assert all(a[name] for name in ("train", "val", "cal", "test"))


def test_split_file_is_written_and_reused(tiny_dataset, taxonomy, tmp_path):
    samples = load_dataset(tiny_dataset, taxonomy).samples
    path = tmp_path / "split.json"
    first = load_or_create_split(samples, path, seed=0)
    assert json.loads(path.read_text()) == first
    assert load_or_create_split(samples, path, seed=99) == first  # the file wins over the seed


def test_the_kids_column_is_read_and_its_absence_is_none(tiny_dataset, taxonomy, tmp_path):
    rows = list(csv.reader((tiny_dataset / "images.csv").open()))
    rows[1][3] = "True"  # the first photo is children's clothes
    with (tiny_dataset / "images.csv").open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    flags = {s.image_id: s.kids for s in load_dataset(tiny_dataset, taxonomy).samples}
    assert flags[rows[1][0]] is True and sum(flags.values()) == 1 and None not in flags.values()
    with (tiny_dataset / "images.csv").open("w", newline="") as f:  # a dataset without the column
        csv.writer(f).writerows(r[:3] for r in rows)
    assert {s.kids for s in load_dataset(tiny_dataset, taxonomy).samples} == {None}
