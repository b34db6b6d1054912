"""Settings of the sweeper worker (Celery beat + the sweeps of ``shared.sweeper``)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field

from shared.config import CommonSettings
from shared.retention import RetentionPolicy
from shared.sweeper import SweepPolicy


class SweeperSettings(CommonSettings):
    redis_url: str = Field(description="Broker (required).")
    sweep_interval_s: float = Field(5.0, gt=0.0, description="How often beat runs the sweeps.")
    sweep_grace_s: float = Field(
        15.0, gt=0.0, description="A job waiting this long for a stage whose broker queue holds no message at all "
        "lost its message: it is sent again.",
    )
    sweep_deadline_s: float = Field(
        300.0, gt=0.0, description="A job waiting this long is sent again whatever the broker holds.",
    )
    sweep_max_attempts: int = Field(5, ge=1, description="Sends of a job in all; then it fails with code gave_up.")
    training_heartbeat_timeout_s: float = Field(
        60.0, gt=0.0, description="A running training job whose trainer has not beaten for this long is failed.",
    )

    # --- retention (shared.retention; why these defaults: SECURITY.md, "What is stored") ------------
    retention_photos_days: float = Field(
        30.0, ge=0.0, description="Photos of finished classifications without feedback are deleted after this "
        "many days (0: kept forever).",
    )
    retention_classifications_days: float = Field(
        90.0, ge=0.0, description="Finished classifications without feedback are deleted after this many days "
        "(0: kept forever).",
    )
    retention_feedback_days: float = Field(
        365.0, ge=0.0, description="Feedback, with the classification and photo it judged (what the trainer learns "
        "from), is deleted after this many days (0: kept forever).",
    )
    retention_keep_wardrobe: bool = Field(
        True, description="A garment in its owner's wardrobe (finished, confirmed or corrected by its owner, not "
        "removed, the owner's key still usable) keeps its row, photo and the owner's verdict past every clock while "
        "it stays there; false: the clocks apply to it like to anything else.",
    )
    retention_interval_s: float = Field(3600.0, gt=0.0, description="How often beat runs the retention sweep.")

    @property
    def retention(self) -> RetentionPolicy:
        return RetentionPolicy(photos_days=self.retention_photos_days,
                               classifications_days=self.retention_classifications_days,
                               feedback_days=self.retention_feedback_days,
                               keep_wardrobe=self.retention_keep_wardrobe)

    @property
    def policy(self) -> SweepPolicy:
        return SweepPolicy(grace_s=self.sweep_grace_s, deadline_s=self.sweep_deadline_s,
                           max_attempts=self.sweep_max_attempts,
                           training_heartbeat_timeout_s=self.training_heartbeat_timeout_s)


@lru_cache
def get_settings() -> SweeperSettings:
    return SweeperSettings()
