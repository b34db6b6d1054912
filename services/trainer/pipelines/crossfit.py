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

Labels are node names: a leaf, or an inner node for a "Yes" to a hedged answer, trained with the
partial-label loss (``fit.loop.label_targets``). Calibration needs a leaf, so partial labels train
but do not (yet) calibrate. Progress is reported per member and fold, weighted by the fine-tuning
steps each fit takes, so the job's ETA (extrapolated from progress) is right from the first fold.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from services.trainer.data.dataset import load_photo
from services.trainer.data.feedback import LabelledPhoto
from services.trainer.fit.front_cache import FeatureStore
from services.trainer.fit.loop import eval_logits, fit_on_views, label_targets, new_net, seed_everything
from services.trainer.pipelines.version import write_version
from services.trainer.pipelines.cv import CURVE_PHOTOS, assign_folds, cross_fit
from services.trainer.pipelines.ensemble import Ensemble
from shared.model_card import TRAINED_ON_ALL, ModelCard, PreprocessConfig
from shared.recipe import ModelRecipe
from shared.taxonomy import Taxonomy

__all__ = ["fit_model_recipe", "Report"]

log = logging.getLogger(__name__)

# report(stage, fraction of the whole pipeline, message or None); it may raise to cancel
Report = Callable[[str, float, str | None], None]


def fit_model_recipe(kind: ModelRecipe, photos: Sequence[LabelledPhoto], taxonomy: Taxonomy, cache_root: Path,
                     out_root: Path, version: str, report: Report | None = None,
                     data: dict | None = None, recorded: ModelRecipe | None = None) -> ModelCard:
    """Run the cross-fitted recipe ``kind`` on ``photos`` and write ``out_root/<version>/``.

    ``recorded``: the recipe the card names when ``kind`` is a trimmed run of it (a quick job):
    the next job runs the recorded one again, never a trim of a trim (``data.fitted_with`` says
    what ran)."""
    if not kind.cross_fitted:
        raise ValueError("fit_model_recipe runs cross-fitted recipes; a split recipe is pipelines.train / refit")
    report = report or (lambda stage, fraction, message: None)
    start = time.time()
    classes = taxonomy.leaves
    refs = [p.photo for p in photos]
    y, partial = label_targets([p.leaf for p in photos], taxonomy)
    leaf = y < len(classes)
    persons = np.array([p.person for p in photos])
    k = kind.calibration.folds
    folds = assign_folds(list(persons), np.where(leaf, y, len(classes)), k, seed=kind.members[0].seed)
    angles = kind.calibration.angles
    cfg = PreprocessConfig(input_size=kind.members[0].input_size, resize_size=kind.members[0].resize_size)

    # progress: the front is ~10 %, the fits share the rest by their fine-tuning steps
    steps = {(i, f): m.epochs * (m.views + (len(angles) if kind.train_on_served else 0))
             * int((folds != f).sum() if f is not None else len(photos))
             for i, m in enumerate(kind.members) for f in [*range(k), None]}
    total = float(sum(steps.values()))
    front_share = 0.1
    pos = 0.0  # where the pipeline is, in [0, 0.97): members one after the other, fronts then fits

    oof_log_probs = np.zeros((len(kind.members), len(photos), len(classes)), np.float64)
    finals: list[torch.nn.Module] = []
    histories: list[list[dict]] = []
    computed = 0
    for i, member in enumerate(kind.members):
        name = f"member {i + 1}/{len(kind.members)} {member.architecture}"
        seed_everything(member.seed)
        torch.set_num_threads(member.threads)
        store = FeatureStore(Path(cache_root), new_net(member, len(classes)), member, cfg)
        lo, span = pos, front_share / len(kind.members)
        pos += span
        report(f"{name}: fronts", lo, f"{name}: front activations of {len(refs)} photos")
        served = store.served(refs, angles, lambda f: report(f"{name}: fronts", lo + span * 0.5 * f, None))
        parts = [served.swapaxes(0, 1)] if kind.train_on_served else []
        if member.views:  # (N, V, C, h, w) → (V, N, C, h, w), before the served crops
            parts.insert(0, store.augmented(refs, member.views, lambda f: report(
                f"{name}: fronts", lo + span * (0.5 + 0.5 * f), None)).swapaxes(0, 1))
        computed += store.computed
        views = np.ascontiguousarray(np.concatenate(parts))  # (V, N, C, h, w)
        plain = np.ascontiguousarray(served[:, 0])
        del parts

        for fold in [*range(k), None]:
            held = np.flatnonzero(folds == fold) if fold is not None else np.zeros(0, np.int64)
            train_idx = np.flatnonzero(folds != fold) if fold is not None else np.arange(len(photos))
            curve = (held if fold is not None else train_idx)
            curve = curve[leaf[curve]][:CURVE_PHOTOS]
            what = f"{name}, fold {fold + 1}/{k}" if fold is not None else f"{name}, final network"
            base, share = pos, 0.97 * (1 - front_share) * steps[(i, fold)] / total
            pos += share
            report(what, base, f"{what}: fine-tuning on {len(train_idx)} photos")
            seed_everything(member.seed + (fold if fold is not None else 0))
            net = new_net(member, len(classes))
            history = fit_on_views(net, views, train_idx, y, member, plain[curve], y[curve], partial=partial,
                                   progress=lambda f, b=base, s=share, w=what: report(w, b + s * f, None))
            if fold is not None:
                logits = eval_logits(net, net.forward_from_front, plain[held])
                oof_log_probs[i, held] = torch.log_softmax(torch.from_numpy(logits).double(), 1).numpy()
                top1 = float((logits.argmax(1)[leaf[held]] == y[held][leaf[held]]).mean()) if leaf[held].any() else 0
                log.info("%s: %d held-out photos, top-1 %.3f", what, len(held), top1)
            else:
                finals.append(net.eval())
                histories.append(history)

    # cross-fitting on the leaf-labelled photos' averaged out-of-fold log-probabilities
    report("calibrate", 0.97, "cross-fitting temperature and λ tables on out-of-fold predictions")
    combined = oof_log_probs.mean(0).astype(np.float32)
    oof = {"labels": y[leaf], "senders": persons[leaf], "folds": folds[leaf], "logits_0": combined[leaf]}
    fit = cross_fit(oof, taxonomy, kind.calibration.crc_unit,
                    "temperature and λ tables fitted on the members' averaged out-of-fold predictions "
                    "(person-disjoint fold models, training job); every member's shipped network was trained "
                    "on all photos")
    oof_top1 = float((combined[leaf].argmax(1) == y[leaf]).mean())
    report("export", 0.98, "exporting the candidate")
    net = finals[0] if len(finals) == 1 else Ensemble(finals)
    n_feedback = sum(p.source == "feedback" for p in photos)
    card = write_version(
        net, Path(out_root) / version, version=version, model_recipe=recorded or kind, taxonomy=taxonomy,
        temperature=fit.temperature, calibration=fit.calibration,
        parity_photos=[load_photo(r.path) for r in refs[:8]], history=histories[0],
        data={**(data or {}), "photos": len(photos), "senders": int(len(set(persons.tolist()))),
              "feedback_photos": n_feedback, "partial_label_photos": int((~leaf).sum()),
              "trained_on": TRAINED_ON_ALL, "calibration_source": fit.source,
              **({"fitted_with": kind.to_dict()} if recorded is not None and recorded != kind else {})},
        metrics={"history": histories[0], "oof_top1": oof_top1, "oof_ece_before": fit.ece_before,
                 "oof_ece_after": fit.ece_after, "train_seconds": time.time() - start,
                 "features_computed": computed, "train_device": "cpu"},
    )
    log.info("cross-fitted %s from %d photos (%d feedback) in %.0f s, OOF top-1 %.3f", version, len(photos),
             n_feedback, time.time() - start, oof_top1)
    return card
