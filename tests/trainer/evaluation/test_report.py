"""The evaluation object, curves, plots, and the DARTS vs back-off comparison."""

from __future__ import annotations

import math

import numpy as np

from shared.hedging.calibration import calibrate
from hypothesis import given, settings
from hypothesis import strategies as st

from services.trainer.evaluation.comparison import (
    bootstrap_gain_difference,
    calibrated_world_difference,
    compare_darts_backoff,
    frontier_gain,
)
from services.trainer.evaluation.report import REPORT_TARGETS, hedged_summary, operating_curves, write_hedging_plots
from shared.taxonomy import load_taxonomy
from tests.shared.hedging.synth import synthetic
from tests.shared.hedging.trees import prob_vectors, taxonomies

TAX = load_taxonomy()
L = len(TAX.leaves)


def test_summary_curves_comparison_and_plots(tmp_path) -> None:
    rng = np.random.default_rng(5)
    pc, yc = synthetic(1500, L, rng)
    pt, yt = synthetic(1500, L, rng)
    cal = calibrate(pc, yc, TAX).model_dump()
    s = hedged_summary(pt, yt, TAX, cal)
    assert s["default_method"] == "crc" and s["n"] == 1500
    for method in ("crc", "darts"):
        assert list(s[method]) == list(REPORT_TARGETS)
        gains = []
        for key, v in s[method].items():
            assert v["target"] == float(key)
            assert v["accuracy"] >= float(key) - 0.03  # same distribution, 1500 photos
            assert 0.0 <= v["specificity"] <= 1.0
            assert abs(sum(v["level_share"].values()) - 1.0) < 1e-9
            gains.append(v["mean_info_gain"])
        assert gains == sorted(gains, reverse=True)

    curves = operating_curves(pt, yt, TAX, cal)
    assert set(curves) == {"darts", "nested", "backoff", "flat_threshold", "flat"}
    assert max(curves["darts"]["accuracy"]) == 1.0  # the cap: all root
    cmp = compare_darts_backoff(pt, yt, TAX, cal, curves=curves)
    for key, v in cmp["at_targets"].items():  # calibrated synthetic model: DARTS wins clearly
        assert v["darts"] >= v["backoff"] - 1e-9, (key, v)
    assert cmp["mean_diff"] > 0

    boot = bootstrap_gain_difference(pt, yt, TAX, cal, n_boot=60)
    assert set(boot["targets"]) == set(cmp["at_targets"])
    for key, v in boot["targets"].items():  # same photos, same grids: the same difference
        expected = cmp["at_targets"][key]["darts"] - cmp["at_targets"][key]["backoff"]
        assert abs(v["diff"] - expected) < 1e-9, (key, v, expected)
        lo, hi = v["ci95"]
        assert lo <= hi and lo < hi or v["diff"] == 0.0
        assert 0.0 <= v["share_darts_ge"] <= 1.0

    paths = write_hedging_plots(pt, yt, TAX, cal, tmp_path, summary=s, curves=curves)
    assert [p.name for p in paths] == ["hedging_accuracy_vs_gain.png", "hedging_levels.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)
    s["darts_vs_backoff"] = {"bootstrap": boot, "calibrated_world": calibrated_world_difference(pt, TAX, cal, n_draws=20)}
    paths = write_hedging_plots(pt, yt, TAX, cal, tmp_path, summary=s, curves=curves)
    assert paths[-1].name == "hedging_darts_vs_backoff.png" and paths[-1].read_bytes()[:4] == b"\x89PNG"


def test_frontier_gain_is_the_pareto_front() -> None:
    acc = [0.5, 0.6, 0.7, 0.65, 1.0]
    gain = [2.0, 1.8, 1.0, 0.5, 0.0]  # (0.65, 0.5) is dominated by (0.7, 1.0)
    at = np.array([0.4, 0.6, 0.65, 0.85, 1.0])
    out = frontier_gain(acc, gain, at)
    assert np.allclose(out, [2.0, 1.8, 1.4, 0.5, 0.0])
    assert np.isnan(frontier_gain([0.5, 0.9], [1.0, 0.2], np.array([0.95])))[0]


def test_curves_hold_every_operating_point() -> None:
    """The sweep grids are exact: no λ (DARTS) or threshold (back-off) anywhere gives a point
    above the curve's Pareto front, so neither method is judged on a thinned-out curve."""
    from shared.hedging.darts import answer_gain, darts_path, is_correct, node_probabilities, path_choice, tree_arrays
    from services.trainer.evaluation.report import backoff_choice

    rng = np.random.default_rng(11)
    pc, yc = synthetic(400, L, rng)
    pt, yt = synthetic(300, L, rng)
    cal = calibrate(pc, yc, TAX).model_dump()
    curves = operating_curves(pt, yt, TAX, cal)
    arrays = tree_arrays(TAX)
    node_p = node_probabilities(pt / pt.sum(1, keepdims=True), arrays.leaf_matrix)
    path = darts_path(node_p, np.asarray(cal["rewards"]), arrays.lca, cal["lam_max"])

    def point(nodes):
        return is_correct(nodes, yt, arrays.leaf_mask).mean(), answer_gain(nodes, yt, arrays.leaf_mask, arrays.info_gain).mean()

    probes = {
        "darts": [point(path_choice(path, lam, nested=False)) for lam in np.exp(rng.uniform(-8, 8, 400))],
        "backoff": [point(backoff_choice(node_p, arrays, t)) for t in rng.uniform(0, 1, 400)],
    }
    for method, points in probes.items():
        acc, gain = np.array(points).T
        front = frontier_gain(curves[method]["accuracy"], curves[method]["mean_info_gain"], acc)
        assert np.all(gain <= front + 1e-12), method


@st.composite
def _tree_and_photos(draw):
    tax = draw(taxonomies())
    n = draw(st.integers(1, 25))
    return tax, np.stack([draw(prob_vectors(len(tax.leaves))) for _ in range(n)])


# up to 0.999, not 1: the λ cap (LAM_MAX) sends every answer to the root where the uncapped path
# would still keep a node with P > 1 − ~4e-6, which only moves accuracies within ~4e-6 of 1
GRID = tuple(f"{a:.3f}" for a in np.linspace(0.0, 0.999, 41))


@given(_tree_and_photos())
@settings(max_examples=80, deadline=None)
def test_with_right_probabilities_darts_is_never_behind_backoff(case) -> None:
    """The reason DARTS exists: if the probabilities are right, its expected frontier is the
    best any answering rule reaches, so back-off's is never above it, at any accuracy."""
    tax, probs = case
    world = calibrated_world_difference(probs, tax, targets=GRID, n_draws=0)
    assert world["targets"], "DARTS and back-off both reach accuracy 1 (the root), so some targets compare"
    for key, v in world["targets"].items():
        assert v["expected"] >= -1e-9, (key, v)


def test_backoff_is_strictly_behind_on_a_hand_computed_case() -> None:
    """The check above can fail, and the gap is the one computed by hand. Tree {a: {a1, a2}, b},
    two photos, p = (0.5, 0.4, 0.1) and (0.1, 0.1, 0.8); gains: leaves log2 3, a log2 1.5.

    Back-off's points: (a, b) at expected accuracy (0.9 + 0.8)/2 = 0.85, then (a, root) at 0.95;
    at 0.9 it mixes them. DARTS goes (a, b) → (root, b) (photo 1 leaves a at λ = 5.27, photo 2
    leaves b only at λ = 6.34), which is right 0.9 of the time and keeps b's full gain."""
    from tests.shared.hedging.trees import make_taxonomy

    tax = make_taxonomy([[None, None], None])
    probs = np.array([[0.5, 0.4, 0.1], [0.1, 0.1, 0.8]])
    leaf, a = math.log2(3), math.log2(1.5)
    backoff = 0.5 * ((a * 0.9 + leaf * 0.8) / 2) + 0.5 * (a * 0.9 / 2)
    darts = leaf * 0.8 / 2
    world = calibrated_world_difference(probs, tax, targets=("0.9",), n_draws=200, seed=3)
    v = world["targets"]["0.9"]
    assert abs(v["expected"] - (darts - backoff)) < 1e-9 and darts - backoff > 0.05
    assert 0.0 <= v["share_below"] <= 1.0 and v["sd"] > 0
    assert 0.0 <= world["share_all_ge"] <= 1.0


def test_calibrated_world_on_a_calibrated_synthetic_model() -> None:
    rng = np.random.default_rng(8)
    pc, yc = synthetic(600, L, rng)
    pt, _ = synthetic(400, L, rng)
    cal = calibrate(pc, yc, TAX).model_dump()
    world = calibrated_world_difference(pt, TAX, cal, n_draws=50, seed=1)
    again = calibrated_world_difference(pt, TAX, cal, n_draws=50, seed=1)
    assert world == again  # seeded
    assert world["n_draws"] == 50 and set(world["targets"]) <= set(REPORT_TARGETS)
    for key, v in world["targets"].items():
        assert v["expected"] >= -1e-9, key
        assert v["sd"] >= 0.0 and 0.0 <= v["share_below"] <= 1.0
    share = world["range_share_ge"]
    assert 0.0 <= share["p05"] <= share["mean"] <= share["p95"] <= 1.0
    assert share["mean"] > 0.5  # right probabilities: DARTS ahead on most of the range in most draws
