"""Several cross-validated networks served as one model (``wardrobe ensemble``).

Two networks that see the same photo through different pretrained backbones make different
mistakes, so averaging their log-probabilities is right more often than either (measured by the
same 5-fold person-grouped CV: docs/model.md). The members are ``wardrobe cv`` runs with the
**same folds** (same photos, same seed), so their out-of-fold predictions combine photo by photo:

* the ensemble's CV is the report of the averaged out-of-fold log-probabilities, every photo
  scored by members that never saw its sender;
* the shipped ensemble is the members' networks trained on all photos, in **one ONNX graph**
  (one input, one output: the serving path, the model contract and the hedger do not change),
  with temperature and λ tables cross-fitted on the averaged out-of-fold predictions.

All members take the same served crop (one ``PreprocessConfig``), so nothing is resized inside
the graph and each member sees exactly what it was trained and cross-validated on.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn

from services.trainer.pipelines.cv import cross_fit, cross_fitted_recipe, load_final, load_oof, parity_photos
from services.trainer.model.net import GarmentNet
from services.trainer.pipelines.version import write_version
from shared.recipe import Recipe
from shared.model_card import TRAINED_ON_ALL, PreprocessConfig
from shared.taxonomy import Taxonomy

__all__ = ["Ensemble", "combine_oof", "ship_ensemble"]

log = logging.getLogger(__name__)


class Ensemble(nn.Module):
    """images → the mean of the members' log-softmax (the "logits" the temperature then scales)."""

    def __init__(self, members: list[GarmentNet]) -> None:
        super().__init__()
        if len({m.input_size for m in members}) != 1:
            raise ValueError("ensemble members must share one input size (one served crop)")
        self.members = nn.ModuleList(members)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.stack([torch.log_softmax(m(images), dim=1) for m in self.members]).mean(0)


def combine_oof(run_dirs: list[Path]) -> dict:
    """The members' out-of-fold predictions averaged as the ensemble computes them; refuses runs
    whose photos or folds differ (then a photo's members could have seen its sender)."""
    if len(run_dirs) < 2:
        raise ValueError("an ensemble needs at least two wardrobe cv runs")
    oofs = [load_oof(Path(r)) for r in run_dirs]
    combined = dict(oofs[0])
    for run, oof in zip(run_dirs[1:], oofs[1:]):
        if not (np.array_equal(oof["ids"], combined["ids"]) and np.array_equal(oof["folds"], combined["folds"])):
            raise ValueError(f"{run} has other photos or folds than {run_dirs[0]}: rerun it with the same "
                             "data and seed")
    for key in (k for k in combined if k.startswith("logits_")):
        if not all(key in oof for oof in oofs):
            raise ValueError(f"not every run has {key}")
        log_probs = [torch.log_softmax(torch.from_numpy(oof[key].astype(np.float64)), dim=1).numpy() for oof in oofs]
        combined[key] = np.mean(log_probs, axis=0).astype(np.float32)
    return combined


def ship_ensemble(run_dirs: list[Path], taxonomy: Taxonomy, models_dir: Path, version: str,
                  crc_unit: str = "group", data_dir: Path | None = None) -> Path:
    """Export the members' networks on all photos as one model version, cross-fitted like
    ``cv.ship``; the card lists every member's recipe and where its CV came from."""
    oof = combine_oof(run_dirs)
    members = [load_final(r, taxonomy) for r in run_dirs]
    recipes = [recipe for _, recipe, _ in members]
    cfg = PreprocessConfig(input_size=recipes[0].input_size, resize_size=recipes[0].resize_size)
    if any((r.input_size, r.resize_size) != (cfg.input_size, cfg.resize_size) for r in recipes):
        raise ValueError("ensemble members must be cross-validated on the same served crop "
                         "(input_size and resize_size)")
    fit = cross_fit(oof, taxonomy, crc_unit, "temperature and λ tables fitted on the members' averaged "
                    "out-of-fold predictions (sender-disjoint fold models, wardrobe cv); every member's shipped "
                    "network was trained on all photos")

    cvs = [json.loads((Path(d) / "recipe.json").read_text()).get("cv", {}) for d in run_dirs]
    first = members[0][2]
    model_dir = Path(models_dir) / version
    write_version(
        Ensemble([net for net, _, _ in members]), model_dir, version=version,
        model_recipe=cross_fitted_recipe(recipes, cvs, crc_unit), taxonomy=taxonomy, temperature=fit.temperature,
        calibration=fit.calibration, parity_photos=parity_photos(oof, data_dir), history=first["history"],
        recipe_extra={"ensemble": [{**r.to_dict(), "cv_run": Path(d).name, "cv": cv}
                                   for r, d, cv in zip(recipes, run_dirs, cvs)],
                      "ensemble_rule": "mean of the members' log-softmax, then softmax(· / temperature)"},
        data={"dir": str(data_dir) if data_dir else None, "photos": int(first["photos"]),
              "senders": int(first["senders"]), "trained_on": TRAINED_ON_ALL, "calibration_source": fit.source},
        metrics={"history": first["history"], "oof_ece_before": fit.ece_before, "oof_ece_after": fit.ece_after,
                 "final_fit_seconds": sum(float(m[2].get("seconds") or 0) for m in members),
                 "train_device": "cpu"},
    )
    log.info("ensemble %s written to %s", version, model_dir)
    return model_dir
