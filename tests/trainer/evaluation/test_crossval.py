"""The ``wardrobe cv`` report on generated out-of-fold predictions: each fold's calibration is
fitted without that fold's people, figures aggregate to mean and spread, the checks can fail."""

from __future__ import annotations

import json

import numpy as np
import pytest

from services.trainer.model.calibrate import fit_temperature
from services.trainer.evaluation.crossval import aggregate, cv_report, fold_summary
from shared.taxonomy import load_taxonomy

TAX = load_taxonomy()
L = len(TAX.leaves)


def _oof(seed: int = 0, senders: int = 60, strength: float = 3.0) -> dict:
    """Logits that point at the truth with sender-specific noise (people differ), 3 folds."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(3, 15, size=senders)
    sender = np.repeat(np.arange(senders), sizes)
    y = rng.integers(0, L, size=len(sender))
    noise = rng.uniform(0.5, 2.0, size=senders)[sender][:, None]
    logits = {a: rng.normal(0, 1, (len(y), L)) * noise for a in (0, -30, 30)}
    for a, lg in logits.items():
        lg[np.arange(len(y)), y] += strength * (1.0 if a == 0 else 0.7)
    return {"ids": np.array([f"p{i}" for i in range(len(y))]), "senders": sender.astype(str), "labels": y,
            "folds": sender % 3, "classes": np.array(TAX.leaves), **{f"logits_{a}": v for a, v in logits.items()}}


def test_fold_calibration_never_sees_the_fold():
    oof = _oof()
    held = oof["folds"] == 1
    logits = {a: oof[f"logits_{a}"] for a in (0, -30, 30)}
    summary, _ = fold_summary(logits, oof["labels"], oof["senders"], held, TAX.leaves, TAX)
    assert summary["temperature"] == pytest.approx(fit_temperature(logits[0][~held], oof["labels"][~held]))
    assert summary["hedged"]["sender"]["n_calibration"] == int((~held).sum())
    assert summary["hedged"]["sender"]["n_calibration_senders"] == 40
    assert summary["n"] == int(held.sum()) and summary["senders"] == 20
    # changing the held-out fold's own labels cannot move its calibration
    y2 = oof["labels"].copy()
    y2[held] = (y2[held] + 1) % L
    other, _ = fold_summary(logits, y2, oof["senders"], held, TAX.leaves, TAX)
    assert other["temperature"] == summary["temperature"]
    assert other["hedged"]["photo"]["crc"]["0.9"]["lam"] == summary["hedged"]["photo"]["crc"]["0.9"]["lam"]
    assert other["top1"] < summary["top1"]


def test_aggregate_gives_mean_and_spread_of_every_number():
    folds = [{"top1": 0.7, "per_class": {"a": {"recall": 0.5}}}, {"top1": 0.8, "per_class": {"a": {"recall": 1.0}}},
             {"top1": 0.9, "per_class": {}}]
    agg = aggregate(folds)
    assert agg["top1"]["mean"] == pytest.approx(0.8) and agg["top1"]["sd"] == pytest.approx(0.1)
    assert agg["top1"]["min"] == 0.7 and agg["top1"]["max"] == 0.9
    assert agg["per_class.a.recall"]["folds"] == 2 and agg["per_class.a.recall"]["mean"] == 0.75


@pytest.mark.parametrize("strength, top1_met", [(8.0, True), (0.5, False)])
def test_report_writes_tables_plots_and_honest_checks(tmp_path, strength, top1_met):
    report = cv_report(_oof(strength=strength), TAX, tmp_path, command="wardrobe cv --folds 3")
    assert report["folds"] == 3 and report["n"] == sum(report["fold_sizes"])
    assert report["must_reach"]["top1_mean>=0.8"]["met"] is top1_met
    assert set(report["hedging_cost"]) == {"0.8", "0.9", "0.95", "0.98", "0.99"}
    for unit in ("photo", "sender", "group"):
        check = report["must_reach"][f"hedged_{unit}_every_fold>=target-0.01"]
        margins = [f["hedged"][unit]["crc"]["0.9"]["accuracy"] - 0.9 for f in report["per_fold"]]
        assert check["worst_margin"]["0.9"] == pytest.approx(min(margins))
    assert json.loads((tmp_path / "cv.json").read_text())["n"] == report["n"]
    md = (tmp_path / "cv.md").read_text()
    assert "wardrobe cv --folds 3" in md and "## Must reach" in md
    for name in ("cv_folds", "cv_hedged_folds", "cv_hedged_gain", "cv_reliability", "cv_confusion", "cv_per_class"):
        assert (tmp_path / f"{name}.png").stat().st_size > 1000
