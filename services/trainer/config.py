"""Trainer settings, from the environment (WARDROBE_DATA_DIR-style names are not used: plain
names like DATASET_DIR, as every other service)."""

from __future__ import annotations

from pathlib import Path

from shared.config import CommonSettings


class TrainerSettings(CommonSettings):
    dataset_dir: Path | None = None  # images.csv + images/; the CLI's --data overrides it
    threads: int = 2


def get_settings() -> TrainerSettings:
    return TrainerSettings()
