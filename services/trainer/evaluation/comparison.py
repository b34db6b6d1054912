"""DARTS against the back-off baseline at equal realised accuracy: the frontiers, the observed
gap, a paired bootstrap of it, and the same comparison in a "calibrated world".

Split from ``report.py`` (which builds the curves these read) because this is the evidence for
one claim, "DARTS's mean information gain ≥ back-off's at equal accuracy", and what a single
split can say about it (``docs/hedging.md``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from shared.hedging.calibration import Calibration
from shared.hedging.darts import DartsPath, TreeArrays, path_choice
from services.trainer.evaluation.report import REPORT_TARGETS, backoff_choice, operating_curves, sweep_grids
from shared.taxonomy import Taxonomy

__all__ = ["frontier_gain", "compare_darts_backoff", "bootstrap_gain_difference", "calibrated_world_difference"]


def frontier_gain(accuracy: list[float] | np.ndarray, gain: list[float] | np.ndarray, at: np.ndarray) -> np.ndarray:
    """Best mean info gain reachable at realised accuracy ≥ ``at`` along a curve, interpolated.

    The curve's Pareto front (no other point with both more accuracy and more gain) is
    interpolated linearly — a mix of two operating points (per-photo coin flip) realises any
    point in between, so this is an achievable frontier; NaN outside the curve's accuracy range.
    Applied identically to every method, so the comparison is fair.
    """
    acc = np.asarray(accuracy, dtype=np.float64)
    g = np.asarray(gain, dtype=np.float64)
    order = np.lexsort((-g, -acc))  # accuracy descending, gain descending
    a_sorted, g_sorted = acc[order], g[order]
    # a point is on the front when its gain beats every more accurate (earlier) point's
    best_before = np.concatenate([[-np.inf], np.maximum.accumulate(g_sorted)[:-1]])
    keep = g_sorted > best_before + 1e-15
    fa, fg = a_sorted[keep][::-1], g_sorted[keep][::-1]  # accuracy ascending, gain descending
    out = np.interp(at, fa, fg)
    # below the front's least accurate point the best is its gain (a more accurate answer is
    # also "at least" that accurate); above the most accurate point: unreachable
    out = np.where(at > fa[-1] + 1e-12, np.nan, out)
    return out


def compare_darts_backoff(
    probs: np.ndarray,
    true_leaf: np.ndarray,
    taxonomy: Taxonomy,
    calibration: Calibration | dict[str, Any] | None = None,
    curves: dict[str, dict[str, list[float]]] | None = None,
    n_points: int = 101,
    tol: float = 1e-9,
) -> dict[str, Any]:
    """At equal realised accuracy: DARTS's mean info gain vs the back-off baseline's.

    Both curves go through :func:`frontier_gain` and are compared on ``n_points`` accuracies
    spanning the range both reach, plus each report target inside it. Returns the table,
    ``darts_ge_backoff`` (every difference ≥ −tol) and summary numbers; the nested (crc)
    family is compared too, under ``nested_*``.
    """
    curves = curves or operating_curves(probs, true_leaf, taxonomy, calibration)
    d, b, nst = curves["darts"], curves["backoff"], curves["nested"]
    lo = max(min(d["accuracy"]), min(b["accuracy"]))
    hi = min(max(d["accuracy"]), max(b["accuracy"]))
    extra = [float(t) for t in REPORT_TARGETS if lo <= float(t) <= hi]
    at = np.unique(np.concatenate([np.linspace(lo, hi, n_points), extra]))
    gd = frontier_gain(d["accuracy"], d["mean_info_gain"], at)
    gb = frontier_gain(b["accuracy"], b["mean_info_gain"], at)
    gn = frontier_gain(nst["accuracy"], nst["mean_info_gain"], at)
    diff, ndiff = gd - gb, gn - gb
    ok = np.isfinite(diff)
    nok = np.isfinite(ndiff)
    return {
        "accuracy": at.tolist(),
        "darts": gd.tolist(),
        "nested": gn.tolist(),
        "backoff": gb.tolist(),
        "accuracy_range": [float(lo), float(hi)],
        "darts_ge_backoff": bool(np.all(diff[ok] >= -tol)),
        "min_diff": float(diff[ok].min()),
        "mean_diff": float(diff[ok].mean()),
        "share_ge": float(np.mean(diff[ok] >= -tol)),
        "nested_ge_backoff": bool(np.all(ndiff[nok] >= -tol)),
        "nested_min_diff": float(ndiff[nok].min()),
        "nested_mean_diff": float(ndiff[nok].mean()),
        "at_targets": {
            f"{t:g}": {"darts": float(gd[i]), "nested": float(gn[i]), "backoff": float(gb[i])}
            for i, t in enumerate(at)
            if any(abs(t - x) < 1e-12 for x in extra)
        },
    }


def _operating_answers(node_p: np.ndarray, arrays: TreeArrays, path: DartsPath, lams: np.ndarray,
                       thr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every photo's answer at every operating point: DARTS (len(lams), N), back-off (len(thr), N).
    The answers depend on the probabilities only, so they are computed once and scored against
    as many label vectors (resamples, simulated draws) as needed."""
    d_nodes = np.stack([path_choice(path, lam, nested=False) for lam in lams])
    b_nodes = np.stack([backoff_choice(node_p, arrays, t) for t in thr])
    return d_nodes, b_nodes


def _realised(nodes: np.ndarray, y: np.ndarray, arrays: TreeArrays) -> tuple[np.ndarray, np.ndarray]:
    """Per-photo correctness (0/1) and information gain (0 when wrong) of (params, N) answers."""
    correct = arrays.leaf_mask[nodes, y[None, :]]
    return correct.astype(np.float64), np.where(correct, arrays.info_gain[nodes], 0.0)


def _expected(nodes: np.ndarray, node_p: np.ndarray, arrays: TreeArrays) -> tuple[np.ndarray, np.ndarray]:
    """Per-photo correctness and gain *expected under the model's own probabilities*: answering
    v is right with probability P(v) and then earns v's information gain."""
    p_right = np.take_along_axis(node_p, nodes.T, axis=1).T
    return p_right, p_right * arrays.info_gain[nodes]


def calibrated_world_difference(
    probs: np.ndarray,
    taxonomy: Taxonomy,
    calibration: Calibration | dict[str, Any] | None = None,
    targets: tuple[str, ...] = REPORT_TARGETS,
    n_draws: int = 1000,
    max_points: int = 5000,
    seed: int = 0,
) -> dict[str, Any]:
    """DARTS − back-off at equal accuracy in a world where the model's probabilities are exactly right.

    Why: DARTS maximises expected reward + λ·expected accuracy photo by photo, so with right
    probabilities its *expected* frontier is the upper concave hull of everything any answering
    rule can reach, and no rule (back-off included) beats it at any accuracy
    (``tests/hedger/test_report.py`` checks this on random trees). One labelled split is a single
    draw of the labels, though; this says how often a split of this size shows DARTS behind even
    then, i.e. how much a single split's "DARTS ≥ back-off" can mean.

    Two things, on these photos' probabilities (the labels are not used):

    * ``expected``: the difference between the two expected frontiers (every photo's correctness
      replaced by the probability of its answer), per target;
    * ``n_draws`` label vectors drawn from the probabilities, each scored like a real split:
      ``mean``, ``sd`` and ``share_below`` (share of draws with DARTS behind) per target;
      ``share_all_ge``, the share of draws with DARTS at least as good at every target; and
      ``range_share_ge``: over 101 accuracies from where both rules start (expected accuracy) to
      0.999, the share on which DARTS is at least as good, per draw (``mean``, ``p05``, ``p95``;
      compare ``compare_darts_backoff``'s ``share_ge`` on the real labels).
    """
    node_p, _, arrays, path, lams, thr = sweep_grids(probs, None, taxonomy, calibration, max_points)
    d_nodes, b_nodes = _operating_answers(node_p, arrays, path, lams, thr)
    d_exp, b_exp = _expected(d_nodes, node_p, arrays), _expected(b_nodes, node_p, arrays)
    lo = max(d_exp[0].mean(axis=1).min(), b_exp[0].mean(axis=1).min())
    at = np.array([float(t) for t in targets])
    n_t = len(at)
    at = np.concatenate([at, np.linspace(min(lo, 0.999), 0.999, 101)])

    def diff(d: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        gd = frontier_gain(d[0].mean(axis=1), d[1].mean(axis=1), at)
        gb = frontier_gain(b[0].mean(axis=1), b[1].mean(axis=1), at)
        return gd - gb

    expected = diff(d_exp, b_exp)
    leaf_p = node_p[:, arrays.leaf_node]
    cum = np.cumsum(leaf_p / leaf_p.sum(axis=1, keepdims=True), axis=1)
    rng = np.random.default_rng(seed)
    draws = np.empty((n_draws, len(at)))
    for k in range(n_draws):
        y = np.minimum((cum < rng.random((len(cum), 1))).sum(axis=1), arrays.n_leaves - 1)
        draws[k] = diff(_realised(d_nodes, y, arrays), _realised(b_nodes, y, arrays))
    grid = draws[:, n_t:]
    shares = np.array([np.mean(row[np.isfinite(row)] >= -1e-9) if np.isfinite(row).any() else np.nan for row in grid])
    draws = draws[:, :n_t]
    out: dict[str, Any] = {"n_draws": n_draws, "targets": {}}
    behind = np.zeros(n_draws, dtype=bool)
    for i, key in enumerate(targets):
        if not np.isfinite(expected[i]):
            continue  # above what one of the rules can reach
        out["targets"][key] = {"expected": float(expected[i])}
        col = draws[:, i]
        ok = np.isfinite(col)
        if ok.any():
            behind |= ok & (col < -1e-9)
            out["targets"][key].update(mean=float(col[ok].mean()), sd=float(col[ok].std()),
                                       share_below=float(np.mean(col[ok] < -1e-9)))
    out["share_all_ge"] = float(np.mean(~behind)) if n_draws else None
    ok = shares[np.isfinite(shares)]
    out["range_share_ge"] = ({"mean": float(ok.mean()), "p05": float(np.percentile(ok, 5)),
                              "p95": float(np.percentile(ok, 95))} if ok.size else None)
    return out


def bootstrap_gain_difference(
    probs: np.ndarray,
    true_leaf: np.ndarray,
    taxonomy: Taxonomy,
    calibration: Calibration | dict[str, Any] | None = None,
    targets: tuple[str, ...] = REPORT_TARGETS,
    n_boot: int = 1000,
    max_points: int = 5000,
    seed: int = 0,
) -> dict[str, Any]:
    """Paired bootstrap of DARTS − back-off mean info gain at equal realised accuracy.

    On a few hundred photos the two frontiers cross back and forth by hundredths of a bit;
    this says whether a gap is larger than resampling the photos would produce. Each
    resample reweights the same photos (multinomial counts) for both methods, rebuilds both
    frontiers with :func:`frontier_gain` and reads them at each target. Returns, per target,
    the observed difference, the 2.5 / 97.5 % percentiles and the share of resamples in which
    DARTS is at least as good.
    """
    node_p, y, arrays, path, lams, thr = sweep_grids(probs, true_leaf, taxonomy, calibration, max_points)
    d_nodes, b_nodes = _operating_answers(node_p, arrays, path, lams, thr)
    d_correct, d_gain = _realised(d_nodes, y, arrays)
    b_correct, b_gain = _realised(b_nodes, y, arrays)
    at = np.array([float(t) for t in targets])
    n = len(y)

    def diff(weights: np.ndarray) -> np.ndarray:
        w = weights / weights.sum()
        gd = frontier_gain(d_correct @ w, d_gain @ w, at)
        gb = frontier_gain(b_correct @ w, b_gain @ w, at)
        return gd - gb

    observed = diff(np.ones(n))
    rng = np.random.default_rng(seed)
    boots = np.stack([diff(rng.multinomial(n, np.full(n, 1.0 / n)).astype(np.float64)) for _ in range(n_boot)])
    out: dict[str, Any] = {"n_boot": n_boot, "targets": {}}
    for i, key in enumerate(targets):
        col = boots[:, i][np.isfinite(boots[:, i])]
        if not np.isfinite(observed[i]) or col.size == 0:
            continue
        out["targets"][key] = {
            "diff": float(observed[i]),
            "ci95": [float(np.percentile(col, 2.5)), float(np.percentile(col, 97.5))],
            "share_darts_ge": float(np.mean(col >= -1e-9)),
        }
    return out
