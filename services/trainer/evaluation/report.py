"""Evaluating the hedger on a labelled split: the ``hedged`` object, curves and plots (the DARTS vs
back-off comparison that reads these curves is in ``comparison.py``).

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

from shared.hedging.calibration import Calibration, lambda_for
from shared.hedging.darts import DartsPath, TreeArrays, answer_gain, darts_path, is_correct, node_probabilities, path_choice, tree_arrays
from shared.taxonomy import Taxonomy

__all__ = [
    "REPORT_TARGETS",
    "hedged_summary",
    "operating_curves",
    "write_hedging_plots",
    "backoff_choice",
    "flat_choice",
    "sweep_grids",
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


def sweep_grids(probs: np.ndarray, true_leaf: np.ndarray | None, taxonomy: Taxonomy,
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
    Every operating point of every method is on its curve (exact grids, ``sweep_grids``)."""
    node_p, y, arrays, path, lams, thr = sweep_grids(probs, true_leaf, taxonomy, calibration, max_points)

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

    from services.trainer.evaluation.plots import save_figure

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
    p1 = save_figure(fig, out / "hedging_accuracy_vs_gain.png", dpi=120)

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
    p2 = save_figure(fig, out / "hedging_levels.png", dpi=120)
    paths = [p1, p2]
    cmp = summary.get("darts_vs_backoff", {})
    if cmp.get("bootstrap") and cmp.get("calibrated_world"):
        paths.append(_plot_darts_vs_backoff(plt, cmp, out / "hedging_darts_vs_backoff.png"))
    return paths


def _plot_darts_vs_backoff(plt: Any, cmp: dict[str, Any], path: Path) -> Path:
    """Per target: the observed DARTS − back-off gap with its bootstrap interval, next to what
    a calibrated model would show on a split this size (expected ± 2 sd)."""
    from services.trainer.evaluation.plots import save_figure

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
    save_figure(fig, path, dpi=120)
    return path
