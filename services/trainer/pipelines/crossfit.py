"""A cross-fitted model recipe run on labelled photos: what a training job does to relearn the
served kind (``jobs.modes``), composed of the core.

    1. front activations of every photo for every member, from the one front cache
       (``fit.front_cache``: photo sha256 + front hash; dataset photos are computed once and reused
       by every later job, feedback photos pay the front once)
    2. person-disjoint folds (``cv.assign_folds``: a feedback giver is a sender like any other);
       per member and fold a fresh back + head fine-tuned (``fit.loop.fit_on_views``) on the other
       folds; the held-out photos' served-crop logits are the out-of-fold predictions
    3. per member the final network on every photo
    4. the members' out-of-fold log-probabilities averaged (the recipe's combination), temperature
       and λ tables cross-fitted on them (``cv.cross_fit``, the recipe's crc unit), the members'
       final networks written as one version (``model.export.write_version``)

A job that continues the served version (``start``: a :class:`WarmStart`, what ``quick`` passes)
starts every member's fold and final networks from that version's weights
(``model.warm_start``) at a fraction of the recipe's learning rate: 2 passes over the photos are
then a fine-tune of the served network, not a fit from ImageNet (which leaves a quick candidate at
~56 % out-of-fold, docs/learning.md). The start version has learned the dataset photos (and the
feedback its own start learned: its ``LEARNED_FEEDBACK_FILE``), so out-of-fold predictions
of those are not honest; temperature and λ are cross-fitted on the photos it never saw (the new
feedback people) only, and kept from the start version when they are fewer than
``MIN_CALIBRATION_PEOPLE`` people.

Labels are node names: a leaf, or an inner node for a "Yes" to a hedged answer, trained with the
partial-label loss (``fit.loop.label_targets``), and calibrate as such: temperature by the NLL of the
mass on the node's leaves, λ with answers known right / known wrong / unknown (excluded), see
``shared.hedging.calibration``. Progress is reported per member and fold, weighted by the fine-tuning
steps each fit takes, so the job's ETA (extrapolated from progress) is right from the first fold.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from services.trainer.data.dataset import PhotoRef, load_photo
from services.trainer.data.feedback import LabelledPhoto
from services.trainer.fit.front_cache import FeatureStore
from services.trainer.fit.loop import eval_logits, fit_on_views, label_targets, new_net, seed_everything
from services.trainer.model.warm_start import warm_start
from services.trainer.pipelines.version import write_version
from services.trainer.pipelines.cv import CURVE_PHOTOS, CrossFit, assign_folds, cross_fit
from services.trainer.pipelines.ensemble import Ensemble
from shared.hedging.calibration import node_leaf_sets
from shared.model_card import TRAINED_ON_ALL, ModelCard, PreprocessConfig
from shared.recipe import ModelRecipe
from shared.taxonomy import Taxonomy

__all__ = ["fit_model_recipe", "member_fronts", "Report", "WarmStart", "MIN_CALIBRATION_PEOPLE", "photo_key",
           "learned_feedback", "LEARNED_FEEDBACK_FILE",
           "OUT_OF_FOLD_FILE", "out_of_fold_answers"]

log = logging.getLogger(__name__)

# report(stage, fraction of the whole pipeline, message or None); it may raise to cancel
Report = Callable[[str, float, str | None], None]

# fewer new people than this and a warm-started job keeps the start version's temperature and λ
# tables: the gate asks as many held-back people (``jobs.gate.GATE_MIN_PEOPLE``) before it trusts a
# comparison, and a promise fitted on fewer groups of people is no promise
MIN_CALIBRATION_PEOPLE = 20


@dataclass(frozen=True)
class WarmStart:
    """Where a job's networks start: a served version (its directory, with ``model.onnx`` and the
    card), continued at ``lr_scale`` × the recipe's learning rate."""

    version_dir: Path
    lr_scale: float


# the feedback photos a version learned, its own and those of the versions it continues: one
# ``photo_key`` per line next to the card (a file, not a card field: it grows with every verdict,
# and the card is read by every service that loads the version)
LEARNED_FEEDBACK_FILE = "learned_feedback.txt"


# the recipe's out-of-fold top-1 leaf for each feedback photo whose prediction is honest (its
# person was in another fold, and the start version never learned it): ``{photo_key: leaf}``, the
# evidence about the recipe that ``jobs.gate`` pools with the held-back people's (a file beside the
# card for the same reason as ``LEARNED_FEEDBACK_FILE``)
OUT_OF_FOLD_FILE = "out_of_fold_feedback.json"


def photo_key(photo: LabelledPhoto) -> str:
    """How a version names a feedback photo it learned: its content hash's first 16 hex digits
    (enough to tell 10⁹ photos apart at a quarter of the size)."""
    return photo.photo.sha256[:16]


def learned_feedback(version_dir: Path) -> set[str]:
    """The ``photo_key`` of every feedback photo the version at ``version_dir`` learned (none for a
    version made before the file existed, or from the dataset alone)."""
    path = Path(version_dir) / LEARNED_FEEDBACK_FILE
    return set(path.read_text().split()) if path.is_file() else set()


def out_of_fold_answers(version_dir: Path) -> dict[str, str]:
    """``OUT_OF_FOLD_FILE`` of the version at ``version_dir`` (empty for a version without one: a
    bundled, recalibrated or single-split version)."""
    path = Path(version_dir) / OUT_OF_FOLD_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def member_fronts(kind: ModelRecipe, i: int, refs: Sequence[PhotoRef], cache_root: Path, n_classes: int,
                  progress: Callable[[float], None] | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """Member ``i``'s training views (V, N, C, h, w: its augmented views, then the served crops when
    the recipe trains on them), its plain served crops (N, C, h, w) and how many arrays had to be
    computed, all through the one front cache. Also what ``bench/quick_cost.py --warm`` calls to
    fill the cache for exactly what a job will read."""
    member = kind.members[i]
    progress = progress or (lambda f: None)
    seed_everything(member.seed)
    torch.set_num_threads(member.threads)
    first = kind.members[0]  # the served preprocessing (one for the whole version)
    cfg = PreprocessConfig(input_size=first.input_size, resize_size=first.resize_size)
    store = FeatureStore(Path(cache_root), new_net(member, n_classes), member, cfg)
    served = store.served(refs, kind.calibration.angles, lambda f: progress(0.5 * f))
    parts = [served.swapaxes(0, 1)] if kind.train_on_served else []
    if member.views:  # (N, V, C, h, w) → (V, N, C, h, w), before the served crops
        parts.insert(0, store.augmented(refs, member.views, lambda f: progress(0.5 + 0.5 * f)).swapaxes(0, 1))
    views = np.ascontiguousarray(np.concatenate(parts))
    plain = np.ascontiguousarray(served[:, 0])
    return views, plain, store.computed


def fit_model_recipe(kind: ModelRecipe, photos: Sequence[LabelledPhoto], taxonomy: Taxonomy, cache_root: Path,
                     out_root: Path, version: str, report: Report | None = None,
                     data: dict | None = None, recorded: ModelRecipe | None = None,
                     views_per_epoch: int | None = None, curve_photos: int = CURVE_PHOTOS,
                     start: WarmStart | None = None) -> ModelCard:
    """Run the cross-fitted recipe ``kind`` on ``photos`` and write ``out_root/<version>/``.

    ``recorded``: the recipe the card names when ``kind`` is a trimmed run of it (a quick job):
    the next job runs the recorded one again, never a trim of a trim (``data.fitted_with`` says
    what ran). ``views_per_epoch`` and ``curve_photos``: a quick job's further trims (each photo
    trained on that many of its views per epoch, drawn afresh each epoch; fewer photos scored for
    the training curves)."""
    if not kind.cross_fitted:
        raise ValueError("fit_model_recipe runs cross-fitted recipes; a split recipe is pipelines.train / refit")
    report = report or (lambda stage, fraction, message: None)
    began = time.time()
    classes = taxonomy.leaves
    refs = [p.photo for p in photos]
    y, partial = label_targets([p.leaf for p in photos], taxonomy)
    leaf = y < len(classes)
    persons = np.array([p.person for p in photos])
    k = kind.calibration.folds
    folds = assign_folds(list(persons), np.where(leaf, y, len(classes)), k, seed=kind.members[0].seed)
    angles = kind.calibration.angles
    start_card = ModelCard.load(start.version_dir) if start else None
    learned_before = learned_feedback(start.version_dir) if start else set()
    learned = learned_before | {photo_key(p) for p in photos if p.source == "feedback"}
    # the photos whose out-of-fold predictions are honest: all of them from ImageNet; from a start
    # version, the feedback photos it never learned
    fresh = np.array([start is None or (p.source == "feedback" and photo_key(p) not in learned_before)
                      for p in photos])

    # progress: the front is ~10 %, the fits share the rest by their fine-tuning steps
    steps = {(i, f): m.epochs * min(views_per_epoch or 10 ** 6, m.views + (len(angles) if kind.train_on_served else 0))
             * int((folds != f).sum() if f is not None else len(photos))
             for i, m in enumerate(kind.members) for f in [*range(k), None]}
    total = float(sum(steps.values()))
    front_share = 0.1
    pos = 0.0  # where the pipeline is, in [0, 0.97): members one after the other, fronts then fits

    oof_log_probs = np.zeros((len(kind.members), len(photos), len(classes)), np.float64)
    finals: list[torch.nn.Module] = []
    histories: list[list[dict]] = []
    computed = 0
    stage_seconds: dict[str, float] = {}  # fronts per member, each fit, calibration, export: where a job's time goes
    fits: list[dict] = []  # per fit: photos, views, epochs, wall and process CPU seconds (cost per photo·view·epoch)
    for i, member in enumerate(kind.members):
        name = f"member {i + 1}/{len(kind.members)} {member.architecture}"
        lo, span = pos, front_share / len(kind.members)
        pos += span
        report(f"{name}: fronts", lo, f"{name}: front activations of {len(refs)} photos")
        t = time.time()
        views, plain, n = member_fronts(kind, i, refs, cache_root, len(classes),
                                        lambda f: report(f"{name}: fronts", lo + span * f, None))
        stage_seconds[f"{name}: fronts"] = round(time.time() - t, 2)
        computed += n

        for fold in [*range(k), None]:
            held = np.flatnonzero(folds == fold) if fold is not None else np.zeros(0, np.int64)
            train_idx = np.flatnonzero(folds != fold) if fold is not None else np.arange(len(photos))
            curve = (held if fold is not None else train_idx)
            curve = curve[leaf[curve]][:curve_photos]
            what = f"{name}, fold {fold + 1}/{k}" if fold is not None else f"{name}, final network"
            base, share = pos, 0.97 * (1 - front_share) * steps[(i, fold)] / total
            pos += share
            report(what, base, f"{what}: fine-tuning on {len(train_idx)} photos")
            t, cpu = time.time(), time.process_time()
            seed_everything(member.seed + (fold if fold is not None else 0))
            net = new_net(member, len(classes))
            fit_recipe = member
            if start is not None:
                warm_start(net, start.version_dir / start_card.onnx_file, i if len(kind.members) > 1 else None,
                           classes_match=list(start_card.classes) == classes)
                fit_recipe = replace(member, lr=member.lr * start.lr_scale)
            history = fit_on_views(net, views, train_idx, y, fit_recipe, plain[curve], y[curve], partial=partial,
                                   progress=lambda f, b=base, s=share, w=what: report(w, b + s * f, None),
                                   views_per_epoch=views_per_epoch)
            if fold is not None:
                logits = eval_logits(net, net.forward_from_front, plain[held])
                oof_log_probs[i, held] = torch.log_softmax(torch.from_numpy(logits).double(), 1).numpy()
                top1 = float((logits.argmax(1)[leaf[held]] == y[held][leaf[held]]).mean()) if leaf[held].any() else 0
                log.info("%s: %d held-out photos, top-1 %.3f", what, len(held), top1)
            else:
                finals.append(net.eval())
                histories.append(history)
            stage_seconds[what] = round(time.time() - t, 2)
            fits.append({"member": i, "fold": fold, "photos": int(len(train_idx)),
                         "views": int(min(views_per_epoch or views.shape[0], views.shape[0])),
                         "epochs": member.epochs, "seconds": stage_seconds[what],
                         "cpu_seconds": round(time.process_time() - cpu, 2)})

    # cross-fitting on every photo's averaged out-of-fold log-probabilities; a partial label (a "Yes"
    # to a hedged answer) is calibration evidence too (cv.cross_fit: its leaves as the label set)
    report("calibrate", 0.97, "cross-fitting temperature and λ tables on out-of-fold predictions")
    t = time.time()
    combined = oof_log_probs.mean(0).astype(np.float32)
    sets = node_leaf_sets([p.leaf for p in photos], taxonomy)
    fit = _calibrate(combined, sets, persons, folds, fresh, taxonomy, kind, start_card)
    scored = leaf & fresh  # the out-of-fold top-1 on the photos whose predictions are honest
    oof_top1 = float((combined[scored].argmax(1) == y[scored]).mean()) if scored.any() else None
    stage_seconds["calibrate"] = round(time.time() - t, 2)
    report("export", 0.98, "exporting the candidate")
    t = time.time()
    net = finals[0] if len(finals) == 1 else Ensemble(finals)
    n_feedback = sum(p.source == "feedback" for p in photos)
    card = write_version(
        net, Path(out_root) / version, version=version, model_recipe=recorded or kind, taxonomy=taxonomy,
        temperature=fit.temperature, calibration=fit.calibration,
        parity_photos=[load_photo(r.path) for r in refs[:8]], history=histories[0],
        data={**(data or {}), "photos": len(photos), "senders": int(len(set(persons.tolist()))),
              "feedback_photos": n_feedback, "partial_label_photos": int((~leaf).sum()),
              "trained_on": TRAINED_ON_ALL, "calibration_source": fit.source,
              "learned_feedback_photos": len(learned),
              **({"warm_start": {"from": start_card.version, "lr_scale": start.lr_scale,
                                 "oof_photos": int(scored.sum()),
                                 "oof_people": int(len(set(persons[scored].tolist())))}} if start else {}),
              **({"fitted_with": {**kind.to_dict(), "views_per_epoch": views_per_epoch,
                                  "curve_photos": curve_photos}}
                 if recorded is not None and recorded != kind else {})},
        metrics={"history": histories[0], "oof_top1": oof_top1, "oof_ece_before": fit.ece_before,
                 "oof_ece_after": fit.ece_after, "train_seconds": time.time() - began,
                 "features_computed": computed, "train_device": "cpu", "stage_seconds": stage_seconds,
                 "fits": fits},
    )
    (Path(out_root) / version / LEARNED_FEEDBACK_FILE).write_text("".join(f"{key}\n" for key in sorted(learned)))
    honest_feedback = fresh & np.array([p.source == "feedback" for p in photos])
    answers = {photo_key(p): classes[int(top)] for p, top, ok in zip(photos, combined.argmax(1), honest_feedback) if ok}
    (Path(out_root) / version / OUT_OF_FOLD_FILE).write_text(json.dumps(answers, sort_keys=True) + "\n")
    # the export's own time is known only after the card is written: the job's metrics get it (not the card file)
    card.metrics["stage_seconds"] = {**stage_seconds, "export": round(time.time() - t, 2)}
    log.info("cross-fitted %s from %d photos (%d feedback) in %.0f s, OOF top-1 %.3f", version, len(photos),
             n_feedback, time.time() - began, oof_top1)
    return card


def _calibrate(combined: np.ndarray, sets: np.ndarray, persons: np.ndarray, folds: np.ndarray, fresh: np.ndarray,
               taxonomy: Taxonomy, kind: ModelRecipe, start_card: ModelCard | None) -> CrossFit:
    """Temperature and λ tables cross-fitted on the out-of-fold predictions of the ``fresh`` photos
    (all of them from ImageNet; a warm start's new feedback people), or the start version's kept
    when those are fewer than ``MIN_CALIBRATION_PEOPLE`` people (the card says which)."""
    people = len(set(persons[fresh].tolist()))
    if start_card is not None and people < MIN_CALIBRATION_PEOPLE:
        log.info("%d new people: temperature and λ tables kept from %s", people, start_card.version)
        return CrossFit(start_card.temperature, start_card.calibration, None, None,
                        {**(start_card.data.get("calibration_source") or {}),
                         "kept_from": start_card.version,
                         "why": f"{people} new people, fewer than the {MIN_CALIBRATION_PEOPLE} a refit needs"})
    oof = {"labels": sets[fresh].argmax(1), "senders": persons[fresh], "folds": folds[fresh],
           "logits_0": combined[fresh], "label_sets": sets[fresh]}
    what = ("temperature and λ tables fitted on the members' averaged out-of-fold predictions "
            "(person-disjoint fold models, training job); every member's shipped network was trained on all photos")
    if start_card is not None:
        what += (f"; the networks continued {start_card.version}, so only the {people} feedback people it never "
                 "learned are evidence")
    return cross_fit(oof, taxonomy, kind.calibration.crc_unit, what)
