"""Would a finer calibration than one temperature let DARTS pull ahead of back-off? Not a test.

DARTS is only as good as its node probabilities (``docs/hedging.md``, "What DARTS ≥ back-off …
can mean"). This fits three recalibrations of the served probabilities on the validation split
and measures, on calibration + test photos, the log-loss (leaf and node level) and DARTS − back-off
mean information gain at equal realised accuracy at each report target:

* ``depth-exponent (leaf)`` / ``(node)``: each internal node's children probabilities raised to a
  per-depth power and renormalised (root and depth-1 splits; the leaf split is the temperature),
  fitted by leaf log-loss or by the summed log-loss of every "is the truth under v" event;
* ``vector``: a power on the probabilities plus a per-class bias (lightly L2-regularised).

Reads probabilities saved by ``bench/compare_models.py --save-probs`` (command in
``bench/darts_vs_backoff.py``)::

    .venv/bin/python bench/hedging_recalibration.py --model models/2026-11-27-lite0 \\
        --fit runs/probs/2026-11-27-lite0_val.npz runs/probs/2026-11-27-lite0_{cal,test}.npz

``--reliability`` first prints, per inner node, how often the truth is under it against P(node)
(e.g. ``... --reliability --fit runs/probs/2026-11-27-lite0_val.npz runs/probs/2026-11-27-lite0_test.npz``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

from shared.hedging.darts import TreeArrays, node_probabilities, tree_arrays
from services.trainer.evaluation.comparison import bootstrap_gain_difference
from shared.model_card import ModelCard
from shared.taxonomy import load_taxonomy


def depth_exponent(p: np.ndarray, arrays: TreeArrays, beta: np.ndarray) -> np.ndarray:
    """P'(child | v) ∝ P(child)^beta[depth(v)]; leaf probabilities are the products down the tree."""
    node_p = node_probabilities(p, arrays.leaf_matrix)
    log_p = np.log(np.clip(node_p, 1e-300, None))
    log_q = np.zeros_like(node_p)
    for depth in range(1, int(arrays.depth.max()) + 1):
        for v in np.nonzero(arrays.depth == depth)[0]:
            parent = arrays.parent[v]
            siblings = np.nonzero(arrays.parent == parent)[0]
            b = beta[arrays.depth[parent]] if arrays.depth[parent] < len(beta) else 1.0
            log_q[:, v] = log_q[:, parent] + b * log_p[:, v] - np.logaddexp.reduce(b * log_p[:, siblings], axis=1)
    q = np.exp(log_q[:, arrays.leaf_node])
    return q / q.sum(axis=1, keepdims=True)


def vector_scaling(p: np.ndarray, w: np.ndarray) -> np.ndarray:
    z = np.log(np.clip(p, 1e-300, None)) * w[0] + w[1:]
    q = np.exp(z - z.max(axis=1, keepdims=True))
    return q / q.sum(axis=1, keepdims=True)


def leaf_nll(q: np.ndarray, y: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(q[np.arange(len(y)), y], 1e-300, None))))


def node_nll(q: np.ndarray, y: np.ndarray, arrays: TreeArrays) -> float:
    """Summed log-loss of the events "the truth is under v" over inner nodes (root excluded)."""
    node_p = np.clip(node_probabilities(q, arrays.leaf_matrix), 1e-12, 1 - 1e-12)
    inner = ~arrays.is_leaf
    inner[0] = False
    truth = arrays.leaf_mask[:, y].T[:, inner]
    return float(-np.mean(np.sum(np.where(truth, np.log(node_p[:, inner]), np.log(1 - node_p[:, inner])), axis=1)))


def print_node_reliability(probs: np.ndarray, labels: np.ndarray, taxonomy, arrays: TreeArrays) -> None:
    """For each inner node: photos binned by P(node), mean P vs how often the truth is under it."""
    node_p = node_probabilities(probs, arrays.leaf_matrix)
    print("node reliability (bins with ≥ 5 photos): node [bin) n mean-P share-truly-under")
    for v, name in enumerate(taxonomy.node_names):
        if v == 0 or arrays.is_leaf[v]:
            continue
        truth = arrays.leaf_mask[v][labels]
        for lo, hi in ((0.5, 0.8), (0.8, 0.9), (0.9, 0.97), (0.97, 0.995)):
            m = (node_p[:, v] >= lo) & (node_p[:, v] < hi)
            if m.sum() >= 5:
                print(f"  {name:12s} [{lo}, {hi}) n={m.sum():3d}  {node_p[m, v].mean():.3f}  {truth[m].mean():.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True, help="model version dir (its calibration's rewards)")
    ap.add_argument("--fit", type=Path, required=True, help="npz the recalibrations are fitted on (validation)")
    ap.add_argument("--boot", type=int, default=200)
    ap.add_argument("--reliability", action="store_true", help="also print each inner node's reliability bins")
    ap.add_argument("measure", nargs="+", type=Path, help="npz files they are measured on")
    args = ap.parse_args()
    taxonomy = load_taxonomy()
    arrays = tree_arrays(taxonomy)
    calibration = ModelCard.load(args.model).calibration
    fit = np.load(args.fit)
    measured = [np.load(p) for p in args.measure]
    probs = np.concatenate([d["probs"] for d in measured])
    labels = np.concatenate([d["labels"] for d in measured])
    n_classes = probs.shape[1]

    def fitted(loss: Callable[[np.ndarray], float], x0: np.ndarray, method: str) -> np.ndarray:
        return minimize(loss, x0, method=method).x

    fp, fy = fit["probs"], fit["labels"]
    b_leaf = fitted(lambda b: leaf_nll(depth_exponent(fp, arrays, np.r_[b, 1.0]), fy), np.ones(2), "Nelder-Mead")
    b_node = fitted(lambda b: node_nll(depth_exponent(fp, arrays, np.r_[b, 1.0]), fy, arrays), np.ones(2), "Nelder-Mead")
    w = fitted(lambda w: leaf_nll(vector_scaling(fp, w), fy) + 1e-3 * float(np.sum(w[1:] ** 2)),
               np.r_[1.0, np.zeros(n_classes)], "L-BFGS-B")
    variants: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "served (one temperature)": lambda p: p,
        f"depth-exponent (leaf) {np.round(b_leaf, 2)}": lambda p: depth_exponent(p, arrays, np.r_[b_leaf, 1.0]),
        f"depth-exponent (node) {np.round(b_node, 2)}": lambda p: depth_exponent(p, arrays, np.r_[b_node, 1.0]),
        "vector scaling": lambda p: vector_scaling(p, w),
    }
    if args.reliability:
        print_node_reliability(probs, labels, taxonomy, arrays)
    print(f"fitted on {len(fy)} photos ({args.fit.name}); measured on {len(labels)} "
          f"({', '.join(p.name for p in args.measure)}); DARTS − back-off in bits at equal realised accuracy")
    for name, recalibrate in variants.items():
        q = recalibrate(probs)
        boot = bootstrap_gain_difference(q, labels, taxonomy, calibration, n_boot=args.boot)
        diffs = "  ".join(f"{k}: {v['diff']:+.3f}" for k, v in boot["targets"].items())
        print(f"{name:32s} leaf NLL {leaf_nll(q, labels):.4f}  node NLL {node_nll(q, labels, arrays):.4f}  "
              f"top-1 {(q.argmax(1) == labels).mean():.3f}  |  {diffs}")


if __name__ == "__main__":
    main()
