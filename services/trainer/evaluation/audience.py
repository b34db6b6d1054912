"""Who a figure is about: the audiences of an evaluation, for "how right for a new person".

A photo-weighted figure over this dataset is half a judgement about 7 people (7 of 261 senders hold
51 % of the photos), while Wardrobe's users are the many people with a few dozen photos each, and
children's clothes are right far less often than adults'. So every evaluation (the CV report, the
ensemble's, the promotion gate's evidence) also reports, from this one module:

* **audiences**: ``all`` photos; ``small`` senders (at most ``SMALL_SENDER_MAX_PHOTOS`` photos in
  the evaluated set) and ``big`` ones; ``kids`` and ``adults`` (images.csv's ``kids`` column) and
  both among the small senders (``small_kids``, ``small_adults``);
* **weightings**: ``photos`` (every photo counts once) and ``people`` (every person counts once: the
  mean over people of each person's own figure, which is what the next new person gets on average).

A person's photo count is taken over the whole evaluated set (every fold of a CV), so a sender is
small or big in every fold alike; folds are sender-disjoint, so counting inside a fold is the same.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from services.trainer.evaluation.evaluate import ten_way
from services.trainer.model.calibrate import expected_calibration_error
from shared.taxonomy import Taxonomy

__all__ = ["SMALL_SENDER_MAX_PHOTOS", "AUDIENCES", "WEIGHTINGS", "AUDIENCE_NAMES", "Audiences", "accuracy_figures",
           "hedged_figures", "kids_flags"]

# A sender with at most this many photos is one of the many (the 254 of 261 Wardrobe is for);
# above it, one of the few who hold half the photos ([J2]).
SMALL_SENDER_MAX_PHOTOS = 150
AUDIENCES: tuple[str, ...] = ("all", "small", "big", "kids", "adults", "small_kids", "small_adults")
WEIGHTINGS: tuple[str, ...] = ("photos", "people")
AUDIENCE_NAMES = {"all": "all photos", "small": "small senders", "big": "big senders", "kids": "children's clothes",
                  "adults": "adults' clothes", "small_kids": "small senders, children's clothes",
                  "small_adults": "small senders, adults' clothes"}


def kids_flags(values: Sequence[Any]) -> np.ndarray | None:
    """images.csv's ``kids`` cells (bools, 'True'/'False' or None) as an object array of True, False
    or None (unknown); None when no photo's flag is known."""
    out = np.array([None if v is None else (v if isinstance(v, (bool, np.bool_)) else str(v).strip().lower() == "true")
                    for v in values], dtype=object)
    return out if any(v is not None for v in out) else None


@dataclass(frozen=True)
class Audiences:
    """Per photo: its person and which audiences it belongs to (boolean masks)."""

    senders: np.ndarray
    masks: dict[str, np.ndarray]
    small_max: int

    @classmethod
    def of(cls, senders: Sequence[Any], kids: Sequence[Any] | None = None,
           small_max: int = SMALL_SENDER_MAX_PHOTOS, photos_per_sender: Mapping[str, int] | None = None) -> "Audiences":
        """``photos_per_sender`` (default: counted in ``senders``) decides small (≤ ``small_max``) or big;
        ``kids`` (True/False/None per photo) adds the kids and adults audiences when any flag is known."""
        senders = np.asarray(senders).astype(str)
        if photos_per_sender is None:
            names, counts = np.unique(senders, return_counts=True)
            photos_per_sender = dict(zip(names.tolist(), counts.tolist()))
        small = np.array([photos_per_sender[s] <= small_max for s in senders], dtype=bool)
        masks = {"all": np.ones(len(senders), dtype=bool), "small": small, "big": ~small}
        flags = kids_flags(kids) if kids is not None else None
        if flags is not None:
            if len(flags) != len(senders):
                raise ValueError(f"kids must have one flag per photo ({len(senders)}), got {len(flags)}")
            is_kid, is_adult = flags == True, flags == False  # noqa: E712 - None is neither
            masks.update(kids=is_kid, adults=is_adult, small_kids=small & is_kid, small_adults=small & is_adult)
        return cls(senders, masks, small_max)

    def subset(self, rows: np.ndarray) -> "Audiences":
        """The same audiences restricted to ``rows`` (a boolean mask or indices: one fold)."""
        return Audiences(self.senders[rows], {k: m[rows] for k, m in self.masks.items()}, self.small_max)

    def weights(self, audience: str, weighting: str, among: np.ndarray | None = None) -> np.ndarray:
        """Per photo weight of ``audience`` (restricted to ``among``): 1 per photo, or 1/(the person's
        photos there) so that every person weighs 1; 0 outside."""
        mask = self.masks[audience] if among is None else self.masks[audience] & among
        if weighting == "photos":
            return mask.astype(np.float64)
        if weighting != "people":
            raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
        w = np.zeros(len(mask))
        _, inv, counts = np.unique(self.senders[mask], return_inverse=True, return_counts=True)
        w[mask] = 1.0 / counts[inv]
        return w

    def rate(self, values: np.ndarray, audience: str, weighting: str, among: np.ndarray | None = None) -> float | None:
        """Weighted mean of ``values`` over the audience; NaN values (unjudged) are left out, and
        so are people left with none. None when nobody is left."""
        values = np.asarray(values, dtype=np.float64)
        known = np.isfinite(values) if among is None else np.isfinite(values) & among
        w = self.weights(audience, weighting, known)
        total = w.sum()
        return float(np.dot(w[known], values[known]) / total) if total > 0 else None

    def head(self, audience: str) -> dict[str, int]:
        mask = self.masks[audience]
        return {"n": int(mask.sum()), "senders": int(len(np.unique(self.senders[mask])))}


def accuracy_figures(probs: np.ndarray, y: np.ndarray, aud: Audiences, classes: list[str], taxonomy: Taxonomy,
                     rotated: Mapping[int, np.ndarray] | None = None) -> dict[str, Any]:
    """Per audience and weighting: top-1, ``top1_top10``, ``top1_10way``, ECE (15 bins, weighted) and,
    with ``rotated`` ({angle: probabilities}, 0 included), top-1 per angle and the drop from upright."""
    hit = (probs.argmax(1) == y).astype(np.float64)
    in_top10, restricted = ten_way(probs, classes, taxonomy, y)
    hit10 = (restricted == y).astype(np.float64)
    rot_hits = {str(a): (p.argmax(1) == y).astype(np.float64) for a, p in (rotated or {}).items()}
    out: dict[str, Any] = {}
    for name, mask in aud.masks.items():
        if not mask.any():
            continue
        entry: dict[str, Any] = aud.head(name)
        for weighting in WEIGHTINGS:
            fig: dict[str, Any] = {
                "top1": aud.rate(hit, name, weighting),
                "top1_top10": aud.rate(hit, name, weighting, among=in_top10),
                "top1_10way": aud.rate(hit10, name, weighting, among=in_top10),
                "ece": expected_calibration_error(probs, y, weights=aud.weights(name, weighting))[0],
            }
            if "0" in rot_hits:
                fig["rotation"] = {a: aud.rate(h, name, weighting) for a, h in rot_hits.items()}
                fig["rotation_drop"] = {a: fig["rotation"]["0"] - v for a, v in fig["rotation"].items() if a != "0"}
            entry[weighting] = fig
        out[name] = entry
    return out


def hedged_figures(right: Mapping[str, np.ndarray], aud: Audiences) -> dict[str, dict[str, dict[str, float | None]]]:
    """``right``: {target: per photo 1 right / 0 wrong / NaN unjudged} of one hedged table →
    {target: {audience: {"photos": realised accuracy, "people": mean over people}}}. On one fold's
    small senders, ``photos`` is what that group of new people realises (the group promise)."""
    return {key: {name: {w: aud.rate(r, name, w) for w in WEIGHTINGS} for name, mask in aud.masks.items() if mask.any()}
            for key, r in right.items()}
