"""The retrain job's modes that learn from feedback (``jobs.runner.MODES``): ``quick`` and ``full``.

Both read the trainer's dataset (DATASET_DIR, split by SPLIT_FILE) and every current feedback
verdict; the people held back for the gate (``feedback_data``) are never learned from. The
candidate is written under the job's work directory; the runner publishes it and asks the gate.
"""

from __future__ import annotations

import logging
from pathlib import Path

from services.trainer.jobs.context import JobContext, JobOutcome
from shared.recipe import Recipe
from services.trainer.data.feedback import current_feedback_items, dataset_parts, feedback_photos, split_by_person
from services.trainer.errors import RefitError
from services.trainer.pipelines.refit import full_retrain, quick_refit
from shared.taxonomy import load_taxonomy

__all__ = ["run_quick", "run_full"]

log = logging.getLogger(__name__)

# where each quick-refit stage sits in the whole job (the gate and publishing take the rest)
_QUICK_STAGES = {"features": (0.02, 0.3), "fine-tune": (0.3, 0.8), "calibrate": (0.8, 0.84),
                 "export": (0.84, 0.88), "done": (0.88, 0.88)}


def _feedback(ctx: JobContext, taxonomy) -> tuple[list, dict]:  # noqa: ANN001
    s = ctx.settings
    if s.dataset_dir is None:
        raise RefitError("the trainer has no DATASET_DIR: a retrain needs the training photos")
    labelled, skipped_inner = feedback_photos(current_feedback_items(ctx.database_url, s.resolved_photo_dir),
                                              taxonomy)
    learn, held = split_by_person(labelled, s.feedback_holdout_share)
    facts = {"feedback_photos_learned": len(learn), "feedback_photos_held_back": len(held),
             "feedback_people_learned": len({p.person for p in learn}),
             "feedback_skipped_inner_node": skipped_inner}
    ctx.progress("feedback", 0.02, f"{len(learn)} feedback photos to learn from ({len(held)} held back for the "
                 f"gate, {skipped_inner} inner-node verdicts skipped)")
    return learn, facts


def run_quick(ctx: JobContext) -> JobOutcome:
    """``quick``: the last block and the head refit on cached features (``refit.quick_refit``)."""
    s = ctx.settings
    taxonomy = load_taxonomy()
    learn, facts = _feedback(ctx, taxonomy)
    parts = dataset_parts(Path(s.dataset_dir), taxonomy, s.split_file)
    recipe = Recipe.from_overrides(ctx.request.recipe, preset="quick")

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
    """``full``: the model recipe (the job's preset and overrides) with the feedback photos added."""
    s = ctx.settings
    taxonomy = load_taxonomy()
    learn, facts = _feedback(ctx, taxonomy)
    recipe = Recipe.from_overrides(ctx.request.recipe, preset=ctx.request.recipe_preset)
    ctx.progress("training", 0.05, f"full retrain, recipe preset {ctx.request.recipe_preset!r}")
    result = full_retrain(Path(s.dataset_dir), learn, taxonomy, ctx.work_dir, ctx.version, s.split_file, recipe)
    ctx.check_cancelled()
    ctx.progress("trained", 0.9, f"trained {result.card.version} in {result.seconds:.0f} s")
    metrics = {k: v for k, v in result.card.metrics.items() if k != "history"}
    return JobOutcome(result.model_dir, {**facts, "train_seconds": round(result.seconds, 1), **metrics})
