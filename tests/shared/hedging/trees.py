"""Random taxonomies and probability vectors for the hedger's property tests."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from shared.taxonomy import Taxonomy

__all__ = ["taxonomies", "prob_vectors", "make_taxonomy", "FOUR_LEAF", "JUMP_TREE"]


def make_taxonomy(shape: list) -> Taxonomy:
    """Build a Taxonomy from a nested list: a leaf is ``None``, an inner node a list of children.

    Names are ``n0, n1, …`` in depth-first order (the root is ``garment``).
    """
    counter = iter(range(10_000))

    def node(spec: list | None) -> dict:
        name = f"n{next(counter)}"
        raw: dict = {"name": name, "display": name.upper(), "icon": "*"}
        if spec is None:
            raw["labels"] = [f"label-{name}"]
        else:
            raw["children"] = [node(child) for child in spec]
        return raw

    root = {"name": "garment", "display": "Garment", "icon": "*", "children": [node(c) for c in shape]}
    return Taxonomy({"version": "test", "root": root})


def _shapes(depth: int) -> st.SearchStrategy:
    leaf = st.none()
    if depth == 0:
        return leaf
    return st.one_of(leaf, st.lists(_shapes(depth - 1), min_size=1, max_size=4))


def _n_leaves(shape: list | None) -> int:
    return 1 if shape is None else sum(_n_leaves(c) for c in shape)


@st.composite
def taxonomies(draw: st.DrawFn, max_depth: int = 3) -> Taxonomy:
    """Random trees of depth ≤ max_depth+1 with ≥ 2 leaves, single-child chains included."""
    shape = draw(st.lists(_shapes(max_depth), min_size=1, max_size=4).filter(lambda s: _n_leaves(s) >= 2))
    return make_taxonomy(shape)


@st.composite
def prob_vectors(draw: st.DrawFn, n_leaves: int) -> np.ndarray:
    """Probability vectors from peaked to flat, some with exact zeros (ties are the hard case)."""
    seed = draw(st.integers(0, 2**32 - 1))
    alpha = draw(st.sampled_from([0.05, 0.3, 1.0, 5.0]))
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.full(n_leaves, alpha))
    if draw(st.booleans()):
        p[rng.random(n_leaves) < 0.3] = 0.0
        if p.sum() == 0:
            p[rng.integers(n_leaves)] = 1.0
    return p / p.sum()


# root → A{a1, a2}, B{b1, b2}: node order '', A, a1, a2, B, b1, b2
FOUR_LEAF = make_taxonomy([[None, None], [None, None]])
# root → U{u1..u4}, V{v1..v3}, w: plain DARTS can jump from u1 to the sibling branch V
JUMP_TREE = make_taxonomy([[None, None, None, None], [None, None, None], None])
