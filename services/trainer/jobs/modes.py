"""The retrain job's modes that learn from feedback (``jobs.runner.MODES``): ``quick`` and ``full``.

Both run a **model recipe** (``shared.recipe.ModelRecipe``): by default the active version's, read
from its card, so "retrain" means "this model again, with what people taught it"; a job that names
a ``recipe_preset`` runs that one-member recipe instead, and a job's ``recipe`` overrides apply to
every member. Both read the trainer's dataset (DATASET_DIR) and every current feedback verdict;
the people held back for the gate are never learned from. A "Yes" to a hedged answer (an inner
node) trains as a partial label.

* a **cross-fitted** recipe (the served pair): ``pipelines.crossfit.fit_model_recipe`` on every
  labelled photo plus the feedback photos: folds by person, per member the fold networks and the
  final one, temperature and λ cross-fitted as the recipe says. ``quick`` trims it to fit minutes
  on cached fronts (:func:`quick_recipe`) and **continues the active version** (:func:`warm_start_of`:
  every network starts from the served weights, calibration is refitted on the new people only);
  ``full`` runs it as recorded, from ImageNet: a rebuild that owes nothing to earlier versions.
* a **split** recipe (``wardrobe train``): ``quick`` refits on cached fronts (``refit.quick_refit``,
  the quick preset unless the active recipe says otherwise), ``full`` is ``train`` with the
  feedback photos added to the training split.

The candidate is written under the job's work directory; the runner publishes it and asks the gate.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from services.trainer.data.feedback import current_feedback_items, dataset_parts, feedback_photos, split_by_person
from services.trainer.config import TrainerSettings
from services.trainer.errors import RefitError
from services.trainer.jobs.context import JobContext, JobOutcome
from services.trainer.pipelines.crossfit import WarmStart, fit_model_recipe
from services.trainer.pipelines.refit import full_retrain, quick_refit
from shared.model_card import ModelCard
from shared.recipe import ModelRecipe, Recipe
from shared.taxonomy import Taxonomy, load_taxonomy

__all__ = ["run_quick", "run_full", "job_recipe", "quick_recipe", "training_photos", "learning_feedback",
           "warm_start_of"]

log = logging.getLogger(__name__)

# where each quick-refit stage sits in the whole job (the gate and publishing take the rest)
_QUICK_STAGES = {"features": (0.02, 0.3), "fine-tune": (0.3, 0.8), "calibrate": (0.8, 0.84),
                 "export": (0.84, 0.88), "done": (0.88, 0.88)}
QUICK_MAX_FOLDS = 3  # quick cross-fitting: 3 person-disjoint folds (4 fits per member instead of 6)
# quick on the served pair must fit 15 minutes on 2 cores with ~1,000 feedback photos
# (bench/quick_cost.py, docs/learning.md): each photo is trained on one of its training views per
# epoch (drawn afresh each epoch: the served crops upright, −30°, +30° all still teach) instead of all
# three, a third of the fine-tuning; the training curves score 64 photos instead of 256
QUICK_VIEWS_PER_EPOCH = 1
QUICK_CURVE_PHOTOS = 64


def job_recipe(ctx: JobContext, mode: str) -> ModelRecipe:
    """The recipe a job runs: the active version's (its card's ``model_recipe``) with the job's
    overrides; a named ``recipe_preset``, or no active version with a recipe, gives a one-member
    recipe of the preset (``quick`` for quick jobs)."""
    request = ctx.request
    active = ctx.active_model()
    kind = ModelCard.load(active[1]).model_recipe if active and request.recipe_preset == "default" else None
    if kind is None:
        preset = "quick" if mode == "quick" else request.recipe_preset
        return ModelRecipe([Recipe.from_overrides(request.recipe, preset=preset)])
    return kind.with_overrides(request.recipe)


def quick_recipe(kind: ModelRecipe) -> ModelRecipe:
    """``quick`` on a cross-fitted recipe: the same members (architecture, split, input size: the
    trainable part is the same), trained on the cached served crops only (upright, ±30°) when the
    recipe trains on them, else on one augmented view, for 2 epochs, with at most
    ``QUICK_MAX_FOLDS`` folds for the cross-fitting (the crc unit and angles as the recipe says).
    The job also trains each photo on ``QUICK_VIEWS_PER_EPOCH`` of those views per epoch."""
    members = [replace(m, views=0 if kind.train_on_served else 1, epochs=min(m.epochs, 2)) for m in kind.members]
    calibration = replace(kind.calibration, folds=min(kind.calibration.folds, QUICK_MAX_FOLDS))
    return replace(kind, members=members, calibration=calibration)


def warm_start_of(ctx: JobContext, kind: ModelRecipe) -> WarmStart | None:
    """Where a quick job's networks start: the active version when it is of ``kind`` (same members'
    architecture, split and input size: its back is the job's trainable part); an INT8 version is
    continued through the float version it was made from. None (from ImageNet) otherwise."""
    active = ctx.active_model()
    if active is None:
        return None
    version, path = active
    card = ModelCard.load(path)
    if card.quantization is not None:
        path = ctx.version_dir(card.quantization.source_version)
        if path is None:
            log.warning("the active version %s is INT8 and its float source %s is not registered: the quick job "
                        "starts from ImageNet", version, card.quantization.source_version)
            return None
        card = ModelCard.load(path)
    served = card.model_recipe
    shape = lambda r: [(m.architecture, m.split_block, m.input_size) for m in r.members]  # noqa: E731
    if served is None or shape(served) != shape(kind):
        log.info("the active version %s is not of the job's recipe: the quick job starts from ImageNet", version)
        return None
    # the served networks are near a minimum already; the recipe's rate, tuned for a new head on
    # ImageNet features, would first undo part of what they know (settings.quick_lr_scale)
    return WarmStart(Path(path), ctx.settings.quick_lr_scale)


def training_photos(settings: TrainerSettings, taxonomy: Taxonomy, learn: list) -> list:
    """What a cross-fitted job trains on: every labelled dataset photo (all splits) + ``learn``."""
    parts = dataset_parts(Path(settings.dataset_dir), taxonomy, settings.split_file)
    return [p for name in ("train", "val", "cal", "test") for p in parts.get(name, [])] + list(learn)


def learning_feedback(settings: TrainerSettings, taxonomy: Taxonomy) -> tuple[list, list]:
    """(feedback photos to learn from, those of the people held back for the gate): every current
    verdict, an inner node kept as a partial label."""
    labelled, _ = feedback_photos(current_feedback_items(settings.resolved_database_url,
                                                         settings.resolved_photo_dir), taxonomy, partial=True)
    return split_by_person(labelled, settings.feedback_holdout_share)


def _cross_fitted(ctx: JobContext, kind: ModelRecipe, mode: str, taxonomy, learn: list, facts: dict) -> JobOutcome:  # noqa: ANN001
    """``kind`` run (trimmed by :func:`quick_recipe` for quick) on the dataset + feedback photos;
    the card records ``kind`` itself, so the next job relearns the same kind."""
    photos = training_photos(ctx.settings, taxonomy, learn)
    run = quick_recipe(kind) if mode == "quick" else kind

    def report(stage: str, fraction: float, message: str | None) -> None:
        ctx.progress(stage, 0.03 + 0.85 * fraction, message)
        ctx.check_cancelled()

    trims = {"views_per_epoch": QUICK_VIEWS_PER_EPOCH, "curve_photos": QUICK_CURVE_PHOTOS} if mode == "quick" else {}
    start = warm_start_of(ctx, kind) if mode == "quick" else None
    card = fit_model_recipe(run, photos, taxonomy, ctx.settings.resolved_cache_dir / "features", ctx.work_dir,
                            ctx.version, report, data={"mode": mode}, recorded=kind, start=start, **trims)
    metrics = {k: v for k, v in card.metrics.items() if k != "history"}
    ctx.progress("trained", 0.88, f"{mode} candidate {ctx.version} in {metrics['train_seconds']:.0f} s")
    return JobOutcome(ctx.work_dir / ctx.version, {**facts, **metrics, "members": len(run.members),
                                                   "folds": run.calibration.folds,
                                                   "warm_start": card.data.get("warm_start")})


def _feedback(ctx: JobContext, taxonomy) -> tuple[list, dict]:  # noqa: ANN001
    s = ctx.settings
    if s.dataset_dir is None:
        raise RefitError("the trainer has no DATASET_DIR: a retrain needs the training photos")
    learn, held = learning_feedback(s, taxonomy)
    partial = sum(not taxonomy.nodes[p.leaf].is_leaf for p in learn)
    facts = {"feedback_photos_learned": len(learn), "feedback_photos_held_back": len(held),
             "feedback_people_learned": len({p.person for p in learn}),
             "feedback_partial_labels": partial}
    ctx.progress("feedback", 0.02, f"{len(learn)} feedback photos to learn from ({len(held)} held back for the "
                 f"gate, {partial} of them partial labels: a Yes to a hedged answer)")
    return learn, facts


def _run(ctx: JobContext, mode: str) -> tuple[JobOutcome | None, ModelRecipe, list, dict]:
    """What both modes start with: the feedback, the job's recipe, and a cross-fitted recipe run
    at once (the outcome); a split recipe is left to the mode (outcome None)."""
    taxonomy = load_taxonomy()
    learn, facts = _feedback(ctx, taxonomy)
    kind = job_recipe(ctx, mode)
    outcome = _cross_fitted(ctx, kind, mode, taxonomy, learn, facts) if kind.cross_fitted else None
    return outcome, kind, learn, facts


def run_quick(ctx: JobContext) -> JobOutcome:
    """``quick``: the trainable part of every member refit on cached fronts (module docstring)."""
    s, taxonomy = ctx.settings, load_taxonomy()
    outcome, kind, learn, facts = _run(ctx, "quick")
    if outcome is not None:
        return outcome
    parts = dataset_parts(Path(s.dataset_dir), taxonomy, s.split_file)
    # on cached fronts, one augmented view, at most 2 epochs (the quick preset's trims)
    recipe = replace(kind.members[0], fine_tune="back", views=1, epochs=min(kind.members[0].epochs, 2))

    def progress(stage: str, fraction: float) -> None:
        lo, hi = _QUICK_STAGES.get(stage, (0.0, 0.0))
        ctx.progress(stage, lo + (hi - lo) * fraction, None)
        ctx.check_cancelled()

    result = quick_refit(parts, learn, taxonomy, ctx.work_dir, ctx.version, s.resolved_cache_dir / "features",
                         recipe, progress)
    ctx.progress("refitted", 0.88, f"quick refit {ctx.version} in {result.seconds:.0f} s")
    history = result.card.metrics["history"]
    return JobOutcome(result.model_dir, {**facts, "refit_seconds": round(result.seconds, 1),
                                         "stage_seconds": {k: round(v, 1) for k, v in result.stages.items()},
                                         "features_computed": result.card.metrics["features_computed"],
                                         "val_acc": history[-1]["val_acc"] if history else None,
                                         "val_ece_after": result.card.metrics["val_ece_after"]})


def run_full(ctx: JobContext) -> JobOutcome:
    """``full``: the whole recipe again with the feedback photos added (module docstring)."""
    s, taxonomy = ctx.settings, load_taxonomy()
    outcome, kind, learn, facts = _run(ctx, "full")
    if outcome is not None:
        return outcome
    recipe = kind.members[0]
    ctx.progress("training", 0.05, f"full retrain, {recipe.architecture} (split {recipe.split_block})")
    result = full_retrain(Path(s.dataset_dir), learn, taxonomy, ctx.work_dir, ctx.version, s.split_file, recipe)
    ctx.check_cancelled()
    ctx.progress("trained", 0.9, f"trained {result.card.version} in {result.seconds:.0f} s")
    metrics = {k: v for k, v in result.card.metrics.items() if k != "history"}
    return JobOutcome(result.model_dir, {**facts, "train_seconds": round(result.seconds, 1), **metrics})
