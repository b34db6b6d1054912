"""DARTS core (Deng, Krause, Berg, Fei-Fei, "Hedging your bets", CVPR 2012), numpy only.

Everything here is a pure function, so that calibration, evaluation and serving share one
implementation and the property tests exercise the exact code that answers requests: the path
walk (:func:`walk`) and the tie rule (:func:`pick`) exist once, per photo in plain Python (one
photo's ~26 nodes cost less in Python than in numpy calls); :func:`darts_path` and :func:`choose`
run them over N photos.

Notation: ``P`` is the (N, V) matrix of node probabilities (a node's probability is the sum of
the leaf probabilities under it), ``r`` the (V,) node rewards, ``λ ≥ 0`` the hedging knob.
DARTS answers ``argmax_v (r_v + λ) · P_v``.

Facts used throughout (proved in ``docs/hedging.md``):

* as λ grows, the chosen node's probability never falls and its reward never rises;
* the choice as a function of λ is piecewise constant, with at most V pieces: the *DARTS path*
  ``c(λ)`` (:func:`darts_path`) — computed exactly, no grid;
* the path may jump to a *sibling branch* (e.g. leaf ``a1`` → node ``B``), so per-photo
  correctness of plain DARTS is **not** monotone in λ.  The *nested* answer
  ``N(λ) = LCA{c(λ') : 0 ≤ λ' ≤ λ}`` (running lowest common ancestor along the path) is
  nested in λ, so its correctness is monotone — which conformal risk control needs.

Ties (equal scores within a relative 1e-10) are broken toward the more probable node, then the
deeper one: that makes ``c(λ)`` right-continuous (at a breakpoint the node that wins just after
it is chosen) and sends a one-hot vector to its leaf even along single-child chains.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import numpy as np

from shared.taxonomy import Taxonomy

__all__ = [
    "LAM_MAX",
    "TreeArrays",
    "tree_arrays",
    "node_probabilities",
    "info_gain_rewards",
    "prior_rewards",
    "pick",
    "choose",
    "Walk",
    "walk",
    "DartsPath",
    "darts_path",
    "path_choice",
    "is_correct",
    "answer_gain",
    "expected_reward",
]

#: λ at and above which every answer is the root. Plays the role of λ = ∞ while staying a
#: finite, JSON-safe number: a non-root node v only beats the root for λ < r_v P_v / (1 − P_v),
#: so below this cap only nodes with P_v > 1 − ~4e-6 could still win. The cap is what makes
#: "always right" reachable (a CRC requirement) even when the model puts probability exactly
#: 1.0 on a wrong branch.
LAM_MAX: float = 1e6

_TIE_RTOL = 1e-10  # scores closer than this (relative) are ties
_P_TOL = 1e-12  # probability increase that counts as "larger" when walking the path


@dataclass(frozen=True)
class TreeArrays:
    """Per-taxonomy arrays, built once: everything the core needs about the tree.

    ``lca[u, v]`` is the lowest common ancestor of nodes u and v (precomputed so that the
    nested answer costs one table lookup per path step).
    """

    leaf_matrix: np.ndarray  # (V, L) float64 0/1
    leaf_mask: np.ndarray  # (V, L) bool
    parent: np.ndarray  # (V,) int, -1 for the root
    depth: np.ndarray  # (V,) int
    is_leaf: np.ndarray  # (V,) bool
    leaf_node: np.ndarray  # (L,) node index of each leaf (model output order)
    lca: np.ndarray  # (V, V) int
    info_gain: np.ndarray  # (V,) bits

    @property
    def n_nodes(self) -> int:
        return int(self.leaf_matrix.shape[0])

    @property
    def n_leaves(self) -> int:
        return int(self.leaf_matrix.shape[1])


@lru_cache(maxsize=32)
def tree_arrays(taxonomy: Taxonomy) -> TreeArrays:
    """Build (and cache per Taxonomy object) the arrays of :class:`TreeArrays`."""
    names = taxonomy.node_names
    index = {n: i for i, n in enumerate(names)}
    v = len(names)
    parent = np.array([-1 if taxonomy.nodes[n].parent is None else index[taxonomy.nodes[n].parent] for n in names])
    depth = np.array([taxonomy.nodes[n].depth for n in names])
    leaf_matrix = np.asarray(taxonomy.leaf_matrix, dtype=np.float64)
    # ancestor-or-self sets, then LCA = deepest common member
    anc = np.zeros((v, v), dtype=bool)  # anc[u, w]: w is an ancestor-or-self of u
    for i, n in enumerate(names):
        for a in taxonomy.ancestors(n):
            anc[i, index[a]] = True
    common = anc[:, None, :] & anc[None, :, :]  # (V, V, V)
    lca = np.argmax(np.where(common, depth[None, None, :], -1), axis=2)
    arrays = TreeArrays(
        leaf_matrix=leaf_matrix,
        leaf_mask=leaf_matrix > 0.5,
        parent=parent,
        depth=depth,
        is_leaf=leaf_matrix.sum(axis=1) == 1.0,
        leaf_node=np.array([index[leaf] for leaf in taxonomy.leaves]),
        lca=lca,
        info_gain=np.asarray(taxonomy.info_gain, dtype=np.float64),
    )
    # a single-child parent also has one leaf under it; is_leaf must mean "a leaf node"
    is_leaf = np.zeros(v, dtype=bool)
    is_leaf[arrays.leaf_node] = True
    object.__setattr__(arrays, "is_leaf", is_leaf)
    for a in (arrays.leaf_matrix, arrays.leaf_mask, parent, depth, is_leaf, arrays.leaf_node, lca, arrays.info_gain):
        a.setflags(write=False)
    return arrays


def node_probabilities(leaf_probs: np.ndarray, leaf_matrix: np.ndarray) -> np.ndarray:
    """Node probability = sum of the leaf probabilities under it. (N, L) → (N, V); (L,) → (V,)."""
    return np.asarray(leaf_probs, dtype=np.float64) @ leaf_matrix.T


def info_gain_rewards(taxonomy: Taxonomy) -> np.ndarray:
    """The paper's reward: log2(#leaves) − log2(#leaves under the node), in bits (root = 0)."""
    return np.asarray(taxonomy.info_gain, dtype=np.float64).copy()


def prior_rewards(taxonomy: Taxonomy, class_counts: np.ndarray | list[float], smoothing: float = 1.0) -> np.ndarray:
    """Prior-weighted reward: −log2(prior mass of the node), priors = training-class frequencies.

    Why: under uniform info gain, naming a rare leaf is worth the same as naming a common one;
    with priors, the reward is the information actually conveyed about a typical photo.
    ``smoothing`` (add-k on counts) keeps zero-count classes at a finite reward and every
    parent strictly below its children. The root's mass is 1, so its reward is 0.
    """
    counts = np.asarray(class_counts, dtype=np.float64)
    if counts.shape != (len(taxonomy.leaves),):
        raise ValueError(f"class_counts must have one entry per leaf ({len(taxonomy.leaves)}), got shape {counts.shape}")
    if not np.all(np.isfinite(counts)) or np.any(counts < 0) or smoothing < 0:
        raise ValueError("class_counts must be finite and non-negative, smoothing ≥ 0")
    counts = counts + smoothing
    if counts.sum() <= 0:
        raise ValueError("class_counts sum to 0: give counts or a positive smoothing")
    mass = tree_arrays(taxonomy).leaf_matrix @ (counts / counts.sum())
    with np.errstate(divide="ignore"):
        rewards = -np.log2(mass)
    rewards[0] = 0.0  # exact, whatever the rounding of the sum
    if not np.all(np.isfinite(rewards)):
        raise ValueError("a node has zero prior mass: use smoothing > 0")
    return np.maximum(rewards, 0.0)


def pick(scores: Sequence[float], probs: Sequence[float]) -> int:
    """Index of the largest score; ties (relative 1e-10) → larger probability, then the later node.

    The one tie rule of DARTS, used by :func:`choose` and :func:`walk`. Depth-first node order
    puts a descendant after its ancestors, so "the last among equal (score, probability)" is the
    deepest node of a single-child chain. Plain Python on lists: for the ~26 nodes of one photo it
    is several times faster than numpy's per-call overhead.
    """
    best = max(scores)
    thr = best - _TIE_RTOL * max(abs(best), 1.0)
    chosen, best_p = 0, -1.0
    for v, (s, q) in enumerate(zip(scores, probs)):
        if s >= thr and q >= best_p:
            chosen, best_p = v, q
    return chosen


def choose(node_probs: np.ndarray, lam: float | np.ndarray, rewards: np.ndarray) -> np.ndarray:
    """Plain DARTS: ``argmax_v (r_v + λ) P_v`` per photo (no λ cap). (N, V) → (N,) node indices.

    ``lam`` is a scalar or one value per photo. Accepts a single (V,) vector too (→ 0-d array).
    """
    p = np.asarray(node_probs, dtype=np.float64)
    lam_arr = np.asarray(lam, dtype=np.float64)
    if np.any(lam_arr < 0) or np.any(np.isnan(lam_arr)):
        raise ValueError(f"λ must be ≥ 0, got {lam}")
    if p.ndim == 2 and lam_arr.ndim == 1:
        lam_arr = lam_arr[:, None]
    scores = (rewards + lam_arr) * p
    if p.ndim == 1:
        return np.asarray(pick(scores.tolist(), p.tolist()), dtype=np.intp)
    return np.array([pick(s, q) for s, q in zip(scores.tolist(), p.tolist())], dtype=np.intp)


def expected_reward(node_probs: np.ndarray, rewards: np.ndarray) -> np.ndarray:
    """Expected reward r_v · P_v of answering each node: what λ = 0 maximises."""
    return np.asarray(node_probs) * rewards


class Walk(NamedTuple):
    """One photo's DARTS path as lists: ``nodes[s]`` is chosen from ``breaks[s]`` on, ``nested[s]``
    is the running LCA; ``capped``: the root still has to be appended at ``lam_max``."""

    nodes: list[int]
    breaks: list[float]
    nested: list[int]
    capped: bool


def walk(p: Sequence[float], a: Sequence[float], lca: Sequence[Sequence[int]], lam_max: float = LAM_MAX,
         stop: float = math.inf) -> Walk:
    """Walk one photo's DARTS choice as λ grows from 0, exactly (no λ grid): the one path walk.

    ``p`` are the node probabilities, ``a = r · p`` the lines' intercepts (score_v(λ) = a_v + λ p_v),
    ``lca`` the LCA table as nested lists. From the current node u (chosen on [λ_u, ·)), the next
    winner is the node v with larger probability whose line crosses u's first, at
    ``λ = (a_u − a_v) / (p_v − p_u)``; among simultaneous crossings the most probable wins
    (right-continuity). Each step strictly raises the probability, so there are at most V steps.
    The walk ends at the first breakpoint at or beyond ``lam_max`` or beyond ``stop`` (serving
    needs the answer at one λ only). Plain Python: a photo takes one to a few steps over ~26
    nodes, where numpy's per-call overhead would cost more than the arithmetic.
    """
    cur = pick(a, p)
    run, lam_cur = cur, 0.0
    nodes, breaks, nested = [cur], [0.0], [cur]
    inf = math.inf
    n_nodes = len(p)
    for _ in range(n_nodes):
        pc, ac = p[cur], a[cur]
        cross = [inf] * n_nodes
        nb = inf
        for v in range(n_nodes):
            dp = p[v] - pc
            if dp > _P_TOL:
                x = (ac - a[v]) / dp
                if x < lam_cur:
                    x = lam_cur
                cross[v] = x
                if x < nb:
                    nb = x
        if not nb < lam_max or nb > stop:
            break
        thr = nb * (1.0 + _TIE_RTOL) + 1e-300
        cur = pick([q if x <= thr else -1.0 for q, x in zip(p, cross)], p)
        run, lam_cur = lca[run][cur], nb
        nodes.append(cur)
        breaks.append(nb)
        nested.append(run)
    return Walk(nodes, breaks, nested, cur != 0 and lam_max <= stop)


class DartsPath(NamedTuple):
    """Per photo, the exact DARTS path over λ ∈ [0, λ_max], padded to S steps.

    ``nodes[i, s]`` is chosen for ``breaks[i, s] ≤ λ < breaks[i, s+1]``; ``breaks[:, 0] = 0``;
    unused steps have ``break = inf`` and repeat the last node. ``nested[i, s]`` is the running
    LCA of ``nodes[i, :s+1]``: the nested answer N(λ) on the same pieces.
    """

    nodes: np.ndarray  # (N, S) int
    breaks: np.ndarray  # (N, S) float
    nested: np.ndarray  # (N, S) int


def darts_path(
    node_probs: np.ndarray,
    rewards: np.ndarray,
    lca: np.ndarray,
    lam_max: float = LAM_MAX,
    stop: float | np.ndarray | None = None,
) -> DartsPath:
    """:func:`walk` for N photos, as padded arrays (what calibration and evaluation index into).

    Breakpoints at or beyond ``lam_max`` are dropped and the root is appended at ``lam_max``
    (the cap; see :data:`LAM_MAX`). ``stop`` (scalar or per photo) ends a photo's walk once its
    next breakpoint exceeds it.
    """
    p = np.atleast_2d(np.asarray(node_probs, dtype=np.float64))
    n = p.shape[0]
    stops = [math.inf] * n if stop is None else np.broadcast_to(np.asarray(stop, dtype=np.float64), (n,)).tolist()
    lca_rows = np.asarray(lca).tolist()
    walks = [walk(pr, ar, lca_rows, lam_max, st) for pr, ar, st in zip(p.tolist(), (p * rewards).tolist(), stops)]
    width = max((len(w.nodes) for w in walks), default=1) + any(w.capped for w in walks)
    nodes = np.empty((n, width), dtype=np.intp)
    nested = np.empty((n, width), dtype=np.intp)
    breaks = np.full((n, width), np.inf)
    for i, w in enumerate(walks):
        k = len(w.nodes)
        nodes[i, :k], nested[i, :k], breaks[i, :k] = w.nodes, w.nested, w.breaks
        if w.capped:  # the root from lam_max on
            nodes[i, k:], nested[i, k:], breaks[i, k] = 0, 0, lam_max
        else:  # padding repeats the last step
            nodes[i, k:], nested[i, k:] = w.nodes[-1], w.nested[-1]
    return DartsPath(nodes, breaks, nested)


def path_choice(path: DartsPath, lam: float | np.ndarray, nested: bool) -> np.ndarray:
    """The answer at λ read off a path: plain DARTS c(λ) or the nested N(λ). → (N,)."""
    lam_arr = np.asarray(lam, dtype=np.float64)
    if lam_arr.ndim == 0:
        lam_arr = np.full(path.breaks.shape[0], float(lam_arr))
    step = (path.breaks <= lam_arr[:, None]).sum(axis=1) - 1
    table = path.nested if nested else path.nodes
    return table[np.arange(table.shape[0]), step]


def is_correct(nodes: np.ndarray, true_leaf: np.ndarray, leaf_mask: np.ndarray) -> np.ndarray:
    """A node is right when it is the true leaf or one of its ancestors."""
    return leaf_mask[np.asarray(nodes), np.asarray(true_leaf)]


def answer_gain(nodes: np.ndarray, true_leaf: np.ndarray, leaf_mask: np.ndarray, gains: np.ndarray) -> np.ndarray:
    """Information gain credited per answer: the node's gain if right, 0 if wrong (as the paper)."""
    nodes = np.asarray(nodes)
    return np.where(is_correct(nodes, true_leaf, leaf_mask), gains[nodes], 0.0)
