"""Settings of the trainer (the ``wardrobe train`` / ``evaluate`` commands and the trainer worker).

How many threads training uses is part of the recipe (``Recipe.threads``; ``wardrobe train --set
threads=N``), not a setting.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from shared.config import BUNDLED_MODELS_DIR, CommonSettings
from shared.schemas import TrainingMode


class TrainerSettings(CommonSettings):
    dataset_dir: Path | None = Field(None, description="images.csv + images/; the CLI's --data overrides it.")
    # --- training jobs (services.trainer.jobs.runner) ---------------------------------------
    work_dir: Path | None = Field(None, description="Scratch space of training jobs; data_dir/trainer if unset.")
    heartbeat_interval_s: float = Field(5.0, gt=0, description="A running job's worker beats this often.")
    training_heartbeat_timeout_s: float = Field(
        60.0, gt=0, description="A running job whose worker has not beaten for this long is failed by the sweep."
    )
    sweep_interval_s: float = Field(30.0, gt=0, description="Celery beat runs the dead-job sweep this often.")
    slot_retry_s: float = Field(5.0, gt=0, description="A job waiting for the running one re-checks this often.")
    gate_tolerance: float = Field(0.01, ge=0, le=0.5, description="Top-1 a candidate may lose and still be promoted.")
    # --- learning from feedback (pipelines/refit.py, jobs/gate.py, jobs/recalibrate.py) -------------
    split_file: Path = Field(BUNDLED_MODELS_DIR / "split.json",
                             description="The dataset's sender split (train/val/cal/test) every refit and the gate use.")
    gate_eval_split: str = Field("test", pattern="^(train|val|cal|test)$",
                                 description="The fixed sender-disjoint split the gate scores candidates on.")
    feedback_holdout_share: float = Field(
        0.2, ge=0.0, lt=1.0, description="Share of feedback people (by a hash of the caller) held back for the gate.")
    gate_min_feedback: int = Field(
        30, ge=1, description="Held-back feedback photos below which that set is reported but not decisive.")
    gate_min_people: int = Field(
        20, ge=1, description="People a gate set needs to decide (fewer: insufficient evidence, the active version "
        "stays); jobs.gate.GATE_MIN_PEOPLE, chosen by bench/gate_min_people.py (docs/learning.md).")
    quick_lr_scale: float = Field(
        0.1, gt=0, le=1.0, description="A quick job continues the active version at this fraction of the recipe's "
        "learning rate (jobs.modes.warm_start_of; compared in docs/learning.md).")
    recalibration_min_photos: int = Field(
        100, ge=1, description="Leaf-labelled feedback photos a recalibration needs (outside the held-back people).")
    recalibration_crc_unit: Literal["photo", "sender", "group"] = Field(
        "photo", description="Recalibration's conformal unit: 'photo' (per photo, measured to hold on new people's "
        "photos: docs/learning.md), 'sender' (the error averaged per person) or 'group' (every group of ~50 "
        "people within 1 point, docs/hedging.md).")
    cache_dir: Path | None = Field(None, description="Cached front activations and probabilities; data_dir/cache if unset.")
    # --- automatic trigger (off by default) -------------------------------------------------
    auto_retrain_after_feedback: int | None = Field(
        None, gt=0, description="Enqueue a retrain once this many feedback items arrived since the last job."
    )
    auto_retrain_every_s: float | None = Field(None, gt=0, description="Enqueue a retrain on this schedule.")
    auto_retrain_mode: TrainingMode = Field("quick", description="Mode of automatic jobs.")
    auto_check_interval_s: float = Field(60.0, gt=0, description="How often beat checks the automatic trigger.")

    @property
    def resolved_cache_dir(self) -> Path:
        return self.cache_dir or self.data_dir / "cache"

    @property
    def resolved_work_dir(self) -> Path:
        return self.work_dir or self.data_dir / "trainer"


def get_settings() -> TrainerSettings:
    return TrainerSettings()
