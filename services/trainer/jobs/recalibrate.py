"""Recalibration from feedback: the hedger's λ tables refit on the people being served.

The model's probabilities stay; only the promise is re-fitted: conformal risk control
(``shared.hedging.calibration.calibrate``, finite-sample) on the active version's served
probabilities for the leaf-labelled feedback photos of the people who are *not* held back; the
held-back people judge it at the gate. So the target is checked on people the calibration never
saw, which is the population the guarantee is about.

The result is a **new model version that shares the ONNX file** with the version it recalibrates
(same bytes, same hash) and has its own card (new λ tables, ``data.recalibrated_from``), rather
than a "calibration revision" of the old version. Why: everything that already handles versions
handles it unchanged (the gate, activation, rollback, "which version answered", the re-hedging
of stored answers with the card of the version that made them), and rolling back a bad
calibration is the same command as rolling back a bad model. The cost is one more copy of the
ONNX file in the store (a hard link where the filesystem allows it).

Feedback photos whose node the model's tree does not have (a class added since) cannot calibrate it
and are skipped. A "Yes" to a hedged answer (an inner node) calibrates as a partial label: an
answer is known right when all the node's leaves are under it, known wrong when none is, and
excluded where unknown (``shared.hedging.calibration``).
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from services.trainer.jobs.context import JobContext, JobOutcome
from services.trainer.jobs.gate import ProbabilityCache, card_taxonomy
from services.trainer.data.feedback import LabelledPhoto, current_feedback_items, feedback_photos, split_by_person
from services.trainer.errors import RefitError
from services.trainer.pipelines.crossfit import LEARNED_FEEDBACK_FILE
from shared.hedging.calibration import Calibration, calibrate_for_unit, node_leaf_sets
from shared.model_card import CARD_FILENAME, ModelCard

__all__ = ["recalibrated_calibration", "write_recalibrated_version", "run_recalibrate"]

log = logging.getLogger(__name__)


def recalibrated_calibration(model_dir: Path, photos: Sequence[LabelledPhoto], cache: ProbabilityCache,
                             min_photos: int = 1, unit: str = "photo") -> tuple[Calibration, dict]:
    """(calibration for the card, facts about the data it was fitted on).

    ``unit``: what the crc table promises (``calibrate_for_unit``): ``"photo"`` per photo,
    ``"sender"`` a new person on average, ``"group"`` every group of new people within a slack."""
    card = ModelCard.load(model_dir)
    taxonomy = card_taxonomy(card)
    if list(taxonomy.leaves) != list(card.classes):
        raise RefitError(f"{card.version}'s classes are not its taxonomy's leaves")
    usable = [p for p in photos if p.leaf in taxonomy.nodes]  # a leaf, or an inner node: a partial label
    if len(usable) < min_photos:
        raise RefitError(f"recalibration needs at least {min_photos} feedback photos of people not held back "
                         f"whose node the model knows; there are {len(usable)}")
    probs = cache.probabilities(model_dir, [p.photo for p in usable])
    sets = node_leaf_sets([p.leaf for p in usable], taxonomy)
    exact = sets.sum(axis=1) == 1
    kwargs = {"targets": card.calibration.targets} if card.calibration else {}
    cal = calibrate_for_unit(probs, sets, np.array([p.person for p in usable]), taxonomy, unit, **kwargs)
    facts = {"crc_unit": unit, "photos": len(usable), "people": len({p.person for p in usable}),
             "partial_label_photos": int((~exact).sum()), "skipped_unknown_node": len(photos) - len(usable),
             "top1_on_feedback": float((probs[exact].argmax(1) == sets[exact].argmax(1)).mean()) if exact.any()
             else None}
    return cal, facts


def write_recalibrated_version(model_dir: Path, out_root: Path, version: str, calibration: Calibration,
                               facts: dict) -> Path:
    """``out_root/<version>/``: the same ONNX file (hard link, else a copy) and the list of feedback
    photos its weights learned (a quick job continuing this version must not take them for new
    people: ``pipelines.crossfit``), a card with the new λ tables."""
    card = ModelCard.load(model_dir)
    out = Path(out_root) / version
    out.mkdir(parents=True, exist_ok=True)
    for name in (card.onnx_file, LEARNED_FEEDBACK_FILE):
        src, dst = Path(model_dir) / name, out / name
        if not src.is_file():
            continue
        dst.unlink(missing_ok=True)
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)
    new = card.model_copy(update={
        "version": version,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "calibration": calibration,
        "data": {**card.data, "mode": "recalibrate", "recalibrated_from": card.version, "calibration_data": facts},
    })
    new.save(out)
    assert (out / CARD_FILENAME).is_file()
    return out


def run_recalibrate(ctx: JobContext) -> JobOutcome:
    """``jobs.runner.MODES["recalibrate"]``: the active version's λ tables refit from feedback."""
    s = ctx.settings
    active = ctx.active_model()
    if active is None:
        raise RefitError("no version is active: there is nothing to recalibrate")
    version, model_dir = active
    ctx.progress("feedback", 0.05, f"recalibrating {version} from feedback")
    taxonomy = card_taxonomy(ModelCard.load(model_dir))
    labelled, _ = feedback_photos(current_feedback_items(ctx.database_url, s.resolved_photo_dir), taxonomy,
                                  partial=True)
    learn, held = split_by_person(labelled, s.feedback_holdout_share)
    ctx.check_cancelled()
    ctx.progress("calibrate", 0.2, f"{len(learn)} feedback photos to calibrate on, {len(held)} held back")
    cache = ProbabilityCache(s.resolved_cache_dir / "probabilities")
    calibration, facts = recalibrated_calibration(model_dir, learn, cache, s.recalibration_min_photos,
                                                  s.recalibration_crc_unit)
    ctx.check_cancelled()
    out = write_recalibrated_version(model_dir, ctx.work_dir, ctx.version, calibration, facts)
    ctx.progress("calibrated", 0.9, f"candidate {ctx.version} shares {version}'s ONNX file")
    return JobOutcome(out, {"recalibrated_from": version, "held_back_photos": len(held), **facts})
