"""crc per group of people (``calibrate_by_group``): people differ, so one group of ~50 new people
can fall well below a target that crc per sender keeps only on average; the group rule keeps
almost every group within the slack, and never answers less safely than crc per sender."""

from __future__ import annotations

import numpy as np
import pytest

from shared.hedging.calibration import (
    GROUP_CONFIDENCE,
    GROUP_SIZE,
    GROUP_SLACK,
    Calibration,
    calibrate_by_group,
    calibrate_by_sender,
    calibrate_for_unit,
    crc_lambda_by_sender,
    group_lambdas,
)
from tests.shared.hedging.synth import synthetic
from tests.shared.hedging.test_calibration_by_sender import TAX

TARGETS = [0.8, 0.9, 0.95]


def _data(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    p, y = synthetic(600, len(TAX.leaves), rng)
    return p, y, rng.integers(0, 150, size=600)
LAM_MAX = 50.0


def _people(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """τ per photo for ``n`` people whose difficulty differs a lot (a photo is right at λ iff
    τ ≤ λ): τ ~ Exponential(rate_j), rate_j log-normal, 1-40 photos each."""
    rates = np.exp(rng.normal(0.0, 0.8, size=n)) * 0.6
    counts = rng.integers(1, 40, size=n)
    tau = np.concatenate([rng.exponential(1.0 / r, size=c) for r, c in zip(rates, counts)])
    senders = np.repeat(np.arange(n), counts)
    return tau, senders


def _share_of_groups_within_slack(lam: float, target: float, rng: np.random.Generator, groups: int = 300) -> float:
    ok = 0
    for _ in range(groups):
        tau, _ = _people(GROUP_SIZE, rng)  # a fresh group of new people from the same population
        ok += np.mean(tau <= lam) >= target - GROUP_SLACK
    return ok / groups


def test_the_group_rule_keeps_new_groups_of_people_within_the_slack_where_crc_per_sender_does_not():
    rng = np.random.default_rng(0)
    tau, senders = _people(220, rng)  # the calibration people
    group = group_lambdas(tau, senders, TARGETS, LAM_MAX)
    for target, lam_group in zip(TARGETS, group):
        lam_sender = crc_lambda_by_sender(tau, senders, target, LAM_MAX)
        assert lam_group > lam_sender
        within_group = _share_of_groups_within_slack(lam_group, target, np.random.default_rng(1))
        within_sender = _share_of_groups_within_slack(lam_sender, target, np.random.default_rng(1))
        # an estimate from 220 people, not a finite-sample bound: it may fall a few points short
        assert within_group >= GROUP_CONFIDENCE - 0.1, (target, within_group)
        assert within_sender < within_group - 0.1, (target, within_sender, within_group)


def test_with_identical_people_the_group_rule_asks_for_little_more_than_the_target():
    """No spread between people: a group varies only by its photos, so the rule's λ stays close
    to the one that realises exactly ``target − slack`` on the calibration photos."""
    rng = np.random.default_rng(2)
    counts = rng.integers(10, 30, size=200)
    tau = rng.exponential(1.0, size=counts.sum())
    senders = np.repeat(np.arange(200), counts)
    (lam,) = group_lambdas(tau, senders, [0.9], LAM_MAX)
    assert 0.88 <= np.mean(tau <= lam) <= 0.93


def test_calibrate_by_group_is_never_less_safe_than_crc_per_sender_and_records_its_promise():
    p, y, senders = _data(np.random.default_rng(3))
    by_sender = calibrate_by_sender(p, y, senders, TAX)
    by_group = calibrate_by_group(p, y, senders, TAX)
    assert all(g >= s for g, s in zip(by_group.lam["crc"], by_sender.lam["crc"]))
    assert by_group.lam["darts"] == by_sender.lam["darts"]
    assert by_group.crc_unit == "group" and by_group.n_senders == len(np.unique(senders))
    assert by_group.group_promise == {"size": GROUP_SIZE, "slack": GROUP_SLACK, "confidence": GROUP_CONFIDENCE,
                                      "draws": 2000}
    again = Calibration.model_validate(by_group.model_dump())  # as read back from a model card
    assert again.lam == by_group.lam and again.group_promise == by_group.group_promise


@pytest.mark.parametrize("unit", ["photo", "sender", "group"])
def test_calibrate_for_unit_is_the_one_dispatch(unit):
    p, y, senders = _data(np.random.default_rng(4))
    assert calibrate_for_unit(p, y, senders, TAX, unit).crc_unit == unit
    with pytest.raises(ValueError, match="crc unit must be one of"):
        calibrate_for_unit(p, y, senders, TAX, "person")
    if unit != "photo":
        with pytest.raises(ValueError, match="needs the sender"):
            calibrate_for_unit(p, y, None, TAX, unit)
