"""Serving: probabilities + accuracy target → an explained :class:`HedgedAnswer`.

A :class:`Hedger` is built once per model version — (taxonomy, calibration, the model's class
order), arrays, λ tables and the pre-made ``NodeRef``s of every node and path — so that a request
only pays for a (C×V) product, a short walk along the DARTS path (``darts.walk``, the same walk
calibration and evaluation use) and the answer's pydantic objects. One photo and a batch take the
same per-photo code. :func:`hedge` / :func:`hedge_batch` are the functional entry points; they
reuse a cached Hedger when given the same taxonomy and calibration objects again.

Methods: ``"crc"`` (default) answers the nested node N(λ) with λ from conformal risk control;
``"darts"`` answers plain DARTS c(λ) with the paper's calibration. See ``calibration.py``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from shared.hedging.calibration import Calibration
from shared.hedging.darts import pick, tree_arrays, walk
from shared.hedging.errors import CalibrationError, HedgeInputError
from shared.schemas import ClassificationResult, HedgedAnswer, NodeRef, ScoredNode
from shared.taxonomy import Taxonomy

__all__ = ["Hedger", "get_hedger", "hedge", "hedge_batch", "check_leaf_probs", "N_ALTERNATIVES", "TOP_K"]

N_ALTERNATIVES = 3  # "top few" more specific nodes shown under the answer
TOP_K = 5  # leaf predictions listed in a result
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
            f"expected {n_leaves} leaf probabilities per photo (one per class), got shape {np.shape(leaf_probs)}"
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
    """Everything precomputed for one model version; thread-safe (read-only after init).

    ``classes`` is the model's output order (the card's ``classes``, leaves of ``taxonomy``; all
    leaves in taxonomy order by default): probabilities are taken in that order as they come from
    the network, and a leaf the model lacks simply has probability 0.
    """

    def __init__(self, taxonomy: Taxonomy, calibration: Calibration | dict[str, Any],
                 classes: list[str] | None = None) -> None:
        cal = calibration if isinstance(calibration, Calibration) else Calibration.model_validate(calibration)
        cal.check_taxonomy(taxonomy)
        classes = list(taxonomy.leaves if classes is None else classes)
        unknown = sorted(set(classes) - set(taxonomy.leaves))
        if unknown or len(set(classes)) != len(classes):
            raise CalibrationError(f"the model's classes must be distinct leaves of taxonomy {taxonomy.version}; "
                                   f"not leaves: {unknown}")
        self.taxonomy, self.calibration, self.classes = taxonomy, cal, classes
        self.arrays = tree_arrays(taxonomy)
        self.rewards = np.asarray(cal.rewards, dtype=np.float64)
        self.rewards.setflags(write=False)
        leaf_index = {leaf: j for j, leaf in enumerate(taxonomy.leaves)}
        # (C, V): class j's probability counts towards every node above its leaf
        self._class_matrix = np.ascontiguousarray(self.arrays.leaf_matrix[:, [leaf_index[c] for c in classes]].T)
        names = taxonomy.node_names
        nodes = [taxonomy.nodes[n] for n in names]
        index = {n: i for i, n in enumerate(names)}
        self._refs = [NodeRef(name=n.name, display=n.display, icon=n.icon) for n in nodes]
        self._paths = [[self._refs[index[a]] for a in taxonomy.ancestors(n)] for n in names]
        self._class_refs = [self._refs[index[c]] for c in classes]
        anc = [set(taxonomy.ancestors(n)) for n in names]
        depth = self.arrays.depth
        self._descendants: list[list[int]] = [
            sorted((j for j in range(len(names)) if j != i and names[i] in anc[j]), key=lambda j: (-depth[j], j))
            for i in range(len(names))
        ]
        self._rewards_list: list[float] = self.rewards.tolist()
        self._lca_list: list[list[int]] = self.arrays.lca.tolist()

    def resolve(self, accuracy: Any, method: str | None = None) -> tuple[str, float, float]:
        """(method, λ, target) for a request (:meth:`Calibration.lookup`)."""
        return self.calibration.lookup(accuracy, method)

    # --- validation: the one place probabilities are normalised -------------------------------
    def check(self, probs: Any) -> np.ndarray:
        """One photo's probabilities (C,), in class order → float64, validated, summing to 1.

        A non-finite entry makes the sum non-finite, so one sum checks NaN/inf and normalisation
        at once; anything unusual goes through :func:`check_leaf_probs` for the precise error.
        """
        try:
            arr = np.asarray(probs, dtype=np.float64)
        except (TypeError, ValueError):
            arr = None
        if arr is None or arr.shape != (len(self.classes),):
            checked = check_leaf_probs(probs, len(self.classes))  # raises the precise error
            if checked.shape[0] != 1:
                raise HedgeInputError(f"hedge() takes one photo's probabilities; use hedge_batch for {checked.shape[0]}")
            return checked[0]
        total = float(arr.sum())
        if not (abs(total - 1.0) <= _SUM_TOL) or float(arr.min()) < 0.0:
            return check_leaf_probs(arr, len(self.classes))[0]  # raises the precise error or clips
        return arr / total

    # --- the choice: one photo at a time, batch or not ---------------------------------------
    def _choose(self, p: list[float], lam: float, method: str) -> int:
        """darts: argmax (r+λ)P; crc: the nested answer, the running LCA along the path up to λ."""
        lam_max = self.calibration.lam_max
        if lam >= lam_max:
            return 0
        rewards = self._rewards_list
        if method == "darts":
            return pick([(r + lam) * q for r, q in zip(rewards, p)], p)
        return walk(p, [r * q for r, q in zip(rewards, p)], self._lca_list, lam_max, stop=lam).nested[-1]

    def node_probs(self, probs: np.ndarray) -> np.ndarray:
        """Validated probabilities (C,) or (N, C) → node probabilities (V,) or (N, V)."""
        return probs @ self._class_matrix

    def choose_one(self, probs: Any, accuracy: float, method: str | None = None) -> int:
        """Single-photo core without the answer object (what the latency bench times)."""
        m, lam, _ = self.resolve(accuracy, method)
        return self._choose(self.node_probs(self.check(probs)).tolist(), lam, m)

    def choose_batch(self, probs: Any, accuracy: float, method: str | None = None) -> np.ndarray:
        """(N, C) probabilities → (N,) chosen node indices."""
        m, lam, _ = self.resolve(accuracy, method)
        p = self.node_probs(check_leaf_probs(probs, len(self.classes))).tolist()
        return np.array([self._choose(row, lam, m) for row in p], dtype=np.intp)

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

    def hedge(self, probs: Any, accuracy: float, method: str | None = None) -> HedgedAnswer:
        """One photo: (C,) probabilities → the hedged, explained answer."""
        m, lam, target = self.resolve(accuracy, method)
        p = self.node_probs(self.check(probs)).tolist()
        return self._answer(self._choose(p, lam, m), p, target, m, lam)

    def hedge_batch(self, probs: Any, accuracy: float, method: str | None = None) -> list[HedgedAnswer]:
        """N photos, one target: one answer object per photo."""
        m, lam, target = self.resolve(accuracy, method)
        p = self.node_probs(check_leaf_probs(probs, len(self.classes))).tolist()
        return [self._answer(self._choose(row, lam, m), row, target, m, lam) for row in p]

    def top_predictions(self, probs: np.ndarray, k: int = TOP_K) -> list[ScoredNode]:
        """The k most probable classes of validated probabilities, most probable first."""
        out = []
        for i in np.argsort(-probs, kind="stable")[:k].tolist():
            r = self._class_refs[i]
            out.append(ScoredNode(name=r.name, display=r.display, icon=r.icon,
                                  probability=min(1.0, max(0.0, float(probs[i])))))
        return out

    def classify(self, probs: Any, accuracy: float, method: str | None = None, top_k: int = TOP_K) -> ClassificationResult:
        """What a job's result holds: the hedged answer and the top classes, from one photo's
        probabilities as the network gave them (validated and normalised here, once)."""
        m, lam, target = self.resolve(accuracy, method)
        checked = self.check(probs)
        p = self.node_probs(checked).tolist()
        answer = self._answer(self._choose(p, lam, m), p, target, m, lam)
        return ClassificationResult(answer=answer, top_predictions=self.top_predictions(checked, top_k))


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
