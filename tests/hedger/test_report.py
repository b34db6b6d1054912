"""The evaluation object, curves, comparison and plots."""

from __future__ import annotations

import numpy as np

from services.hedger.calibration import calibrate
from services.hedger.report import (
    REPORT_TARGETS,
    bootstrap_gain_difference,
    compare_darts_backoff,
    frontier_gain,
    hedged_summary,
    operating_curves,
    write_hedging_plots,
)
from shared.taxonomy import load_taxonomy
from tests.hedger.synth import synthetic

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
    from services.hedger.darts import answer_gain, darts_path, is_correct, node_probabilities, path_choice, tree_arrays
    from services.hedger.report import backoff_choice

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
