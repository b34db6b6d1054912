"""Conformal risk control with the sender as the exchangeable unit (``crc_lambda_by_sender``,
``calibrate_by_sender``): the order statistic is exact, it reduces to photo-level CRC with one
photo per sender, and it keeps its promise for new people where photo-level CRC does not."""

from __future__ import annotations

import numpy as np
import pytest

from shared.hedging.calibration import (
    Calibration,
    calibrate,
    calibrate_by_sender,
    crc_lambda,
    crc_lambda_by_sender,
    lambda_for,
)
from shared.hedging.darts import LAM_MAX
from shared.taxonomy import load_taxonomy
from tests.shared.hedging.synth import synthetic

TAX = load_taxonomy()


def _sender_risk(tau: np.ndarray, senders: np.ndarray, lam: float) -> float:
    """Mean over senders of the share of their photos not covered at λ."""
    return float(np.mean([np.mean(tau[senders == s] > lam) for s in np.unique(senders)]))


def _people(rng: np.random.Generator, m: int) -> tuple[np.ndarray, np.ndarray]:
    """τ for m people: many photos from easy people, few from hard ones (a real pattern: keen
    users send many clear photos), so photos and people disagree about the error rate."""
    taus, senders = [], []
    for j in range(m):
        hard = rng.random() < 0.5
        n = int(rng.integers(1, 4)) if hard else int(rng.integers(15, 30))
        scale = 4.0 if hard else 0.5
        taus.append(rng.exponential(scale, size=n))
        senders += [j] * n
    return np.concatenate(taus), np.array(senders)


@pytest.mark.parametrize("target", [0.5, 0.8, 0.9, 0.95])
def test_one_photo_per_sender_is_photo_level_crc(target):
    tau = np.random.default_rng(3).exponential(1.0, size=300)
    assert crc_lambda_by_sender(tau, np.arange(300), target, LAM_MAX) == crc_lambda(tau, target, LAM_MAX)


@pytest.mark.parametrize("target", [0.6, 0.8, 0.9, 0.95])
def test_sender_crc_is_the_smallest_lambda_meeting_the_bound(target):
    tau, senders = _people(np.random.default_rng(11), 120)
    m, eps = len(np.unique(senders)), 1 - target
    lam = crc_lambda_by_sender(tau, senders, target, LAM_MAX)
    assert (m / (m + 1)) * _sender_risk(tau, senders, lam) + 1 / (m + 1) <= eps + 1e-12
    below = tau[tau < lam / (1 + 1e-9) - 1e-12]
    if len(below):  # the next smaller candidate (a τ value) breaks the bound: λ̂ is minimal
        previous = float(below.max())
        assert (m / (m + 1)) * _sender_risk(tau, senders, previous) + 1 / (m + 1) > eps


def test_too_few_senders_for_the_target_means_the_root():
    tau, senders = _people(np.random.default_rng(0), 20)  # 1/(m+1) ≈ 0.048
    assert crc_lambda_by_sender(tau, senders, 0.96, LAM_MAX) == LAM_MAX
    assert crc_lambda_by_sender(tau, senders, 0.9, LAM_MAX) < LAM_MAX


def test_promise_holds_for_new_people_where_photo_level_crc_breaks_it():
    """Leave people out: calibrate on m people, measure a new person's share of wrong answers.
    Averaged over draws it stays ≤ ε for sender-level CRC (the guarantee), while photo-level
    CRC, dominated by the many photos of easy people, misses it."""
    rng = np.random.default_rng(2026)
    target, m, draws = 0.9, 60, 400
    by_sender, by_photo = [], []
    for _ in range(draws):
        tau, senders = _people(rng, m + 1)
        new = senders == m
        lam_s = crc_lambda_by_sender(tau[~new], senders[~new], target, LAM_MAX)
        lam_p = crc_lambda(tau[~new], target, LAM_MAX)
        by_sender.append(np.mean(tau[new] > lam_s))
        by_photo.append(np.mean(tau[new] > lam_p))
    se = np.std(by_sender) / np.sqrt(draws)
    assert np.mean(by_sender) <= (1 - target) + 2 * se, np.mean(by_sender)
    assert np.mean(by_photo) > (1 - target) + 0.05, np.mean(by_photo)


def test_calibrate_by_sender_records_the_unit_and_keeps_darts():
    rng = np.random.default_rng(5)
    p, y = synthetic(600, len(TAX.leaves), rng)
    senders = rng.integers(0, 150, size=600)
    photo = calibrate(p, y, TAX)
    cal = calibrate_by_sender(p, y, senders, TAX)
    assert photo.crc_unit == "photo" and photo.n_senders is None
    assert cal.crc_unit == "sender" and cal.n_senders == len(np.unique(senders))
    assert cal.lam["darts"] == photo.lam["darts"]
    assert cal.lam["crc"] != photo.lam["crc"]
    again = Calibration.model_validate_json(cal.model_dump_json())  # travels in the card, re-checked on load
    assert again.crc_unit == "sender" and again.lam == cal.lam
    assert lambda_for(again, 0.9) == cal.lam["crc"][cal.targets.index(0.9)]
    with pytest.raises(ValueError, match="one per photo"):
        calibrate_by_sender(p, y, senders[:-1], TAX)


def test_cards_without_the_field_are_photo_level():
    rng = np.random.default_rng(6)
    p, y = synthetic(200, len(TAX.leaves), rng)
    data = calibrate(p, y, TAX).model_dump(mode="json")
    data.pop("crc_unit"), data.pop("n_senders")
    assert Calibration.model_validate(data).crc_unit == "photo"
