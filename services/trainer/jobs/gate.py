"""The promotion gate: a candidate version against the active one, on the same photos, as served.

Two sets, both disjoint from what the candidate learned from, by person:

* ``eval``: a fixed sender-disjoint split of the dataset (``gate_eval_split`` of the split file;
  the test split by default), so every candidate is judged on the same photos;
* ``feedback``: the leaf-labelled feedback of the held-back people (``feedback_data``), the
  population being served. Below ``gate_min_feedback`` photos it is reported but not decisive.

Each model is run from its ONNX file (ONNX Runtime, the shared preprocessing), hedged with its own
card (taxonomy and λ tables), and scored on top-1 and on the hedged promise: the *shortfall*, the
largest amount by which realised hedged accuracy falls below a target (0.8 … 0.99; only targets
that allow at least ``MIN_ALLOWED_ERRORS`` errors on the set, so one photo cannot decide). The candidate
A version trained on **all** labelled photos (``wardrobe cv|ensemble --version``: the card's
``data.trained_on``) has seen the ``eval`` split, so its score there says nothing about new people:
then ``eval`` is reported but not decisive, and only the held-back people's feedback can judge.

Held-back people are few (a share of those who gave feedback), and a per-person interval over 25
of them is ±9 points wide: no candidate could show it loses at most a point. The people the
candidate did learn from are evidence too, where its recipe predicted them **out of fold** (their
fold was left out of the fold networks: ``pipelines.crossfit.OUT_OF_FOLD_FILE``) and the active
version never learned them: per person, the recipe's out-of-fold top-1 minus the active version's
served top-1. The feedback set's per-person interval pools both kinds of people (fold networks
learn from fewer photos than the candidate, so their half is, if anything, pessimistic).

The candidate is promoted when, on every decisive set, its top-1 is not lower than the active version's by more
than the tolerance and its shortfall beyond sampling noise (``SHORTFALL_NOISE_Z`` binomial standard
errors of the realised accuracy at each target) not higher by more than the tolerance. A recalibration has
the same ONNX file as the active version, so its top-1 ties and the shortfall decides.

Answers are judged by name (the answered node is the true leaf or one of its ancestors), so a
candidate with a new leaf and an active version without it are compared on the same photos.
Probabilities are cached on disk per (ONNX file hash, photo): the active version is run once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from services.trainer.evaluation.audience import WEIGHTINGS, Audiences, hedged_figures
from services.trainer.evaluation.evaluate import ModelRunner
from services.trainer.data.dataset import PhotoRef, load_photo
from services.trainer.data.feedback import LabelledPhoto, current_feedback_items, dataset_parts, feedback_photos, split_by_person
from services.trainer.fit.front_cache import save_array
from services.trainer.jobs.context import JobContext
from services.trainer.pipelines.crossfit import learned_feedback, out_of_fold_answers, photo_key
from shared.hedging.hedging import Hedger
from shared.model_card import TRAINED_ON_ALL, ModelCard, sha256_file
from shared.model_card import card_taxonomy as shared_card_taxonomy
from shared.schemas import GateDecision
from shared.taxonomy import Taxonomy, load_taxonomy

__all__ = ["GATE_TARGETS", "GATE_MIN_PEOPLE", "SHORTFALL_NOISE_Z", "ProbabilityCache", "card_taxonomy",
           "hedged_scores", "score", "compare", "gate_sets", "decide", "judge", "out_of_fold_evidence",
           "per_person", "top1_hits", "audience_scores"]

log = logging.getLogger(__name__)

GATE_TARGETS = (0.8, 0.9, 0.95, 0.98, 0.99)
BOOTSTRAP_DRAWS = 2000  # resamples of people for the per-person interval
LEVEL = 0.9  # two-sided: the candidate is promoted when the lower end is within the tolerance
# A target counts towards the hedged shortfall only on a set where it allows at least this many
# errors ((1 − target)·n): on 30 photos one miss is 3.3 points, more than any tolerance, so a
# shortfall at 0.99 there is noise, not evidence (measured: docs/learning.md).
MIN_ALLOWED_ERRORS = 5
# People a set needs before it may decide (GATE_MIN_PEOPLE; the trainer's setting defaults to it).
# With fewer the per-person bootstrap interval is too narrow: resampling people from recorded CV runs
# (bench/gate_min_people.py, docs/learning.md), a candidate worse by more than the tolerance is
# promoted in 15 % of held-back sets of 7 people (up to 33 % for the hardest pair), 4 % of sets of 20
GATE_MIN_PEOPLE = 20
# A promise kept in the population still falls short on a sample by chance: on 115 held-back photos
# realised accuracy at 0.9 has a binomial standard error of 2.8 points, so a 2-point shortfall
# there is two or three photos, not evidence (docs/learning.md). A shortfall decides only beyond
# this many standard errors (one-sided 95 %); photos of one person are correlated, so the real
# noise is larger and this band, if anything, too narrow to let a broken promise through.
SHORTFALL_NOISE_Z = 1.645


def card_taxonomy(card: ModelCard, fallback: Taxonomy | None = None) -> Taxonomy:
    """The taxonomy a version was trained with (``shared.model_card.card_taxonomy``)."""
    return shared_card_taxonomy(card, fallback or load_taxonomy())


class ProbabilityCache:
    """Served probabilities per (ONNX file, photo), on disk: ``<root>/<onnx sha[:16]>/…``."""

    def __init__(self, root: Path, threads: int = 2) -> None:
        self.root, self.threads = Path(root), threads

    def probabilities(self, model_dir: Path, photos: Sequence[PhotoRef]) -> np.ndarray:
        card = ModelCard.load(model_dir)
        onnx_hash = card.hashes.get(card.onnx_file) or sha256_file(Path(model_dir) / card.onnx_file)
        store_dir = self.root / onnx_hash[:16]
        out: list[np.ndarray | None] = []
        missing = []
        for i, ref in enumerate(photos):
            path = store_dir / ref.sha256[:2] / f"{ref.sha256}.npy"
            out.append(np.load(path) if path.is_file() else None)
            if out[-1] is None:
                missing.append(i)
        if missing:
            log.info("scoring %d photos with %s", len(missing), card.version)
            runner = ModelRunner(Path(model_dir), threads=self.threads)
            for start in range(0, len(missing), 64):
                chunk = missing[start:start + 64]
                probs = runner.probabilities([load_photo(photos[i].path) for i in chunk])
                for i, p in zip(chunk, probs):
                    save_array(store_dir / photos[i].sha256[:2] / f"{photos[i].sha256}.npy", p)
                    out[i] = p
        return np.stack(out) if out else np.zeros((0, len(card.classes)), np.float32)  # type: ignore[arg-type]


def _covers(node: str, leaf: str) -> bool:
    """Is ``leaf`` (any node) ``node`` or under it?"""
    return node == "" or node == leaf or leaf.startswith(node + ".")


def _judged(answer: str, truth: str) -> float:
    """1 if the answer is right, 0 if wrong, NaN if the truth (an inner node: a Yes to a hedged
    answer) does not say: the answer is a node strictly under it."""
    if _covers(answer, truth):
        return 1.0
    return float("nan") if _covers(truth, answer) else 0.0


def top1_hits(probs: np.ndarray, truth: Sequence[str], classes: Sequence[str]) -> np.ndarray:
    """Per photo: is the top-1 leaf the true leaf, or under the true node (a partial label)?"""
    return np.array([_covers(node, classes[k]) for k, node in zip(probs.argmax(1), truth)], dtype=np.float64)


def per_person(diff: np.ndarray, persons: Sequence[str], draws: int = BOOTSTRAP_DRAWS, level: float = LEVEL,
               seed: int = 0) -> dict:
    """The candidate's top-1 minus the active version's, judged per person: each person's mean
    difference on their own photos, averaged over people (a person with 200 photos counts as much
    as one with 5, as the next new person will), with a bootstrap interval over people (people
    resampled with replacement: one person's photos are not independent evidence)."""
    people = sorted(set(persons))
    index = {p: i for i, p in enumerate(people)}
    who = np.array([index[p] for p in persons])
    sums, counts = np.bincount(who, diff, len(people)), np.bincount(who, minlength=len(people))
    d = sums / np.maximum(counts, 1)
    rng = np.random.default_rng(seed)
    boot = d[rng.integers(0, len(people), size=(draws, len(people)))].mean(1)
    lo, hi = np.quantile(boot, [(1 - level) / 2, 1 - (1 - level) / 2])
    return {"people": len(people), "mean": float(d.mean()), "lo": float(lo), "hi": float(hi), "level": level,
            "largest_share": float(counts.max() / counts.sum())}


def hedged_scores(probs: np.ndarray, truth: Sequence[str], card: ModelCard, calibration=None,  # noqa: ANN001
                  targets: Sequence[float] = GATE_TARGETS) -> dict:
    """Realised hedged accuracy and mean information gain per target, hedging with the card's
    taxonomy and ``calibration`` (the card's own when None); answers judged by name."""
    taxonomy = card_taxonomy(card)
    hedger = Hedger(taxonomy, calibration or card.calibration, classes=card.classes)
    names = taxonomy.node_names
    realised, gain, noise = {}, {}, {}
    for t in targets:
        nodes = hedger.choose_batch(probs, t)
        known = [x for x in (_judged(names[v], node) for v, node in zip(nodes, truth)) if not np.isnan(x)]
        if known:  # answers below a partial label's node are neither right nor wrong: left out
            realised[str(t)] = float(np.mean(known))
            noise[str(t)] = SHORTFALL_NOISE_Z * float(np.sqrt(t * (1 - t) / len(known)))
        gain[str(t)] = float(hedger.rewards[nodes].mean())
    judged = [t for t in targets if str(t) in realised and (1 - t) * len(truth) >= MIN_ALLOWED_ERRORS - 1e-9]
    out = {"hedged": realised, "info_gain": gain, "shortfall_targets": judged}
    if judged:
        out["shortfall"] = max(0.0, max(t - realised[str(t)] for t in judged))
        out["shortfall_noise"] = {str(t): noise[str(t)] for t in judged}
        out["shortfall_beyond_noise"] = max(0.0, max(t - realised[str(t)] - noise[str(t)] for t in judged))
    return out


def score(model_dir: Path, photos: Sequence[LabelledPhoto], cache: ProbabilityCache,
          targets: Sequence[float] = GATE_TARGETS) -> dict:
    """Top-1 and hedged realised accuracy (its own card's hedging) of one version on ``photos``."""
    card = ModelCard.load(model_dir)
    if not photos:
        return {"n": 0}
    probs = cache.probabilities(model_dir, [p.photo for p in photos])
    truth = [p.leaf for p in photos]
    top1 = float(top1_hits(probs, truth, card.classes).mean())
    result = {"n": len(photos), "top1": top1, "partial_labels": sum(p.leaf not in card.classes for p in photos)}
    if card.calibration:
        result.update(hedged_scores(probs, truth, card, targets=targets))
    return result


def compare(candidate: dict[str, dict], active: dict[str, dict], tolerance: float,
            decisive: Sequence[str]) -> tuple[bool, str]:
    """(promote, reason) from both versions' scores on the same sets. Where a set's score carries
    ``per_person`` (:func:`per_person`), top-1 must also be within the tolerance at the lower end
    of its interval; else there is not enough evidence to promote."""
    problems, notes, unsure = [], [], []
    for name in decisive:
        c, a = candidate[name], active[name]
        if c.get("n", 0) == 0:
            continue
        people = c.get("per_person")
        if c["top1"] < a["top1"] - tolerance:
            problems.append(f"top-1 on {name} {c['top1']:.3f} < active {a['top1']:.3f} − {tolerance:.3f}")
        elif people and people["lo"] < -tolerance:
            unsure.append(f"top-1 on {name} per person {people['mean']:+.3f} ({people['level']:.0%} interval "
                          f"{people['lo']:+.3f} … {people['hi']:+.3f} over {_people(people)}) does not "
                          f"rule out a loss beyond {tolerance:.3f}")
        else:
            notes.append(f"top-1 on {name} {c['top1']:.3f} vs {a['top1']:.3f}"
                         + (f" (per person {people['mean']:+.3f}, {people['level']:.0%} interval {people['lo']:+.3f}"
                            f" … {people['hi']:+.3f} over {_people(people)})" if people else ""))
        noisy = "shortfall_beyond_noise" in c and "shortfall_beyond_noise" in a
        key = "shortfall_beyond_noise" if noisy else "shortfall"
        what = "hedged shortfall beyond sampling noise" if noisy else "hedged shortfall"
        raw = f" (raw {c['shortfall']:.3f} vs {a['shortfall']:.3f})" if noisy else ""
        if key in c and key in a:
            if c[key] > a[key] + tolerance:
                problems.append(f"{what} on {name} {c[key]:.3f} > active {a[key]:.3f} + {tolerance:.3f}{raw}")
            else:
                notes.append(f"{what} on {name} {c[key]:.3f} vs {a[key]:.3f}{raw}")
    if problems:
        return False, "worse than the active version: " + "; ".join(problems + unsure)
    if unsure:
        return False, "insufficient evidence to promote; the active version stays: " + "; ".join(unsure)
    return True, f"not worse than the active version beyond {tolerance:.3f}: " + "; ".join(notes)


def out_of_fold_evidence(candidate_dir: Path, active_dir: Path,
                         learned_from: Sequence[LabelledPhoto]) -> tuple[list[LabelledPhoto], list[str]]:
    """Of the feedback photos the candidate learned from, those its recipe predicted out of fold
    and the active version never learned, with the recipe's out-of-fold top-1 leaf for each."""
    answers, seen = out_of_fold_answers(candidate_dir), learned_feedback(active_dir)
    chosen = [p for p in learned_from if photo_key(p) in answers and photo_key(p) not in seen]
    return chosen, [answers[photo_key(p)] for p in chosen]


def _people(judged: dict) -> str:
    """"N people", and where the interval pools both kinds, how many of each."""
    if "out_of_fold_people" not in judged:
        return f"{judged['people']} people"
    return (f"{judged['people']} people: {judged['held_back_people']} held back, "
            f"{judged['out_of_fold_people']} out of fold")


def gate_sets(data_dir: Path | None, split_file: Path, eval_split: str, feedback: Sequence[LabelledPhoto],
              taxonomy: Taxonomy) -> dict[str, list[LabelledPhoto]]:
    """The fixed evaluation split and the held-back people's feedback photos."""
    eval_photos = dataset_parts(Path(data_dir), taxonomy, split_file)[eval_split] if data_dir else []
    return {"eval": eval_photos, "feedback": list(feedback)}


def learned_from_every_photo(model_dir: Path) -> bool:
    """Was this version trained on all labelled photos, the evaluation split included?"""
    return ModelCard.load(model_dir).data.get("trained_on") == TRAINED_ON_ALL


def judge(candidate_dir: Path, active: tuple[str, Path] | None, sets: dict[str, list[LabelledPhoto]],
          cache: ProbabilityCache, tolerance: float, min_feedback: int,
          min_people: int = GATE_MIN_PEOPLE,
          out_of_fold: tuple[list[LabelledPhoto], list[str]] | None = None) -> GateDecision:
    """Score both versions on ``sets`` and decide. A set decides only with at least ``min_people``
    people (and, for feedback, ``min_feedback`` photos); without a decisive set, or when the
    per-person interval cannot rule out a loss beyond the tolerance, the evidence is insufficient
    and the active version stays. ``out_of_fold`` (:func:`out_of_fold_evidence`): photos of the
    people the candidate learned from and its recipe's out-of-fold answers, pooled into the
    feedback set's per-person interval."""
    if active is None:
        return GateDecision(promote=True, reason="no version is active: the candidate is the only one",
                            tolerance=tolerance)
    active_version, active_dir = active
    saw_eval = [name for name, d in (("the candidate", candidate_dir), (active_version, active_dir))
                if learned_from_every_photo(d)]
    enough = {name: bool(photos) and len({p.person for p in photos}) >= min_people
              and (name != "feedback" or len(photos) >= min_feedback) for name, photos in sets.items()}
    decisive = [name for name, photos in sets.items() if enough[name] and not (name == "eval" and saw_eval)]
    if not decisive:
        why = (f"the evaluation split is not decisive ({' and '.join(saw_eval)} learned from it)" if saw_eval
               else "no evaluation split of enough people")
        return GateDecision(promote=False, reason=f"insufficient evidence: nothing to judge the candidate on ({why} "
                            f"and fewer than {min_feedback} held-back feedback photos or {min_people} people); "
                            "the active version stays", active_version=active_version, tolerance=tolerance)
    cand = {name: score(candidate_dir, photos, cache) for name, photos in sets.items()}
    act = {name: score(active_dir, photos, cache) for name, photos in sets.items()}
    for name, photos in sets.items():
        if photos:
            truth = [p.leaf for p in photos]
            diff = (top1_hits(cache.probabilities(candidate_dir, [p.photo for p in photos]), truth,
                              ModelCard.load(candidate_dir).classes)
                    - top1_hits(cache.probabilities(active_dir, [p.photo for p in photos]), truth,
                                ModelCard.load(active_dir).classes))
            cand[name]["per_person"] = per_person(diff, [p.person for p in photos])
            if name == "feedback" and out_of_fold and out_of_fold[0]:
                _pool_out_of_fold(cand[name], act[name], diff, photos, *out_of_fold, active_dir, cache)
    record_audiences(cand, act, sets, candidate_dir, active_dir, cache)
    promote, reason = compare(cand, act, tolerance, decisive)
    if saw_eval and sets.get("eval"):
        reason += f" (reported, not decisive: eval, which {' and '.join(saw_eval)} learned from)"
    if sets.get("feedback") and "feedback" not in decisive:
        reason += f" (reported, not decisive: feedback: fewer than {min_feedback} photos or {min_people} people)"
    return GateDecision(promote=promote, reason=reason, candidate=cand, active=act, active_version=active_version,
                        tolerance=tolerance)


def _pool_out_of_fold(candidate: dict, active: dict, held_diff: np.ndarray, held: Sequence[LabelledPhoto],
                      photos: Sequence[LabelledPhoto], answers: Sequence[str], active_dir: Path,
                      cache: ProbabilityCache) -> None:
    """The feedback set's per-person interval over the held-back people and the out-of-fold ones
    (the held-back interval alone is kept as ``per_person_held_back``)."""
    truth = [p.leaf for p in photos]
    recipe_hits = np.array([_covers(node, answer) for node, answer in zip(truth, answers)], np.float64)
    active_hits = top1_hits(cache.probabilities(active_dir, [p.photo for p in photos]), truth,
                            ModelCard.load(active_dir).classes)
    people = len({p.person for p in photos})
    pooled = per_person(np.concatenate([held_diff, recipe_hits - active_hits]),
                        [*(p.person for p in held), *(p.person for p in photos)])
    candidate["per_person_held_back"] = candidate["per_person"]
    candidate["per_person"] = {**pooled, "held_back_people": candidate["per_person"]["people"],
                               "out_of_fold_people": people}
    candidate["out_of_fold"] = {"n": len(photos), "people": people, "top1": float(recipe_hits.mean())}
    active["out_of_fold"] = {"n": len(photos), "people": people, "top1": float(active_hits.mean())}


def audience_scores(model_dir: Path, photos: Sequence[LabelledPhoto], cache: ProbabilityCache,
                    targets: Sequence[float] = GATE_TARGETS) -> dict:
    """[J2]'s evidence, recorded beside the decision (not deciding): top-1 and hedged realised
    accuracy per audience (``evaluation.audience``: small and big senders, children's and adults'
    clothes where the photos say), each photo-weighted and person-weighted, answers judged by name
    as in :func:`score` (an answer a partial label cannot judge is left out)."""
    if not photos:
        return {}
    card = ModelCard.load(model_dir)
    probs = cache.probabilities(model_dir, [p.photo for p in photos])
    truth = [p.leaf for p in photos]
    aud = Audiences.of([p.person for p in photos], [p.kids for p in photos])
    hits = top1_hits(probs, truth, card.classes)
    out = {name: {**aud.head(name), **{w: {"top1": aud.rate(hits, name, w)} for w in WEIGHTINGS}}
           for name, mask in aud.masks.items() if mask.any()}
    if card.calibration:
        taxonomy = card_taxonomy(card)
        hedger, names = Hedger(taxonomy, card.calibration, classes=card.classes), taxonomy.node_names
        right = {str(t): np.array([_judged(names[v], node) for v, node in zip(hedger.choose_batch(probs, t), truth)])
                 for t in targets}
        for key, by_audience in hedged_figures(right, aud).items():
            for name, realised in by_audience.items():
                out[name].setdefault("hedged", {})[key] = realised
    return out


def record_audiences(candidate: dict[str, dict], active: dict[str, dict], sets: dict[str, list[LabelledPhoto]],
                     candidate_dir: Path, active_dir: Path, cache: ProbabilityCache) -> None:
    """Add ``audience`` (:func:`audience_scores`) to both versions' scores on every set."""
    for name, photos in sets.items():
        candidate[name]["audience"] = audience_scores(candidate_dir, photos, cache)
        active[name]["audience"] = audience_scores(active_dir, photos, cache)


def decide(ctx: JobContext, candidate_dir: Path) -> GateDecision:
    """``jobs.runner.GATE``: the candidate against the active version on the trainer's sets."""
    s = ctx.settings
    taxonomy = card_taxonomy(ModelCard.load(candidate_dir))
    labelled, _ = feedback_photos(current_feedback_items(ctx.database_url, s.resolved_photo_dir), taxonomy,
                                  partial=True)  # a Yes to a hedged answer counts too
    learned_from, held = split_by_person(labelled, s.feedback_holdout_share)
    sets = gate_sets(s.dataset_dir, s.split_file, s.gate_eval_split, held, taxonomy)
    active = ctx.active_model()
    out_of_fold = out_of_fold_evidence(candidate_dir, active[1], learned_from) if active else None
    ctx.progress("gate", 0.94, f"scoring on {len(sets['eval'])} evaluation and {len(held)} held-back feedback photos"
                 f" ({len(out_of_fold[0]) if out_of_fold else 0} more predicted out of fold)")
    return judge(candidate_dir, active, sets, ProbabilityCache(s.resolved_cache_dir / "probabilities"),
                 ctx.tolerance, s.gate_min_feedback, s.gate_min_people, out_of_fold)
