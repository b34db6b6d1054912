"""Calibrating λ(ε): one table per model version, computed on the calibration split.

Two methods, both exact on the calibration set (no λ grid, no binary search):

* ``"darts"`` — the paper: the smallest λ whose calibration accuracy reaches the target.
  Plain DARTS accuracy is *not* monotone in λ (the path can jump to a sibling branch), so we
  take the smallest λ from which the accuracy stays ≥ target for every larger λ (the exact
  monotone envelope of the accuracy step function). Where the accuracy is monotone this is
  what the paper's binary search finds; where it is not, it never lands in a dip.
* ``"crc"`` (default) — conformal risk control (Angelopoulos et al. 2022) on the *nested*
  answer N(λ) (running LCA along the DARTS path; see ``darts.py``), whose per-photo loss
  ``1[true leaf ∉ N(λ)]`` is non-increasing and right-continuous in λ, as CRC requires.
  Each photo has a threshold τ_i (the λ at which N covers its true leaf; τ_i ≤ λ_max because
  N(λ_max) is the root). λ̂ is the smallest λ with ``(n/(n+1))·R̂(λ) + 1/(n+1) ≤ ε``,
  i.e. ``#{τ_i > λ} ≤ ε(n+1) − 1``: an order statistic of τ. Guarantee: for a new photo
  exchangeable with the calibration photos, ``P(error) ≤ ε``. When ``ε(n+1) < 1`` no λ below
  the cap qualifies and the table says λ_max (always the root).

**Partial labels.** A "Yes" to a hedged answer says only that the truth is one of a node's leaves.
Every fit here takes labels as leaf indices (N,) or as the set of leaves the truth may be (N, L)
bool (``node_leaf_sets``). An answer at node M is then *known right* when the label's leaves ⊆
leaves(M), *known wrong* when they are disjoint, and *unknown* otherwise (M strictly below the
labelled node: the verdict does not say). Along the nested path a photo is known wrong for
λ < lo_i, unknown on [lo_i, hi_i), known right from hi_i on (``crc_bounds``; a leaf label has
lo = hi = τ). Unknown photos are **excluded** at the λ where they are unknown: the risk at λ is
(known wrong)/(known), with n the known photos, and λ̂ is the smallest λ from which the crc
inequality holds at every larger λ (the exclusions make the ratio non-monotone in λ, so the
envelope keeps the choice on the safe side). With leaf labels only this is the plain rule above,
bit for bit. The exclusion is a selection: photos whose answer is finer than their verdict are
left out exactly where they would count, so the bound is about the photos whose outcome is known.

Targets between grid points use the λ of the next *higher* grid target. Both tables are
non-decreasing in the target (by construction, and re-checked on load), so that λ is ≥ the
exact λ for the requested target, hence its calibration accuracy (darts) or its risk bound
(crc) meets the requested target too: the lookup errs only on the safe side.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field, model_validator

from shared.hedging.darts import (
    LAM_MAX,
    DartsPath,
    darts_path,
    info_gain_rewards,
    node_probabilities,
    prior_rewards,
    tree_arrays,
)
from shared.hedging.errors import CalibrationError, HedgeInputError
from shared.taxonomy import Taxonomy

__all__ = [
    "CALIBRATION_FORMAT",
    "DEFAULT_TARGETS",
    "MIN_TARGET",
    "MAX_TARGET",
    "METHODS",
    "Calibration",
    "calibrate",
    "calibrate_by_sender",
    "calibrate_by_group",
    "calibrate_for_unit",
    "crc_lambda_by_sender",
    "group_lambda_curve",
    "group_lambdas",
    "CRC_UNITS",
    "lambda_for",
    "crc_lambda",
    "darts_lambda",
    "crc_thresholds",
    "crc_bounds",
    "node_leaf_sets",
    "leaf_sets",
    "darts_accuracy_steps",
    "validate_target",
]

CALIBRATION_FORMAT = 1
MIN_TARGET = 0.5
MAX_TARGET = 0.999
METHODS: tuple[str, ...] = ("crc", "darts")
RewardKind = Literal["info_gain", "prior"]
Method = Literal["crc", "darts"]
CRC_UNITS: tuple[str, ...] = ("photo", "sender", "group")  # what the crc table's promise is about
CrcUnit = Literal["photo", "sender", "group"]
# crc_unit="group": a group of GROUP_SIZE new people (about one cross-validation fold) realises at
# least target − GROUP_SLACK in a share GROUP_CONFIDENCE of such groups (calibrate_by_group)
GROUP_SIZE = 50
GROUP_SLACK = 0.01
GROUP_CONFIDENCE = 0.98  # checked on 5 folds x 5 targets: at 0.95 one check in 20 may fail by chance
GROUP_DRAWS = 2000


def _default_targets() -> list[float]:
    """0.50…0.90 by 0.01, 0.905…0.99 by 0.005, 0.991…0.999 by 0.001 (68 points).

    Finer where one point of accuracy costs the most λ, so "next higher grid target" loses
    little.
    """
    coarse = [round(0.50 + 0.01 * i, 3) for i in range(41)]
    mid = [round(0.905 + 0.005 * i, 3) for i in range(18)]
    fine = [round(0.991 + 0.001 * i, 3) for i in range(9)]
    return coarse + mid + fine


DEFAULT_TARGETS: tuple[float, ...] = tuple(_default_targets())


def validate_target(accuracy: Any) -> float:
    """The accuracy target as a float in [0.5, 0.999], or a ValueError that says why."""
    try:
        value = float(accuracy)
    except (TypeError, ValueError):
        raise HedgeInputError(f"accuracy must be a number in [{MIN_TARGET}, {MAX_TARGET}], got {accuracy!r}") from None
    if not math.isfinite(value) or not (MIN_TARGET - 1e-12 <= value <= MAX_TARGET + 1e-12):
        raise HedgeInputError(
            f"accuracy must be in [{MIN_TARGET}, {MAX_TARGET}] (1 − ε with ε from 0.001 to 0.5), got {accuracy!r}"
        )
    return value


class Calibration(BaseModel):
    """λ(ε) tables for one model version; travels in ``ModelCard.calibration`` (``model_dump()``).

    ``lam[method][k]`` is the λ for target ``targets[k]``; ``calib_accuracy[method][k]`` the
    accuracy it realised on the calibration set (for crc, of the nested answer). ``rewards``
    are stored so serving needs no class counts (prior-weighted variant).
    """

    format: int = CALIBRATION_FORMAT
    taxonomy_version: str
    taxonomy_digest: str
    reward: RewardKind = "info_gain"
    rewards: list[float] = Field(description="Reward per node, in taxonomy.node_names order (bits).")
    n: int = Field(ge=1, description="Calibration photos.")
    lam_max: float = Field(LAM_MAX, gt=0, description="λ from which every answer is the root.")
    default_method: Method = "crc"
    targets: list[float]
    lam: dict[Method, list[float]]
    calib_accuracy: dict[Method, list[float]]
    # "photo": the crc table bounds a new photo's error (photos exchangeable); "sender": it bounds
    # a new person's expected share of wrong answers (people exchangeable; calibrate_by_sender)
    # "group": also a group of people realises ≥ target − slack in a share `confidence` of groups
    crc_unit: CrcUnit = "photo"
    n_senders: int | None = Field(None, ge=1, description="Calibration senders (crc_unit 'sender' or 'group').")
    group_promise: dict[str, float] | None = Field(
        None, description="crc_unit='group': size, slack, confidence and draws of the group promise.")
    n_partial: int | None = Field(
        None, ge=1, description="Calibration photos labelled only by an inner node (a Yes to a hedged answer).")

    @model_validator(mode="after")
    def _check(self) -> "Calibration":
        k = len(self.targets)
        if k == 0 or any(b <= a for a, b in zip(self.targets, self.targets[1:])):
            raise ValueError("targets must be non-empty and strictly increasing")
        if self.targets[0] > MIN_TARGET + 1e-12 or self.targets[-1] < MAX_TARGET - 1e-12:
            raise ValueError(f"targets must cover [{MIN_TARGET}, {MAX_TARGET}]")
        for method in METHODS:
            table = self.lam.get(method)  # type: ignore[call-overload]
            if table is None or len(table) != k or len(self.calib_accuracy.get(method, [])) != k:  # type: ignore[call-overload]
                raise ValueError(f"λ table for '{method}' must have one entry per target ({k})")
            if any(not (0.0 <= x <= self.lam_max) for x in table):
                raise ValueError(f"λ table for '{method}' must lie in [0, lam_max]")
            if any(b < a for a, b in zip(table, table[1:])):
                raise ValueError(f"λ table for '{method}' must be non-decreasing in the target (safe lookup)")
        if any(not math.isfinite(r) or r < 0 for r in self.rewards) or (self.rewards and self.rewards[0] != 0.0):
            raise ValueError("rewards must be finite, ≥ 0, with the root's = 0")
        return self

    def lookup(self, accuracy: Any, method: str | None = None) -> tuple[Method, float, float]:
        """(method, λ, target) for a requested accuracy: the λ of the smallest grid target ≥ it.

        The one λ lookup (serving and evaluation). Errs on the safe side: the tables are
        non-decreasing in the target, so a target between grid points gets a λ at least as
        large as its exact one.
        """
        target = validate_target(accuracy)
        m = self.default_method if method is None else method
        if m not in METHODS:
            raise HedgeInputError(f"method must be one of {METHODS} or None, got {method!r}")
        k = min(bisect_left(self.targets, target - 1e-9), len(self.targets) - 1)
        return m, self.lam[m][k], target  # type: ignore[index,return-value]

    def check_taxonomy(self, taxonomy: Taxonomy) -> None:
        """Raise CalibrationError when this calibration was made for another tree."""
        if self.taxonomy_digest != taxonomy.digest or len(self.rewards) != len(taxonomy.node_names):
            raise CalibrationError(
                f"calibration is for taxonomy {self.taxonomy_version} ({self.taxonomy_digest}), "
                f"not {taxonomy.version} ({taxonomy.digest})"
            )


def leaf_sets(labels: np.ndarray, n_leaves: int) -> np.ndarray:
    """Labels as the (N, L) bool sets of leaves the truth may be: leaf indices (N,) become one-hot
    rows, sets pass through (checked)."""
    labels = np.asarray(labels)
    if labels.ndim == 2:
        if labels.shape[1] != n_leaves or labels.dtype != bool:
            raise ValueError(f"label sets must be (N, {n_leaves}) bool, got {labels.shape} {labels.dtype}")
        if not labels.any(axis=1).all():
            raise ValueError("every label set needs at least one leaf")
        return labels
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be (N,) leaf indices or (N, {n_leaves}) bool leaf sets, got {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= n_leaves):
        raise ValueError("leaf indices out of range")
    out = np.zeros((len(labels), n_leaves), dtype=bool)
    out[np.arange(len(labels)), labels] = True
    return out


def node_leaf_sets(nodes: list[str], taxonomy: Taxonomy) -> np.ndarray:
    """(N, L) bool: the leaves under each named node (a leaf: itself; an inner node, a "Yes" to a
    hedged answer: every leaf below it), in model output order."""
    index = {n: i for i, n in enumerate(taxonomy.node_names)}
    missing = [n for n in nodes if n not in index]
    if missing:
        raise ValueError(f"{missing[0]!r} is not a node of taxonomy {taxonomy.version}")
    return tree_arrays(taxonomy).leaf_mask[[index[n] for n in nodes]].copy()


def _outcomes(nodes: np.ndarray, sets: np.ndarray, leaf_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(known right, known wrong) of each answer node against each photo's label set: right when
    the set ⊆ leaves(node), wrong when they are disjoint; (N, S) each."""
    under = leaf_mask[nodes]  # (N, S, L)
    inside = sets[:, None, :]
    return ~(inside & ~under).any(axis=2), ~(inside & under).any(axis=2)


def crc_bounds(path: DartsPath, labels: np.ndarray, leaf_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) per photo along the nested answer N(λ): known wrong for λ < lo, unknown on
    [lo, hi), known right from hi on. A leaf label has lo = hi = τ, the λ at which N(λ) covers it."""
    right, wrong = _outcomes(path.nested, leaf_sets(labels, leaf_mask.shape[1]), leaf_mask)
    rows = np.arange(right.shape[0])
    first_right = np.argmax(right, axis=1)
    if not right[rows, first_right].all():  # cannot happen: the path ends at the root
        raise CalibrationError("a DARTS path never reached the root")
    return path.breaks[rows, np.argmax(~wrong, axis=1)], path.breaks[rows, first_right]


def crc_thresholds(path: DartsPath, true_leaf: np.ndarray, leaf_mask: np.ndarray) -> np.ndarray:
    """τ_i: the smallest λ at which the nested answer N(λ) contains photo i's true leaf."""
    return crc_bounds(path, np.asarray(true_leaf), leaf_mask)[1]


def _known_counts(tau: np.ndarray, lo: np.ndarray | None, candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(known wrong, known) photos at each candidate λ: wrong while λ < lo, right from τ (= hi) on."""
    lo = tau if lo is None else np.asarray(lo, dtype=np.float64)
    wrong = len(lo) - np.searchsorted(np.sort(lo), candidates, side="right")
    right = np.searchsorted(np.sort(tau), candidates, side="right")
    return wrong, wrong + right


def _first_from_which(ok: np.ndarray, candidates: np.ndarray, lam_max: float) -> float:
    """The smallest candidate from which ``ok`` holds at every larger candidate (λ_max if none)."""
    suffix = np.flip(np.logical_and.accumulate(np.flip(ok)))
    if not suffix.any():
        return float(lam_max)
    return _nudge(float(candidates[np.argmax(suffix)]), lam_max)


def crc_lambda(tau: np.ndarray, target: float, lam_max: float, lo: np.ndarray | None = None) -> float:
    """Smallest λ with ``(n/(n+1))·mean(τ > λ) + 1/(n+1) ≤ 1 − target`` (conformal risk control).

    ``lo`` (partial labels, ``crc_bounds``): photo i is known wrong below lo_i, unknown on
    [lo_i, τ_i) and excluded there; n and the errors are the known photos' at each λ, and λ̂ the
    smallest λ from which the inequality holds at every larger λ. Without it, the plain rule."""
    tau = np.asarray(tau, dtype=np.float64)
    candidates = np.unique(np.concatenate([[0.0], tau, [] if lo is None else np.asarray(lo, np.float64)]))
    wrong, known = _known_counts(tau, lo, candidates)
    allowed = np.floor((1.0 - target) * (known + 1) - 1.0 + 1e-9)  # max #errors among the known photos
    return _first_from_which(wrong <= allowed, candidates, lam_max)


def _nudge(lam: float, lam_max: float) -> float:
    """Move a λ that sits exactly on some calibration photo's breakpoint a hair to the right.

    λ̂ is always one photo's breakpoint; recomputing that photo's probabilities in another
    float order (batch vs single, float32 input) can put its breakpoint 1 ulp above λ̂ and flip
    it. Any larger λ keeps both guarantees (losses are non-increasing in λ; the darts choice
    is taken where accuracy stays ≥ target for every larger λ), so erring right is safe.
    """
    if lam <= 0.0:
        return 0.0
    return float(min(lam * (1.0 + 1e-9) + 1e-12, lam_max))


def darts_accuracy_steps(path: DartsPath, true_leaf: np.ndarray, leaf_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The calibration accuracy of plain DARTS as an exact step function of λ.

    Returns ``(lams, acc)``: accuracy is ``acc[k]`` on ``[lams[k], lams[k+1])``; ``lams[0] = 0``.
    With label sets (partial labels) it is (known right)/(known) at each λ: unknown answers are
    excluded (module docstring).
    """
    right, wrong = _outcomes(path.nodes, leaf_sets(np.asarray(true_leaf), leaf_mask.shape[1]), leaf_mask)
    right, known = right.astype(np.int64), (right | wrong).astype(np.int64)
    d_right, d_known = np.diff(right, axis=1), np.diff(known, axis=1)
    at = path.breaks[:, 1:]
    keep = np.isfinite(at) & ((d_right != 0) | (d_known != 0))
    lams, inverse = np.unique(np.concatenate([[0.0], at[keep]]), return_inverse=True)
    n_right = right[:, 0].sum() + np.cumsum(np.bincount(inverse[1:], weights=d_right[keep], minlength=len(lams)))
    n_known = known[:, 0].sum() + np.cumsum(np.bincount(inverse[1:], weights=d_known[keep], minlength=len(lams)))
    return lams, n_right / np.maximum(n_known, 1)


def darts_lambda(lams: np.ndarray, acc: np.ndarray, target: float, lam_max: float) -> tuple[float, float]:
    """Smallest λ from which the calibration accuracy stays ≥ target; returns (λ, accuracy there)."""
    suffix_min = np.minimum.accumulate(acc[::-1])[::-1]
    ok = np.flatnonzero(suffix_min >= target - 1e-12)
    if len(ok) == 0:
        return float(lam_max), 1.0
    k = int(ok[0])
    return _nudge(float(lams[k]), lam_max), float(acc[k])


def calibrate(
    leaf_probs: np.ndarray,
    true_leaf: np.ndarray,
    taxonomy: Taxonomy,
    *,
    reward: RewardKind = "info_gain",
    class_counts: np.ndarray | list[float] | None = None,
    targets: tuple[float, ...] | list[float] = DEFAULT_TARGETS,
    lam_max: float = LAM_MAX,
) -> Calibration:
    """Compute both λ(ε) tables on held-out (calibration-split) predictions.

    ``leaf_probs``: (N, L) in model output order; ``true_leaf``: (N,) leaf indices, or (N, L) bool
    sets of the leaves the truth may be (partial labels: unknown answers are excluded, module
    docstring). ``reward="prior"`` needs ``class_counts`` (training photos per leaf).
    """
    probs = np.asarray(leaf_probs, dtype=np.float64)
    y = np.asarray(true_leaf)
    arrays = tree_arrays(taxonomy)
    if probs.ndim != 2 or probs.shape[1] != arrays.n_leaves:
        raise ValueError(f"leaf_probs must be (N, {arrays.n_leaves}), got {probs.shape}")
    leaf_indices = y.ndim == 1 and np.issubdtype(y.dtype, np.integer)
    if y.ndim not in (1, 2) or len(y) != probs.shape[0] or (y.ndim == 1 and not leaf_indices):
        raise ValueError(f"true_leaf must be ({probs.shape[0]},) integer leaf indices or ({probs.shape[0]}, "
                         f"{arrays.n_leaves}) bool leaf sets, got {y.shape} {y.dtype}")
    if probs.shape[0] == 0 or (leaf_indices and (y.min() < 0 or y.max() >= arrays.n_leaves)):
        raise ValueError("need at least one photo and leaf indices in range")
    sets = leaf_sets(y, arrays.n_leaves)
    n_partial = int((sets.sum(axis=1) > 1).sum())
    if not np.all(np.isfinite(probs)):
        raise ValueError("leaf_probs contain NaN or inf")
    targets = [float(t) for t in targets]
    for t in targets:
        validate_target(t)
    if reward == "info_gain":
        rewards = info_gain_rewards(taxonomy)
    elif reward == "prior":
        if class_counts is None:
            raise ValueError("reward='prior' needs class_counts (training photos per leaf)")
        rewards = prior_rewards(taxonomy, class_counts)
    else:
        raise ValueError(f"reward must be 'info_gain' or 'prior', got {reward!r}")

    probs = probs / probs.sum(axis=1, keepdims=True)
    path = darts_path(node_probabilities(probs, arrays.leaf_matrix), rewards, arrays.lca, lam_max)
    n = len(y)

    lo, tau = crc_bounds(path, sets, arrays.leaf_mask)
    crc_lam = [crc_lambda(tau, t, lam_max, lo) for t in targets]
    crc_acc = [_known_accuracy(lo, tau, lam) for lam in crc_lam]

    lams, acc = darts_accuracy_steps(path, sets, arrays.leaf_mask)
    darts = [darts_lambda(lams, acc, t, lam_max) for t in targets]

    # monotone in the target by construction; accumulate anyway so the invariant can't drift
    return Calibration(
        taxonomy_version=taxonomy.version,
        taxonomy_digest=taxonomy.digest,
        reward=reward,
        rewards=[float(r) for r in rewards],
        n=n,
        lam_max=float(lam_max),
        targets=targets,
        lam={
            "crc": list(np.maximum.accumulate(crc_lam).tolist()),
            "darts": list(np.maximum.accumulate([d[0] for d in darts]).tolist()),
        },
        calib_accuracy={"crc": crc_acc, "darts": [d[1] for d in darts]},
        n_partial=n_partial or None,
    )


def _known_accuracy(lo: np.ndarray, tau: np.ndarray, lam: float) -> float:
    """The nested answer's accuracy at λ over the photos whose outcome is known there."""
    wrong, known = _known_counts(tau, lo, np.array([lam]))
    return float(1.0 - wrong[0] / known[0]) if known[0] else 1.0


def _per_unit(tau: np.ndarray, lo: np.ndarray | None, idx: np.ndarray, n_units: int,
              candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(known wrong, known) photos of each unit (sender) at each candidate λ: (units, candidates)."""
    lo = tau if lo is None else np.asarray(lo, dtype=np.float64)
    wrong = np.empty((n_units, len(candidates)))
    known = np.empty((n_units, len(candidates)))
    for j in range(n_units):
        mine = idx == j
        wrong[j], known[j] = _known_counts(tau[mine], lo[mine], candidates)
    return wrong, known


def crc_lambda_by_sender(tau: np.ndarray, senders: np.ndarray | list, target: float, lam_max: float,
                         lo: np.ndarray | None = None) -> float:
    """Conformal risk control with the **sender** as the exchangeable unit.

    Photos of one person are not exchangeable with other people's (same floor, light, camera,
    labelling habits), but people are: every user is a new person. Sender j's loss at λ is the
    share of their photos whose nested answer misses the truth, ``L_j(λ) = mean_{i∈j} 1[τ_i > λ]``:
    in [0, 1], non-increasing and right-continuous in λ, so CRC applies to the m sender losses.
    λ̂ is the smallest λ with ``(m/(m+1))·mean_j L_j(λ) + 1/(m+1) ≤ ε``; guarantee: for a new
    sender exchangeable with the calibration senders, ``E[L_new(λ̂)] ≤ ε`` (their expected share of
    wrong answers). The slack 1/(m+1) is per person, so above 1 − 1/(m+1) every answer is the root.

    ``lo`` (partial labels): a sender's loss at λ is over their photos known right or wrong there,
    a sender with none is left out of m, and λ̂ is the smallest λ from which the inequality holds
    at every larger λ (as ``crc_lambda``).
    """
    tau = np.asarray(tau, dtype=np.float64)
    _, idx, counts = np.unique(np.asarray(senders), return_inverse=True, return_counts=True)
    candidates = np.unique(np.concatenate([[0.0], tau, [] if lo is None else np.asarray(lo, np.float64)]))
    wrong, known = _per_unit(tau, lo, idx, len(counts), candidates)
    seen = known > 0
    m = seen.sum(axis=0)
    loss = (np.where(seen, wrong, 0.0) / np.maximum(known, 1)).sum(axis=0)  # m·R̂ at each candidate
    return _first_from_which(loss <= (1.0 - target) * (m + 1) - 1.0 + 1e-9, candidates, lam_max)


def _sender_taus(cal: Calibration, leaf_probs: np.ndarray, true_leaf: np.ndarray, senders: np.ndarray | list,
                 taxonomy: Taxonomy) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each calibration photo's crc bounds (lo, τ): known wrong below lo, right from τ on
    (``crc_bounds``), and the senders as an array checked against the photos."""
    senders = np.asarray(senders)
    if senders.shape != (cal.n,):
        raise ValueError(f"senders must be ({cal.n},), one per photo, got {senders.shape}")
    arrays = tree_arrays(taxonomy)
    probs = np.asarray(leaf_probs, dtype=np.float64)
    probs = probs / probs.sum(axis=1, keepdims=True)
    path = darts_path(node_probabilities(probs, arrays.leaf_matrix), np.asarray(cal.rewards), arrays.lca,
                      cal.lam_max)
    lo, tau = crc_bounds(path, np.asarray(true_leaf), arrays.leaf_mask)
    return lo, tau, senders


def _with_crc_table(cal: Calibration, lo: np.ndarray, tau: np.ndarray, lam: np.ndarray, **update: Any) -> Calibration:
    lam = np.maximum.accumulate(lam)  # the safe lookup needs a non-decreasing table
    return cal.model_copy(update={
        "lam": {**cal.lam, "crc": lam.tolist()},
        "calib_accuracy": {**cal.calib_accuracy, "crc": [_known_accuracy(lo, tau, x) for x in lam]},
        **update,
    })


def calibrate_by_sender(
    leaf_probs: np.ndarray,
    true_leaf: np.ndarray,
    senders: np.ndarray | list,
    taxonomy: Taxonomy,
    **kwargs: Any,
) -> Calibration:
    """``calibrate`` with the crc table computed over **senders** (``crc_lambda_by_sender``)
    instead of photos: a promise that holds for a new person rather than a new photo of the
    people already seen. The darts table is unchanged; ``crc_unit='sender'`` records the choice."""
    cal = calibrate(leaf_probs, true_leaf, taxonomy, **kwargs)
    lo, tau, senders = _sender_taus(cal, leaf_probs, true_leaf, senders, taxonomy)
    lam = np.array([crc_lambda_by_sender(tau, senders, t, cal.lam_max, lo) for t in cal.targets])
    return _with_crc_table(cal, lo, tau, lam, crc_unit="sender", n_senders=int(len(np.unique(senders))))


def group_lambda_curve(tau: np.ndarray, senders: np.ndarray, lam_max: float, group_size: int = GROUP_SIZE,
                       confidence: float = GROUP_CONFIDENCE, draws: int = GROUP_DRAWS,
                       seed: int = 0, lo: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(λ candidates, the ``confidence`` quantile of a group's share of wrong answers at each).

    A group is ``group_size`` people drawn with replacement from the calibration senders (a
    bootstrap of "the next group of new people"); its share of wrong answers at λ is its photos'
    pooled ``mean 1[τ > λ]``, what one held-out fold of people measures. Every group's share is
    non-increasing in λ, so the quantile is too. ``lo`` (partial labels): the share is over the
    group's photos known right or wrong at λ (then it need not be monotone; ``group_lambdas``
    takes the smallest λ from which it stays below)."""
    tau = np.minimum(np.asarray(tau, dtype=np.float64), lam_max)
    lo = None if lo is None else np.minimum(np.asarray(lo, dtype=np.float64), lam_max)
    _, idx, counts = np.unique(np.asarray(senders), return_inverse=True, return_counts=True)
    candidates = np.unique(np.concatenate([[0.0], tau, [] if lo is None else lo]))
    misses, known = _per_unit(tau, lo, idx, len(counts), candidates)
    picks = np.random.default_rng(seed).multinomial(group_size, np.full(len(counts), 1.0 / len(counts)), size=draws)
    share = (picks @ misses) / np.maximum(picks @ known, 1)
    return candidates, np.quantile(share, confidence, axis=0)


def group_lambdas(tau: np.ndarray, senders: np.ndarray, targets: list[float], lam_max: float,
                  group_size: int = GROUP_SIZE, slack: float = GROUP_SLACK, confidence: float = GROUP_CONFIDENCE,
                  draws: int = GROUP_DRAWS, lo: np.ndarray | None = None) -> np.ndarray:
    """The group rule alone: per target, the smallest λ from which the ``confidence`` quantile of a
    group's share of wrong answers stays at most ``1 − target + slack`` (``group_lambda_curve``)."""
    candidates, quantile = group_lambda_curve(tau, senders, lam_max, group_size, confidence, draws, lo=lo)
    return np.array([_first_from_which(quantile <= (1.0 - target) + slack + 1e-12, candidates, lam_max)
                     for target in targets])


def calibrate_by_group(
    leaf_probs: np.ndarray,
    true_leaf: np.ndarray,
    senders: np.ndarray | list,
    taxonomy: Taxonomy,
    group_size: int = GROUP_SIZE,
    slack: float = GROUP_SLACK,
    confidence: float = GROUP_CONFIDENCE,
    draws: int = GROUP_DRAWS,
    **kwargs: Any,
) -> Calibration:
    """The per-sender crc table, raised where needed so that a group of ``group_size`` new people
    realises at least ``target − slack`` in a share ``confidence`` of such groups.

    Why: crc per sender bounds a new person's *expected* error, and people differ a lot, so one
    group of ~50 new people (one cross-validation fold) can fall well below the target although the
    promise holds on average (docs/hedging.md). The group rule estimates how groups vary by
    bootstrapping the calibration senders; an estimate, not a finite-sample bound, so the table
    is the larger of the two λs at every target and keeps crc's guarantee for a single person."""
    cal = calibrate(leaf_probs, true_leaf, taxonomy, **kwargs)
    lo, tau, senders = _sender_taus(cal, leaf_probs, true_leaf, senders, taxonomy)
    group = group_lambdas(tau, senders, cal.targets, cal.lam_max, group_size, slack, confidence, draws, lo=lo)
    lam = [max(g, crc_lambda_by_sender(tau, senders, t, cal.lam_max, lo)) for g, t in zip(group, cal.targets)]
    return _with_crc_table(cal, lo, tau, np.array(lam), crc_unit="group", n_senders=int(len(np.unique(senders))),
                           group_promise={"size": group_size, "slack": slack, "confidence": confidence,
                                          "draws": draws})


def calibrate_for_unit(leaf_probs: np.ndarray, true_leaf: np.ndarray, senders: np.ndarray | list | None,
                       taxonomy: Taxonomy, unit: str, **kwargs: Any) -> Calibration:
    """The λ tables for the promise ``unit`` (one of ``CRC_UNITS``): the one place that maps a
    unit to its calibration (training, cross-fitting, recalibration on feedback, the CV report)."""
    if unit == "photo":
        return calibrate(leaf_probs, true_leaf, taxonomy, **kwargs)
    if unit not in CRC_UNITS:
        raise ValueError(f"crc unit must be one of {', '.join(CRC_UNITS)}, got {unit!r}")
    if senders is None:
        raise ValueError(f"crc unit {unit!r} needs the sender of every calibration photo")
    by_unit = calibrate_by_sender if unit == "sender" else calibrate_by_group
    return by_unit(leaf_probs, true_leaf, senders, taxonomy, **kwargs)


def lambda_for(calibration: Calibration | dict[str, Any], target: float, method: str | None = None) -> float:
    """λ for any target in [0.5, 0.999] (:meth:`Calibration.lookup`), from a table or its JSON."""
    cal = calibration if isinstance(calibration, Calibration) else Calibration.model_validate(calibration)
    return cal.lookup(target, method)[1]
