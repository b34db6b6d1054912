"""The learning-loop bench's yardstick: a gap between two versions on the judge people, with an
interval over people (the loop itself is the trainer's job runner, tested in tests/e2e)."""

from __future__ import annotations

import numpy as np

from bench.learning_loop import gap


def test_the_gap_weighs_photos_and_people_and_its_interval_is_over_people() -> None:
    # one big person (90 photos) on whom the rival is right and we are wrong, nine small people
    # (10 photos each) on whom we are both right
    persons = ["big"] * 90 + [f"small{i // 10}" for i in range(90)]
    ours = np.array([0.0] * 90 + [1.0] * 90)
    theirs = np.ones(180)
    g = gap(ours, theirs, persons)
    assert g["points"] == 50.0, "photo-weighted: 90 of 180 photos"
    assert g["per_person_points"] == 10.0, "per person: one of ten people"
    assert g["lo"] <= g["points"] <= g["hi"] and g["per_person_lo"] <= 10.0 <= g["per_person_hi"]
    assert g["lo"] == 0.0 < g["hi"], "resamples without the big person see no gap"


def test_no_difference_is_a_zero_gap_with_a_zero_interval() -> None:
    hits = np.array([1.0, 0.0, 1.0, 1.0])
    g = gap(hits, hits, ["a", "a", "b", "c"])
    assert (g["points"], g["lo"], g["hi"], g["per_person_points"]) == (0.0, 0.0, 0.0, 0.0)
