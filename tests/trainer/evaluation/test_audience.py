"""[J2]'s audiences on tiny made-up predictions: photo- against person-weighted figures, the small
sender threshold at its boundary, children's against adults' clothes, the weighted ECE, and the CV
report and ``wardrobe cv-report`` carrying them (no dataset needed)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from services.cli import main
from services.trainer.evaluation.audience import Audiences, accuracy_figures, hedged_figures, kids_flags
from services.trainer.evaluation.crossval import cv_report
from services.trainer.model.calibrate import expected_calibration_error
from shared.taxonomy import load_taxonomy

TAX = load_taxonomy()
L = len(TAX.leaves)


def _probs(y: np.ndarray, right: np.ndarray, confidence: float = 0.9) -> np.ndarray:
    """Probabilities whose top-1 is the truth where ``right`` and the next class otherwise."""
    top = np.where(right, y, (y + 1) % L)
    p = np.full((len(y), L), (1 - confidence) / (L - 1))
    p[np.arange(len(y)), top] = confidence
    return p


def test_photo_and_person_weighted_top1_differ_by_the_known_amount():
    # A: 10 photos all right; B: 2 photos both wrong. Photos: 10/12; people: (1 + 0) / 2.
    senders = np.array(["A"] * 10 + ["B"] * 2)
    y = np.zeros(12, dtype=int)
    right = np.array([True] * 10 + [False] * 2)
    aud = Audiences.of(senders)
    figures = accuracy_figures(_probs(y, right), y, aud, TAX.leaves, TAX)
    assert figures["all"]["photos"]["top1"] == pytest.approx(10 / 12)
    assert figures["all"]["people"]["top1"] == pytest.approx(0.5)
    assert figures["all"]["n"] == 12 and figures["all"]["senders"] == 2
    # weights: every person sums to 1 under "people", every photo is 1 under "photos"
    w = aud.weights("all", "people")
    assert w[:10].sum() == pytest.approx(1) and w[10:].sum() == pytest.approx(1)
    assert aud.weights("all", "photos").sum() == 12


def test_the_small_sender_threshold_is_inclusive_and_a_setting():
    senders = np.array(["at"] * 150 + ["over"] * 151 + ["tiny"] * 3)
    aud = Audiences.of(senders)
    assert set(senders[aud.masks["small"]]) == {"at", "tiny"}
    assert set(senders[aud.masks["big"]]) == {"over"}
    lower = Audiences.of(senders, small_max=149)
    assert set(senders[lower.masks["small"]]) == {"tiny"}
    # counted over the whole evaluated set, so one fold's slice keeps its sender's class
    fold = Audiences.of(senders, photos_per_sender={"at": 150, "over": 151, "tiny": 3}).subset(senders != "at")
    assert set(fold.senders[fold.masks["big"]]) == {"over"}


def test_kids_and_adults_are_reported_apart_and_unknown_flags_are_neither():
    senders = np.array(["A"] * 4 + ["B"] * 4)
    y = np.arange(8) % L
    kids = ["True", "True", "False", "False", True, None, False, "false"]
    right = np.array([False, False, True, True, False, True, True, True])
    aud = Audiences.of(senders, kids)
    figures = accuracy_figures(_probs(y, right), y, aud, TAX.leaves, TAX)
    assert figures["kids"]["n"] == 3 and figures["kids"]["photos"]["top1"] == 0.0
    assert figures["adults"]["n"] == 4 and figures["adults"]["photos"]["top1"] == 1.0
    assert figures["small_kids"]["n"] == 3  # both senders are small
    assert figures["all"]["n"] == 8  # the photo without a flag still counts for everyone
    assert kids_flags([None, None]) is None
    assert "kids" not in Audiences.of(senders).masks and "kids" not in Audiences.of(senders, [None] * 8).masks


def test_person_weighted_ece_weighs_each_person_once():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(L), size=30)
    y = rng.integers(0, L, size=30)
    assert expected_calibration_error(probs, y, weights=np.ones(30))[0] == pytest.approx(
        expected_calibration_error(probs, y)[0])
    # a weight of 2 is the photo twice; weight 0 leaves it out
    w = np.ones(30); w[0] = 2; w[1] = 0
    twice = probs[np.r_[0, 0, 2:30]], y[np.r_[0, 0, 2:30]]
    assert expected_calibration_error(probs, y, weights=w)[0] == pytest.approx(expected_calibration_error(*twice)[0])


def test_rotation_drop_and_hedged_accuracy_per_audience():
    senders = np.array(["A"] * 6 + ["B"] * 2)
    y = np.zeros(8, dtype=int)
    up = _probs(y, np.ones(8, bool))
    turned = _probs(y, np.array([True] * 6 + [False] * 2))  # B is wrong once turned
    figures = accuracy_figures(up, y, Audiences.of(senders), TAX.leaves, TAX, {0: up, 30: turned, -30: up})
    assert figures["all"]["photos"]["rotation_drop"] == {"30": pytest.approx(2 / 8), "-30": 0.0}
    assert figures["all"]["people"]["rotation_drop"]["30"] == pytest.approx(0.5)
    # hedged: unjudged answers (NaN) are left out, and a person left with none counts for nothing
    right = {"0.9": np.array([1, 1, 1, 0, np.nan, np.nan, np.nan, np.nan])}
    h = hedged_figures(right, Audiences.of(senders))["0.9"]["all"]
    assert h["photos"] == pytest.approx(3 / 4) and h["people"] == pytest.approx(3 / 4)


def _oof(seed: int = 0, strength: float = 3.0) -> dict:
    """3 folds of 30 small senders (3-12 photos) and 3 big senders (40 photos, above a threshold of
    20); children's photos get weaker logits, so they are right less often."""
    rng = np.random.default_rng(seed)
    sizes = np.concatenate([rng.integers(3, 13, size=30), [40, 40, 40]])
    sender = np.repeat(np.arange(len(sizes)), sizes)
    y = rng.integers(0, L, size=len(sender))
    kids = rng.random(len(y)) < 0.1
    logits = {a: rng.normal(0, 1, (len(y), L)) for a in (0, -30, 30)}
    for a, lg in logits.items():
        lg[np.arange(len(y)), y] += np.where(kids, 0.5, strength) * (1.0 if a == 0 else 0.8)
    return {"ids": np.array([f"p{i}" for i in range(len(y))]), "senders": sender.astype(str), "labels": y,
            "folds": sender % 3, "classes": np.array(TAX.leaves), "kids": kids,
            **{f"logits_{a}": v for a, v in logits.items()}}


@pytest.mark.parametrize("strength, top1_met", [(9.0, True), (1.0, False)])
def test_the_cv_report_carries_the_audiences_and_j2s_checks(tmp_path, strength, top1_met):
    oof = _oof(strength=strength)
    report = cv_report(oof, TAX, tmp_path, command="wardrobe cv --folds 3", small_max=20)
    s = report["audience"]
    small = s["audiences"]["small"]
    assert s["small_max"] == 20 and s["kids_known"]
    assert s["audiences"]["big"]["senders"] == 3 and small["senders"] == 30
    assert small["n"] + s["audiences"]["big"]["n"] == report["n"]
    # the all-photos, photo-weighted figures are the report's own
    assert s["audiences"]["all"]["photos"]["folds"]["top1"]["mean"] == pytest.approx(report["mean"]["top1"])
    assert s["audiences"]["all"]["photos"]["pooled"]["ece"] == pytest.approx(report["oof_ece"])
    # children's clothes, weaker by construction, are reported apart and below adults'
    assert s["audiences"]["kids"]["photos"]["folds"]["top1"]["mean"] < s["audiences"]["adults"]["photos"]["folds"]["top1"]["mean"]
    checks = s["must_reach"]
    assert checks["small.photos.top1_mean>=0.85"]["met"] is top1_met
    assert checks["small.people.top1_mean>=0.85"]["value"] == small["people"]["folds"]["top1"]["mean"]
    assert checks["small_kids.photos.top1_mean>=0.75"]["met"] is False  # 0.5 logit boost: far below
    worst = min(f["audience_hedged"]["group"]["0.9"]["small"]["photos"] - 0.9 for f in report["per_fold"])
    assert checks["hedged_group_small_every_fold>=target-0.01"]["worst_margin"]["0.9"] == pytest.approx(worst)
    md = (tmp_path / "cv.md").read_text()
    assert "## For the people Wardrobe will meet" in md and "small senders, children's clothes" in md
    assert (tmp_path / "cv_audience.png").stat().st_size > 1000


def test_wardrobe_cv_report_rewrites_a_report_from_stored_predictions(tmp_path):
    oof = _oof()
    kids = oof.pop("kids")  # a run made before the flag was saved: read from images.csv
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    with (data / "images.csv").open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["image", "sender_id", "label", "kids"])
        label = {leaf: lab for lab, leaf in TAX.label_to_leaf.items() if leaf}
        for i, s, yy, k in zip(oof["ids"], oof["senders"], oof["labels"], kids):
            out.writerow([i, s, label[TAX.leaves[yy]], str(bool(k))])
            (data / "images" / f"{i}.jpg").write_bytes(b"")  # only looked for, never decoded here
    member = tmp_path / "member"
    member.mkdir()
    np.savez(member / "oof.npz", **oof)
    (member / "cv.json").write_text(json.dumps({"command": "wardrobe cv --out member"}))
    assert main(["cv-report", str(member), "--data", str(data), "--small-sender-max", "20"]) == 0
    report = json.loads((member / "cv.json").read_text())
    assert report["command"] == "wardrobe cv --out member" and "cv-report" in report["recomputed_by"]
    assert report["audience"]["kids_known"] and report["audience"]["audiences"]["kids"]["n"] == int(kids.sum())
    assert report["audience"]["audiences"]["big"]["senders"] == 3
    # two runs: their averaged predictions, as wardrobe ensemble reports them
    ensemble = tmp_path / "ensemble"
    assert main(["cv-report", str(ensemble), "--runs", str(member), str(member), "--data", str(data)]) == 0
    both = json.loads((ensemble / "cv.json").read_text())
    assert both["mean"]["top1"] == pytest.approx(report["mean"]["top1"])  # a run averaged with itself
    assert both["audience"]["small_max"] == 150 and "big" not in both["audience"]["audiences"]
