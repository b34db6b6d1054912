"""The quick-cost bench's pieces that decide what is measured: who gives feedback, what the
verdicts say, and where the result row goes (the job itself is the trainer's, tested there)."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

from bench._feedback_people import choose_people, draw_verdict
from bench.quick_cost import DOC_MARKER, add_row, estimate
from services.trainer.data.dataset import PhotoRef
from services.trainer.data.feedback import LabelledPhoto
from shared.taxonomy import load_taxonomy

TAX = load_taxonomy()


def _photos() -> list[LabelledPhoto]:
    sizes = {"big": 400, **{f"s{i}": 1 + i % 7 for i in range(60)}}
    return [LabelledPhoto(PhotoRef(Path(f"{who}-{k}.jpg"), f"{who}-{k}".ljust(64, "0")), TAX.leaves[k % 5], who)
            for who, n in sizes.items() for k in range(n)]


def test_feedback_givers_are_whole_small_senders_up_to_a_number_of_photos() -> None:
    photos = _photos()
    start, stream, judge = choose_people(photos, 0, -100, 0, 150, 10 ** 6)
    assert not judge and 100 <= len(stream) < 100 + 7
    people = {p.person for p in stream}
    assert "big" not in people and {p.person for p in start}.isdisjoint(people)
    assert len(start) + len(stream) == len(photos), "every other person's photos stay in the dataset"
    assert choose_people(photos, 0, -100, 0, 150, 10 ** 6) == (start, stream, judge), "seeded"
    assert choose_people(photos, 1, -100, 0, 150, 10 ** 6)[1] != stream


def test_verdicts_are_true_wrong_or_a_yes_to_the_parent_in_the_asked_shares() -> None:
    rng = random.Random(0)
    leaf = TAX.leaves[0]
    drawn = [draw_verdict(leaf, TAX, rng, 0.1, 0.15) for _ in range(4000)]
    kinds = Counter(k for _, k in drawn)
    assert abs(kinds["wrong"] / 4000 - 0.1) < 0.02 and abs(kinds["partial"] / 4000 - 0.15) < 0.02
    assert {n for n, k in drawn if k == "partial"} == {TAX.nodes[leaf].parent}
    assert all(n != leaf and TAX.nodes[n].is_leaf for n, k in drawn if k == "wrong")


def test_the_row_goes_before_the_marker_and_the_estimate_scales_the_fits(tmp_path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(f"| a |\n|---|\n{DOC_MARKER}\nafter\n")
    assert add_row(doc, "| 1 |") and doc.read_text() == f"| a |\n|---|\n| 1 |\n{DOC_MARKER}\nafter\n"
    other = tmp_path / "other.md"
    other.write_text("no table here\n")
    assert not add_row(other, "| 2 |") and other.read_text() == "no table here\n"
    fits = [{"member": 0, "fold": f, "photos": 100, "views": 1, "epochs": 2, "seconds": 10.0, "cpu_seconds": 8.0}
            for f in (0, 1, None)]
    est = estimate({"fits": fits, "stage_seconds": {"calibrate": 1.0, "export": 5.0}, "seconds": 36.0}, 100, 1000,
                   cpu_per_wall=1.0)
    assert est["per_member_cpu_ms_per_photo_view_epoch"]["0"] == 40.0
    # fits: 24 s CPU × 10 / 2 cores; the rest (1 s calibration) × 10 / 2; the export as measured
    assert est["upper_bound_quiet_2_cores_seconds"] == round(24 * 10 / 2 + 1 * 10 / 2 + 5)
