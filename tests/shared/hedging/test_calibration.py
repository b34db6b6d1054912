"""λ(ε) calibration: targets reached, the CRC guarantee, safe lookup, storage."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.hedging.calibration import (
    DEFAULT_TARGETS,
    Calibration,
    calibrate,
    crc_lambda,
    crc_thresholds,
    lambda_for,
)
from shared.hedging.darts import darts_path, info_gain_rewards, is_correct, node_probabilities, path_choice, tree_arrays
from shared.hedging.errors import HedgeInputError
from shared.model_card import ModelCard, PreprocessConfig
from shared.taxonomy import load_taxonomy
from tests.shared.hedging.synth import synthetic
from tests.shared.hedging.trees import JUMP_TREE, taxonomies

TAX = load_taxonomy()
L = len(TAX.leaves)


@pytest.fixture(scope="module")
def cal_data():
    rng = np.random.default_rng(7)
    p, y = synthetic(2000, L, rng)
    return p, y, calibrate(p, y, TAX)


def _accuracy(p, y, tax, cal, target, method):
    arrays = tree_arrays(tax)
    path = darts_path(node_probabilities(p, arrays.leaf_matrix), np.asarray(cal.rewards), arrays.lca, cal.lam_max)
    nodes = path_choice(path, lambda_for(cal, target, method), nested=(method == "crc"))
    return is_correct(nodes, y, arrays.leaf_mask).mean()


def test_calibration_reaches_every_target_on_the_calibration_set(cal_data) -> None:
    p, y, cal = cal_data
    for k, target in enumerate(cal.targets):
        acc_darts = _accuracy(p, y, TAX, cal, target, "darts")
        assert acc_darts >= target - 1e-12, (target, acc_darts)
        assert cal.calib_accuracy["darts"][k] >= target - 1e-12
        acc_crc = _accuracy(p, y, TAX, cal, target, "crc")
        n = len(y)
        # the CRC inequality itself: (n/(n+1))·error + 1/(n+1) ≤ ε
        assert (n / (n + 1)) * (1 - acc_crc) + 1 / (n + 1) <= (1 - target) + 1e-12, (target, acc_crc)


@settings(max_examples=25, deadline=None)
@given(taxonomies(), st.integers(0, 2**32 - 1), st.sampled_from([0.6, 0.8, 0.9, 0.95]))
def test_darts_calibration_reaches_target_on_random_trees(tax, seed, target) -> None:
    rng = np.random.default_rng(seed)
    p, y = synthetic(300, len(tax.leaves), rng, strength=rng.uniform(0.5, 4.0))
    cal = calibrate(p, y, tax)
    assert _accuracy(p, y, tax, cal, target, "darts") >= target - 1e-12
    n = len(y)
    acc = _accuracy(p, y, tax, cal, target, "crc")
    assert (n / (n + 1)) * (1 - acc) + 1 / (n + 1) <= (1 - target) + 1e-12


def test_crc_guarantee_holds_on_fresh_test_data() -> None:
    """Calibrate on n = 500 draws, test on 2000 fresh draws, 20 repetitions: the average test
    accuracy of crc is ≥ the target (the guarantee is in expectation over both draws)."""
    rng = np.random.default_rng(123)
    targets = (0.8, 0.9, 0.95)
    accs = {t: [] for t in targets}
    for _ in range(20):
        pc, yc = synthetic(500, L, rng)
        pt, yt = synthetic(2000, L, rng)
        cal = calibrate(pc, yc, TAX)
        for t in targets:
            accs[t].append(_accuracy(pt, yt, TAX, cal, t, "crc"))
    for t in targets:
        assert np.mean(accs[t]) >= t - 0.003, (t, np.mean(accs[t]))
        assert np.min(accs[t]) >= t - 0.03


def test_crc_lambda_order_statistic() -> None:
    tau = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0])  # n = 10
    # ε = 0.3: allowed errors = floor(0.3·11 − 1) = 2 → λ = third largest τ = 7
    assert crc_lambda(tau, 0.7, 1e6) == pytest.approx(7.0, rel=1e-8)
    # ε(n+1) < 1: no λ below the cap is certified → the cap (always the root)
    assert crc_lambda(tau, 0.95, 1e6) == 1e6
    assert crc_lambda(tau, 0.5, 1e6) == pytest.approx(5.0, rel=1e-8)  # floor(0.5·11 − 1) = 4 allowed → 5th largest


def test_jump_photo_gets_a_monotone_loss() -> None:
    """A photo whose plain-DARTS answer is right, wrong, right (u1 → sibling branch V → root): its
    CRC threshold is where the nested answer first contains the truth, and the loss never comes
    back. True leaf u1: nested from λ = 0 on (u1, then the root). True leaf v1: only from the jump
    to V on, where the nested answer becomes LCA(u1, V) = the root."""
    arrays = tree_arrays(JUMP_TREE)
    p = node_probabilities(np.array([[0.3, 0, 0, 0, 0.2, 0.2, 0.2, 0.1]] * 2), arrays.leaf_matrix)
    path = darts_path(p, info_gain_rewards(JUMP_TREE), arrays.lca)
    y = np.array([0, 4])  # u1, v1
    plain = [is_correct(path_choice(path, lam, False), y, arrays.leaf_mask).tolist() for lam in (0.1, 1.0, 3.0)]
    assert [row[0] for row in plain] == [True, False, True]
    tau = crc_thresholds(path, y, arrays.leaf_mask)
    assert tau[0] == 0.0
    assert tau[1] == pytest.approx((0.9 - np.log2(8 / 3) * 0.6) / 0.3)
    for lam in (0.0, 0.1, 1.0, 3.0, 1e6):  # nested loss = 1[τ > λ]: right from τ on, never wrong again
        covered = is_correct(path_choice(path, lam, True), y, arrays.leaf_mask)
        assert covered.tolist() == (tau <= lam).tolist()


def test_lookup_is_safe_between_grid_points(cal_data) -> None:
    _, _, cal = cal_data
    assert lambda_for(cal, 0.9, "crc") == cal.lam["crc"][cal.targets.index(0.9)]
    # 0.9012 lies between 0.9 and 0.905: the λ of 0.905 (never less)
    assert lambda_for(cal, 0.9012, "crc") == cal.lam["crc"][cal.targets.index(0.905)]
    assert lambda_for(cal, 0.9012, "darts") == cal.lam["darts"][cal.targets.index(0.905)]
    grid = np.linspace(0.5, 0.999, 300)
    for method in ("crc", "darts"):
        lam = [lambda_for(cal, t, method) for t in grid]
        assert all(b >= a for a, b in zip(lam, lam[1:])), "λ must not fall as the target rises"
    assert lambda_for(cal, 0.9) == lambda_for(cal, 0.9, "crc")  # crc is the default


@pytest.mark.parametrize("bad", [0.49, 1.0, 0.9991, float("nan"), "high", None])
def test_lookup_rejects_targets_out_of_range(cal_data, bad) -> None:
    _, _, cal = cal_data
    with pytest.raises(HedgeInputError, match="accuracy"):
        lambda_for(cal, bad)


def test_round_trip_through_the_model_card(cal_data) -> None:
    _, _, cal = cal_data
    card = ModelCard(version="v1", created_at="now", architecture="x", preprocess=PreprocessConfig(), classes=TAX.leaves,
                     taxonomy_version=TAX.version, taxonomy_digest=TAX.digest, calibration=cal.model_dump())
    loaded = ModelCard.model_validate_json(card.model_dump_json())
    again = Calibration.model_validate(loaded.calibration)
    assert again == cal
    json.dumps(cal.model_dump(), allow_nan=False)  # strict JSON: no inf / NaN anywhere
    assert lambda_for(loaded.calibration, 0.95, "darts") == lambda_for(cal, 0.95, "darts")
    assert len(DEFAULT_TARGETS) == len(cal.targets) and cal.targets[0] == 0.5 and cal.targets[-1] == 0.999


def test_tampered_table_is_rejected(cal_data) -> None:
    _, _, cal = cal_data
    raw = cal.model_dump()
    raw["lam"]["crc"] = raw["lam"]["crc"][::-1]
    with pytest.raises(ValueError, match="non-decreasing"):
        Calibration.model_validate(raw)


def test_prior_reward_calibration() -> None:
    rng = np.random.default_rng(3)
    p, y = synthetic(800, L, rng)
    with pytest.raises(ValueError, match="class_counts"):
        calibrate(p, y, TAX, reward="prior")
    cal = calibrate(p, y, TAX, reward="prior", class_counts=np.bincount(y, minlength=L))
    assert cal.reward == "prior" and cal.rewards[0] == 0.0
    assert _accuracy(p, y, TAX, cal, 0.9, "darts") >= 0.9


def test_calibrate_rejects_bad_input() -> None:
    p = np.full((5, L), 1.0 / L)
    with pytest.raises(ValueError, match="leaf_probs"):
        calibrate(p[:, :-1], np.zeros(5, int), TAX)
    with pytest.raises(ValueError, match="true_leaf"):
        calibrate(p, np.zeros(4, int), TAX)
    p[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        calibrate(p, np.zeros(5, int), TAX)
