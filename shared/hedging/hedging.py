"""Serving: leaf probabilities + accuracy target → an explained :class:`HedgedAnswer`.

A :class:`Hedger` is built once per (taxonomy, calibration) — arrays, λ tables and the
pre-made ``NodeRef``s of every node and path — so that a request only pays for a (V×L)
product, a short walk along the DARTS path and the answer's pydantic objects.
:func:`hedge` / :func:`hedge_batch` are the functional entry points; they reuse a cached
Hedger when given the same taxonomy and calibration objects again.

Methods: ``"crc"`` (default) answers the nested node N(λ) with λ from conformal risk control;
``"darts"`` answers plain DARTS c(λ) with the paper's calibration. See ``calibration.py``.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any

import numpy as np

from shared.hedging.calibration import METHODS, Calibration, validate_target
from shared.hedging.darts import _P_TOL, _TIE_RTOL, choose, darts_path, tree_arrays
from shared.hedging.errors import HedgeInputError
from shared.schemas import HedgedAnswer, NodeRef, ScoredNode
from shared.taxonomy import Taxonomy

__all__ = ["Hedger", "get_hedger", "hedge", "hedge_batch", "check_leaf_probs", "N_ALTERNATIVES"]

N_ALTERNATIVES = 3  # "top few" more specific nodes shown under the answer
_SUM_TOL = 1e-3  # a probability vector may be off by float32 softmax rounding, not more
_CACHE_SIZE = 16


def check_leaf_probs(leaf_probs: Any, n_leaves: int) -> np.ndarray:
    """Validate and renormalise leaf probabilities: (L,) or (N, L) → float64 (N, L) rows summing to 1.

    Raises :class:`HedgeInputError` (a ValueError) naming the problem: wrong length, NaN/inf,
    negative entries, or rows that do not sum to ~1 (likely logits, not probabilities).
    """
    try:
        arr = np.asarray(leaf_probs, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise HedgeInputError(f"leaf probabilities must be numbers: {exc}") from None
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != n_leaves:
        raise HedgeInputError(
            f"expected {n_leaves} leaf probabilities per photo (one per taxonomy leaf), got shape {np.shape(leaf_probs)}"
        )
    if not np.all(np.isfinite(arr)):
        raise HedgeInputError("leaf probabilities contain NaN or inf")
    if np.any(arr < -1e-6):
        raise HedgeInputError("leaf probabilities must be ≥ 0 (got a negative entry: logits?)")
    sums = arr.sum(axis=1)
    if np.any(np.abs(sums - 1.0) > _SUM_TOL):
        bad = float(sums[np.argmax(np.abs(sums - 1.0))])
        raise HedgeInputError(f"leaf probabilities must sum to 1 (±{_SUM_TOL}), got {bad:.6g}")
    return np.clip(arr, 0.0, None) / sums[:, None]


class Hedger:
    """Everything precomputed for one (taxonomy, calibration); thread-safe (read-only after init)."""

    def __init__(self, taxonomy: Taxonomy, calibration: Calibration | dict[str, Any]) -> None:
        cal = calibration if isinstance(calibration, Calibration) else Calibration.model_validate(calibration)
        cal.check_taxonomy(taxonomy)
        self.taxonomy = taxonomy
        self.calibration = cal
        self.arrays = tree_arrays(taxonomy)
        self.rewards = np.asarray(cal.rewards, dtype=np.float64)
        self.rewards.setflags(write=False)
        self._leaf_matrix_t = np.ascontiguousarray(self.arrays.leaf_matrix.T)
        self._targets = list(cal.targets)
        self._lam = {m: list(cal.lam[m]) for m in METHODS}  # type: ignore[index]
        names = taxonomy.node_names
        self._index = {n: i for i, n in enumerate(names)}
        nodes = [taxonomy.nodes[n] for n in names]
        self._refs = [NodeRef(name=n.name, display=n.display, icon=n.icon) for n in nodes]
        self._paths = [[self._refs[self._index[a]] for a in taxonomy.ancestors(n)] for n in names]
        anc = [set(taxonomy.ancestors(n)) for n in names]
        depth = self.arrays.depth
        self._descendants: list[list[int]] = [
            sorted((j for j in range(len(names)) if j != i and names[i] in anc[j]), key=lambda j: (-depth[j], j))
            for i in range(len(names))
        ]
        self._rewards_list: list[float] = self.rewards.tolist()
        self._lca_list: list[list[int]] = self.arrays.lca.tolist()
        self._v_range = range(len(names))

    # --- λ ----------------------------------------------------------------------------------
    def resolve(self, accuracy: Any, method: str | None = None) -> tuple[str, float, float]:
        """(method, λ, target) for a request; the λ of the smallest grid target ≥ the request."""
        target = validate_target(accuracy)
        m = self.calibration.default_method if method is None else method
        if m not in METHODS:
            raise HedgeInputError(f"method must be one of {METHODS} or None, got {method!r}")
        k = min(bisect_left(self._targets, target - 1e-9), len(self._targets) - 1)
        return m, self._lam[m][k], target

    # --- the core (no pydantic) -------------------------------------------------------------
    def node_probs(self, probs: np.ndarray) -> np.ndarray:
        """(N, L) validated leaf probabilities → (N, V) node probabilities."""
        return probs @ self._leaf_matrix_t

    def choose_nodes(self, node_probs: np.ndarray, lam: float, method: str) -> np.ndarray:
        """Chosen node index per photo at λ: nested N(λ) for crc, plain c(λ) for darts."""
        lam_max = self.calibration.lam_max
        if lam >= lam_max:
            return np.zeros(node_probs.shape[0], dtype=np.intp)
        if method == "darts":
            return choose(node_probs, lam, self.rewards)
        path = darts_path(node_probs, self.rewards, self.arrays.lca, lam_max, stop=lam)
        return path.nested[:, -1]

    def choose_batch(self, leaf_probs: Any, accuracy: float, method: str | None = None) -> np.ndarray:
        """Vectorised core: (N, L) leaf probabilities → (N,) chosen node indices."""
        m, lam, _ = self.resolve(accuracy, method)
        probs = check_leaf_probs(leaf_probs, self.arrays.n_leaves)
        return self.choose_nodes(self.node_probs(probs), lam, m)

    # --- explained answers ------------------------------------------------------------------
    def _answer(self, node: int, p: Any, target: float, method: str, lam: float) -> HedgedAnswer:
        ref = self._refs[node]
        alternatives: list[ScoredNode] = []
        # descendants are pre-sorted deepest first, so a stable sort by probability keeps
        # "most probable first, the more specific on ties"
        desc = sorted(self._descendants[node], key=lambda j: -p[j])
        for j in desc[:N_ALTERNATIVES]:
            q = float(p[j])
            if q <= 0.0:
                break
            r = self._refs[j]
            alternatives.append(ScoredNode(name=r.name, display=r.display, icon=r.icon, probability=min(q, 1.0)))
        return HedgedAnswer(
            node=ScoredNode(name=ref.name, display=ref.display, icon=ref.icon, probability=min(max(float(p[node]), 0.0), 1.0)),
            path=self._paths[node],
            alternatives=alternatives,
            accuracy_target=target,
            method=method,  # type: ignore[arg-type]
            lam=float(lam),
            info_gain=float(self.rewards[node]),
        )

    def hedge(self, leaf_probs: Any, accuracy: float, method: str | None = None) -> HedgedAnswer:
        """One photo: (L,) leaf probabilities → the hedged, explained answer.

        Same choice as :meth:`hedge_batch` (tests check it), but walked in plain Python over
        the V nodes: for one photo that beats a dozen numpy calls on 26-element arrays.
        """
        m, lam, target = self.resolve(accuracy, method)
        probs = self._check_one(leaf_probs)
        p = (probs @ self._leaf_matrix_t).tolist()
        node = self._choose_one(p, lam, m)
        return self._answer(node, p, target, m, lam)

    def choose_one(self, leaf_probs: Any, accuracy: float, method: str | None = None) -> int:
        """Single-photo core without the answer object (what the latency bench times)."""
        m, lam, _ = self.resolve(accuracy, method)
        p = (self._check_one(leaf_probs) @ self._leaf_matrix_t).tolist()
        return self._choose_one(p, lam, m)

    def _check_one(self, leaf_probs: Any) -> np.ndarray:
        """Fast path of :func:`check_leaf_probs` for one (L,) vector (a non-finite entry makes
        the sum non-finite, so one sum checks NaN/inf and normalisation at once)."""
        try:
            arr = np.asarray(leaf_probs, dtype=np.float64)
        except (TypeError, ValueError):
            arr = None
        if arr is None or arr.shape != (self.arrays.n_leaves,):
            checked = check_leaf_probs(leaf_probs, self.arrays.n_leaves)  # raises the precise error
            if checked.shape[0] != 1:
                raise HedgeInputError(f"hedge() takes one photo's probabilities; use hedge_batch for {checked.shape[0]}")
            return checked[0]
        total = float(arr.sum())
        if not (abs(total - 1.0) <= _SUM_TOL) or float(arr.min()) < 0.0:
            return check_leaf_probs(arr, self.arrays.n_leaves)[0]  # raises the precise error or clips
        return arr / total

    def _choose_one(self, p: list[float], lam: float, method: str) -> int:
        """darts: argmax (r+λ)P; crc: running LCA along the DARTS path up to λ. Tie rules as darts.py."""
        lam_max = self.calibration.lam_max
        if lam >= lam_max:
            return 0
        rewards = self._rewards_list
        v_range = self._v_range
        if method == "darts":
            return _pick([(r + lam) * q for r, q in zip(rewards, p)], p)
        a = [r * q for r, q in zip(rewards, p)]
        cur = _pick(a, p)
        run = cur
        lam_cur = 0.0
        lca = self._lca_list
        inf = float("inf")
        while True:
            pc, ac = p[cur], a[cur]
            cross = [inf] * len(p)
            nb = inf
            for v in v_range:
                dp = p[v] - pc
                if dp > _P_TOL:
                    x = (ac - a[v]) / dp
                    if x < lam_cur:
                        x = lam_cur
                    cross[v] = x
                    if x < nb:
                        nb = x
            if not nb < lam_max or nb > lam:
                return run
            thr = nb * (1.0 + _TIE_RTOL) + 1e-300
            best_p = -1.0
            for v in v_range:
                if cross[v] <= thr and p[v] >= best_p:
                    cur, best_p = v, p[v]
            run = lca[run][cur]
            lam_cur = nb

    def hedge_batch(self, leaf_probs: Any, accuracy: float, method: str | None = None) -> list[HedgedAnswer]:
        """N photos, one target: vectorised choice, then one answer object per photo."""
        m, lam, target = self.resolve(accuracy, method)
        probs = check_leaf_probs(leaf_probs, self.arrays.n_leaves)
        p = self.node_probs(probs)
        nodes = self.choose_nodes(p, lam, m)
        return [self._answer(int(v), row, target, m, lam) for v, row in zip(nodes.tolist(), p.tolist())]


def _pick(scores: list[float], p: list[float]) -> int:
    """Pure-Python twin of ``darts._argmax_ties``: max score (relative tie 1e-10), then max
    probability, then the later (deeper) node."""
    best = max(scores)
    thr = best - _TIE_RTOL * max(abs(best), 1.0)
    chosen, best_p = 0, -1.0
    for v, (s, q) in enumerate(zip(scores, p)):
        if s >= thr and q >= best_p:
            chosen, best_p = v, q
    return chosen


_cache: dict[tuple[int, int], tuple[Taxonomy, object, Hedger]] = {}


def get_hedger(taxonomy: Taxonomy, calibration: Calibration | dict[str, Any]) -> Hedger:
    """The cached Hedger for these exact objects (identity, not equality: hashing a calibration
    dict on every request would cost more than the hedging). Pass the same objects again —
    e.g. the loaded model card's ``calibration`` — to hit the cache."""
    key = (id(taxonomy), id(calibration))
    hit = _cache.get(key)
    if hit is not None and hit[0] is taxonomy and hit[1] is calibration:
        return hit[2]
    hedger = Hedger(taxonomy, calibration)
    if len(_cache) >= _CACHE_SIZE:
        _cache.pop(next(iter(_cache)))
    _cache[key] = (taxonomy, calibration, hedger)  # holding both keeps their ids unique
    return hedger


def hedge(
    leaf_probs_1d: Any,
    taxonomy: Taxonomy,
    calibration: Calibration | dict[str, Any],
    accuracy: float,
    method: str | None = None,
) -> HedgedAnswer:
    """Hedge one photo at ``accuracy`` ∈ [0.5, 0.999] with ``method`` ('crc' default, or 'darts')."""
    return get_hedger(taxonomy, calibration).hedge(leaf_probs_1d, accuracy, method)


def hedge_batch(
    leaf_probs: Any,
    taxonomy: Taxonomy,
    calibration: Calibration | dict[str, Any],
    accuracy: float,
    method: str | None = None,
) -> list[HedgedAnswer]:
    """Hedge N photos (N, L) at one target; one HedgedAnswer per photo."""
    return get_hedger(taxonomy, calibration).hedge_batch(leaf_probs, accuracy, method)
