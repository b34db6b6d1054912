"""Evaluating the hedger on a labelled split: the ``hedged`` object, curves, plots, comparison.

All numbers are computed with the same core as serving (``darts.py``), on the exact DARTS path
of each photo, so "what the report says" is "what the service answers" (up to float rounding
at λ exactly on a photo's breakpoint).

Conventions (also in ``docs/hedging.md``):

* ``mean_info_gain`` is always the paper's uniform information gain in bits (``taxonomy.info_gain``),
  credited 0 for a wrong answer, averaged over all photos — also when the calibration optimises
  the prior-weighted reward, so that numbers stay comparable across reward kinds.
* ``specificity`` is the share of answers that are leaves.
* ``level_share[d]`` is the share of answers at tree depth d (0 = root).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from services.hedger.calibration import Calibration, lambda_for
from services.hedger.darts import DartsPath, TreeArrays, answer_gain, darts_path, is_correct, node_probabilities, path_choice, tree_arrays
from shared.taxonomy import Taxonomy

__all__ = [
    "REPORT_TARGETS",
    "hedged_summary",
    "operating_curves",
    "compare_darts_backoff",
    "write_hedging_plots",
    "backoff_choice",
    "flat_choice",
    "frontier_gain",
    "bootstrap_gain_difference",
    "calibrated_world_difference",
]

REPORT_TARGETS: tuple[str, ...] = ("0.8", "0.9", "0.95", "0.98", "0.99")


def _as_cal(calibration: Calibration | dict[str, Any]) -> Calibration:
    return calibration if isinstance(calibration, Calibration) else Calibration.model_validate(calibration)


def _prepare(probs: np.ndarray, true_leaf: np.ndarray | None, taxonomy: Taxonomy) -> tuple[np.ndarray, np.ndarray, TreeArrays]:
    """Node probabilities, labels (an empty array when ``true_leaf`` is None) and the tree."""
    p = np.asarray(probs, dtype=np.float64)
    arrays = tree_arrays(taxonomy)
    y = np.zeros(0, dtype=np.intp) if true_leaf is None else np.asarray(true_leaf)
    if p.ndim != 2 or p.shape[1] != arrays.n_leaves or (true_leaf is not None and y.shape != (p.shape[0],)):
        raise ValueError(f"need probs (N, {arrays.n_leaves}) and true_leaf (N,), got {p.shape} and {y.shape}")
    if not np.all(np.isfinite(p)):
        raise ValueError("probs contain NaN or inf")
    p = p / p.sum(axis=1, keepdims=True)
    return node_probabilities(p, arrays.leaf_matrix), y, arrays


def _metrics(nodes: np.ndarray, y: np.ndarray, arrays: TreeArrays) -> dict[str, Any]:
    depth = arrays.depth[nodes]
    shares = np.bincount(depth, minlength=int(arrays.depth.max()) + 1) / len(nodes)
    return {
        "accuracy": float(is_correct(nodes, y, arrays.leaf_mask).mean()),
        "mean_info_gain": float(answer_gain(nodes, y, arrays.leaf_mask, arrays.info_gain).mean()),
        "specificity": float(arrays.is_leaf[nodes].mean()),
        "level_share": {str(d): float(s) for d, s in enumerate(shares)},
    }


def hedged_summary(
    probs: np.ndarray,
    true_leaf: np.ndarray,
    taxonomy: Taxonomy,
    calibration: Calibration | dict[str, Any],
    targets: tuple[str, ...] = REPORT_TARGETS,
) -> dict[str, Any]:
    """The ``hedged`` object: ``{method: {target: metrics}}`` for both methods, plus meta keys.

    Shape::

        {"default_method": "crc", "reward": "info_gain", "n": N,
         "crc":   {"0.8": {"target", "lam", "accuracy", "mean_info_gain", "specificity",
                           "level_share": {"0": …, "1": …}, "calib_accuracy"}, "0.9": …},
         "darts": {…same…}}

    ``calib_accuracy`` is the calibration-set accuracy the λ was chosen with (the exact grid
    target's, which is the requested one for these keys).
    """
    cal = _as_cal(calibration)
    cal.check_taxonomy(taxonomy)
    node_p, y, arrays = _prepare(probs, true_leaf, taxonomy)
    path = darts_path(node_p, np.asarray(cal.rewards), arrays.lca, cal.lam_max)
    out: dict[str, Any] = {"default_method": cal.default_method, "reward": cal.reward, "n": int(len(y))}
    for method in ("crc", "darts"):
        table: dict[str, Any] = {}
        for key in targets:
            lam = lambda_for(cal, float(key), method)
            nodes = path_choice(path, lam, nested=(method == "crc"))
            k = min(range(len(cal.targets)), key=lambda i: abs(cal.targets[i] - float(key)))
            table[key] = {"target": float(key), "lam": lam, **_metrics(nodes, y, arrays),
                          "calib_accuracy": cal.calib_accuracy[method][k]}  # type: ignore[index]
        out[method] = table
    return out


# --- baselines ---------------------------------------------------------------------------
def _chains(arrays: TreeArrays) -> np.ndarray:
    """(L, D+1) node indices from each leaf up to the root, padded with the root."""
    d = int(arrays.depth.max())
    chains = np.zeros((arrays.n_leaves, d + 1), dtype=np.intp)
    for j, node in enumerate(arrays.leaf_node):
        k, v = 0, int(node)
        while v >= 0:
            chains[j, k] = v
            v, k = int(arrays.parent[v]), k + 1
    return chains


def backoff_choice(node_probs: np.ndarray, arrays: TreeArrays, threshold: float) -> np.ndarray:
    """Baseline: start at the most probable leaf, back off to the parent until P ≥ threshold."""
    leaf_p = node_probs[:, arrays.leaf_node]
    chain = _chains(arrays)[np.argmax(leaf_p, axis=1)]  # (N, D+1)
    pc = np.take_along_axis(node_probs, chain, axis=1)
    ok = pc >= threshold
    ok[:, -1] = True  # the root always qualifies (its probability may round below 1)
    return chain[np.arange(len(chain)), np.argmax(ok, axis=1)]


def flat_choice(node_probs: np.ndarray, arrays: TreeArrays, threshold: float) -> np.ndarray:
    """Flat classifier: the argmax leaf if its probability ≥ threshold, else abstain (the root)."""
    leaf_p = node_probs[:, arrays.leaf_node]
    best = np.argmax(leaf_p, axis=1)
    return np.where(leaf_p[np.arange(len(best)), best] >= threshold, arrays.leaf_node[best], 0)


def _exact_grid(values: np.ndarray, ends: list[float], max_points: int) -> np.ndarray:
    """Every distinct value (where some photo's answer changes), plus ``ends``; quantiles of them
    if there are more than ``max_points`` (very large evaluation sets only)."""
    values = np.unique(values)
    if len(values) > max_points:
        values = np.unique(np.quantile(values, np.linspace(0, 1, max_points)))
    return np.unique(np.concatenate([ends, values]))


def _sweep_grids(probs: np.ndarray, true_leaf: np.ndarray | None, taxonomy: Taxonomy,
                 calibration: Calibration | dict[str, Any] | None, max_points: int
                 ) -> tuple[np.ndarray, np.ndarray, TreeArrays, DartsPath, np.ndarray, np.ndarray]:
    """Node probabilities, labels, tree, each photo's DARTS path, and the λ and threshold grids
    that every curve over these photos is swept on (rewards from ``calibration``, uniform
    information gain if None).

    The grids are exact: every λ at which some photo's DARTS answer changes (its path's
    breakpoints; the answer is constant from one to the next) and every threshold at which some
    photo's back-off or flat answer changes (the probabilities along its argmax leaf's chain to
    the root; the answer at t is constant on (previous value, value]). No method is compared on
    a coarser sampling of its operating points than another."""
    node_p, y, arrays = _prepare(probs, true_leaf, taxonomy)
    cal = None if calibration is None else _as_cal(calibration)
    rewards = arrays.info_gain if cal is None else np.asarray(cal.rewards)
    lam_max = 1e6 if cal is None else cal.lam_max
    path = darts_path(node_p, rewards, arrays.lca, lam_max)
    breaks = path.breaks[np.isfinite(path.breaks) & (path.breaks > 0) & (path.breaks < lam_max)]
    lams = _exact_grid(breaks, [0.0, lam_max], max_points)
    chain = _chains(arrays)[np.argmax(node_p[:, arrays.leaf_node], axis=1)]
    thr = _exact_grid(np.take_along_axis(node_p, chain, axis=1).ravel(), [0.0], max_points)
    return node_p, y, arrays, path, lams, thr


def operating_curves(
    probs: np.ndarray,
    true_leaf: np.ndarray,
    taxonomy: Taxonomy,
    calibration: Calibration | dict[str, Any] | None = None,
    max_points: int = 5000,
) -> dict[str, dict[str, list[float]]]:
    """Accuracy vs mean info gain for: DARTS (sweeping λ), the nested answer used by crc
    (sweeping λ), back-off (sweeping t), flat with a confidence threshold (sweeping t), and
    plain flat argmax (one point). Each curve: ``{"param", "accuracy", "mean_info_gain",
    "specificity"}`` lists. Rewards come from ``calibration`` (uniform info gain if None).
    Every operating point of every method is on its curve (exact grids, ``_sweep_grids``)."""
    node_p, y, arrays, path, lams, thr = _sweep_grids(probs, true_leaf, taxonomy, calibration, max_points)

    def sweep(params: np.ndarray, pick: Any) -> dict[str, list[float]]:
        curve: dict[str, list[float]] = {"param": [], "accuracy": [], "mean_info_gain": [], "specificity": []}
        for t in params:
            m = _metrics(pick(t), y, arrays)
            curve["param"].append(float(t))
            for key in ("accuracy", "mean_info_gain", "specificity"):
                curve[key].append(m[key])
        return curve

    return {
        "darts": sweep(lams, lambda lam: path_choice(path, lam, nested=False)),
        "nested": sweep(lams, lambda lam: path_choice(path, lam, nested=True)),
        "backoff": sweep(thr, lambda t: backoff_choice(node_p, arrays, t)),
        "flat_threshold": sweep(thr, lambda t: flat_choice(node_p, arrays, t)),
        "flat": sweep(np.array([0.0]), lambda t: flat_choice(node_p, arrays, t)),
    }


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
    node_p, _, arrays, path, lams, thr = _sweep_grids(probs, None, taxonomy, calibration, max_points)
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
    node_p, y, arrays, path, lams, thr = _sweep_grids(probs, true_leaf, taxonomy, calibration, max_points)
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


def write_hedging_plots(
    probs: np.ndarray,
    true_leaf: np.ndarray,
    taxonomy: Taxonomy,
    calibration: Calibration | dict[str, Any],
    out_dir: str | Path,
    summary: dict[str, Any] | None = None,
    curves: dict[str, dict[str, list[float]]] | None = None,
) -> list[Path]:
    """Write ``hedging_accuracy_vs_gain.png`` and ``hedging_levels.png`` into ``out_dir``, and
    ``hedging_darts_vs_backoff.png`` when ``summary`` carries the comparison's bootstrap and
    calibrated-world numbers (the evaluation CLI's ``hedged`` object does).

    matplotlib is imported here (Agg backend) so that serving never needs it.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = summary or hedged_summary(probs, true_leaf, taxonomy, calibration)
    curves = curves or operating_curves(probs, true_leaf, taxonomy, calibration)

    fig, ax = plt.subplots(figsize=(7.5, 5))
    styles = {
        "darts": ("DARTS (λ sweep)", "-", "C0"),
        "nested": ("nested DARTS, used by crc (λ sweep)", "--", "C2"),
        "backoff": ("back-off to parent until P ≥ t (t sweep)", "-", "C1"),
        "flat_threshold": ("flat argmax, root below confidence t", ":", "C7"),
    }
    for key, (label, ls, color) in styles.items():
        c = curves[key]
        order = np.argsort(c["accuracy"])
        ax.plot(np.array(c["accuracy"])[order], np.array(c["mean_info_gain"])[order], ls, color=color, label=label, lw=1.5)
    ax.plot(curves["flat"]["accuracy"], curves["flat"]["mean_info_gain"], "ks", label="flat argmax")
    for method, marker, color in (("crc", "o", "C3"), ("darts", "^", "C0")):
        pts = summary[method]
        ax.scatter([v["accuracy"] for v in pts.values()], [v["mean_info_gain"] for v in pts.values()],
                   marker=marker, color=color, zorder=5, label=f"{method} at targets {', '.join(pts)}")
    ax.set_xlabel("realised accuracy")
    ax.set_ylabel("mean information gain (bits; 0 when wrong)")
    ax.set_title("Accuracy vs specificity")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    p1 = out / "hedging_accuracy_vs_gain.png"
    fig.savefig(p1, dpi=120)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, method in zip(axes, ("crc", "darts")):
        pts = summary[method]
        keys = list(pts)
        depths = sorted({int(d) for v in pts.values() for d in v["level_share"]})
        bottom = np.zeros(len(keys))
        for d in depths:
            share = np.array([pts[k]["level_share"].get(str(d), 0.0) for k in keys])
            ax.bar(keys, share, bottom=bottom, label="root" if d == 0 else f"depth {d}")
            bottom += share
        ax.set_title(f"{method}: answers per tree level")
        ax.set_xlabel("accuracy target")
    axes[0].set_ylabel("share of answers")
    axes[1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    p2 = out / "hedging_levels.png"
    fig.savefig(p2, dpi=120)
    plt.close(fig)
    paths = [p1, p2]
    cmp = summary.get("darts_vs_backoff", {})
    if cmp.get("bootstrap") and cmp.get("calibrated_world"):
        paths.append(_plot_darts_vs_backoff(plt, cmp, out / "hedging_darts_vs_backoff.png"))
    return paths


def _plot_darts_vs_backoff(plt: Any, cmp: dict[str, Any], path: Path) -> Path:
    """Per target: the observed DARTS − back-off gap with its bootstrap interval, next to what
    a calibrated model would show on a split this size (expected ± 2 sd)."""
    boot, world = cmp["bootstrap"]["targets"], cmp["calibrated_world"]["targets"]
    keys = [k for k in boot if k in world and "sd" in world[k]]
    x = np.arange(len(keys))
    fig, ax = plt.subplots(figsize=(7.5, 4))
    exp = np.array([world[k]["expected"] for k in keys])
    sd = np.array([world[k]["sd"] for k in keys])
    ax.errorbar(x - 0.1, exp, yerr=2 * sd, fmt="s", color="C7", capsize=4,
                label="calibrated world: expected ± 2 sd of one split")
    obs = np.array([boot[k]["diff"] for k in keys])
    lo = np.array([boot[k]["ci95"][0] for k in keys])
    hi = np.array([boot[k]["ci95"][1] for k in keys])
    ax.errorbar(x + 0.1, obs, yerr=[obs - lo, hi - obs], fmt="o", color="C0", capsize=4,
                label="observed, paired-bootstrap 95 % interval")
    ax.axhline(0.0, color="k", lw=0.8)
    ax.set_xticks(x, keys)
    ax.set_xlabel("accuracy target")
    ax.set_ylabel("DARTS − back-off mean gain (bits)")
    ax.set_title("DARTS vs back-off at equal realised accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
