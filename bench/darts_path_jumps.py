"""How often plain DARTS's answer jumps to a sibling branch as λ grows (not a test).

A jump is a λ where the plain choice is not the running common ancestor of the choices so far,
i.e. where per-photo correctness can go right → wrong → right (docs/hedging.md). Synthetic
Dirichlet leaf probabilities over the real taxonomy; smaller α = more peaked, like a trained net.

    .venv/bin/python bench/darts_path_jumps.py [--n 20000]
"""

from __future__ import annotations

import argparse

import numpy as np

from shared.hedging.darts import darts_path, info_gain_rewards, node_probabilities, tree_arrays
from shared.taxonomy import load_taxonomy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    taxonomy = load_taxonomy()
    arrays = tree_arrays(taxonomy)
    rewards = info_gain_rewards(taxonomy)
    rng = np.random.default_rng(args.seed)
    print("alpha   photos whose DARTS path jumps to a sibling branch")
    for alpha in (0.05, 0.1, 0.3, 1.0):
        probs = rng.dirichlet(np.full(arrays.n_leaves, alpha), size=args.n)
        path = darts_path(node_probabilities(probs, arrays.leaf_matrix), rewards, arrays.lca)
        jumps = (path.nodes != path.nested).any(axis=1).mean()
        print(f"{alpha:<6}  {100 * jumps:.1f} %")


if __name__ == "__main__":
    main()
