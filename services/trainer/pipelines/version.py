"""Writing a model version: the one place every pipeline (train, quick refit, cv ship, ensemble,
the training jobs' cross-fitted recipes) ends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from PIL import Image

from services.trainer.evaluation import plots
from services.trainer.model.export import export_model, version_card
from shared.model_card import ModelCard, PreprocessConfig
from shared.recipe import ModelRecipe
from shared.taxonomy import Taxonomy

__all__ = ["write_version"]


def write_version(net: torch.nn.Module, model_dir: Path, *, version: str, model_recipe: ModelRecipe,
                  taxonomy: Taxonomy, temperature: float, calibration: Any, parity_photos: list[Image.Image],
                  history: list[dict], data: dict, metrics: dict, recipe_extra: dict | None = None,
                  threads: int = 2) -> ModelCard:
    """Write a model version: the one place every pipeline (train, quick refit, cv ship, ensemble,
    the training jobs) ends. Export with the parity check, the training curves, the card (with the
    model recipe that made it) saved next to the ONNX file; the store and registry take it from
    there. ``recipe_extra``: more for the card's ``recipe`` (where each member's CV came from)."""
    first = model_recipe.members[0]
    cfg = PreprocessConfig(input_size=first.input_size, resize_size=first.resize_size)
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    export_info = export_model(net, temperature, cfg, model_dir, parity_photos, threads=threads, tta=first.tta)
    plots.training_curves(history, model_dir / "training_curves.png")
    card = version_card(version=version, recipe=first, model_recipe=model_recipe, cfg=cfg,
                        classes=taxonomy.leaves, taxonomy=taxonomy, temperature=temperature,
                        calibration=calibration, export_info=export_info, data=data, metrics=metrics,
                        recipe_extra=recipe_extra)
    card.save(model_dir)
    return card
