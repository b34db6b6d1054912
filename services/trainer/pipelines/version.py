"""Writing a model version: the one place every pipeline (train, quick refit, cv ship, ensemble,
the training jobs' cross-fitted recipes, INT8 quantization) ends."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from services.trainer.evaluation import plots
from services.trainer.model.export import export_model, ort_latency, version_card
from shared.model_card import ModelCard, PreprocessConfig, Quantization, sha256_file
from shared.model_contract import open_session
from shared.recipe import ModelRecipe
from shared.taxonomy import Taxonomy

__all__ = ["write_version", "write_quantized_version"]


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


def write_quantized_version(source_dir: Path, model_dir: Path, *, version: str, quantization: Quantization,
                            parity: dict, threads: int = 2) -> ModelCard:
    """Write the card of an INT8 version whose graph ``quantize`` already put in ``model_dir``:
    the source's card (classes, taxonomy, temperature, λ tables, recipe: the same network), with
    how it was quantized, its own hash and latency, and, in place of the float export's 1e-4
    parity check, the measured agreement with the source (``parity``: ``quantize.agreement``)."""
    source = ModelCard.load(source_dir)
    model_dir = Path(model_dir)
    path = model_dir / source.onnx_file
    session = open_session(path, threads)
    history = source.metrics.get("history") or []
    if history:
        plots.training_curves(history, model_dir / "training_curves.png")
    export_metrics = {"onnx_parity_max_abs_diff", "onnx_parity_photos", "ort_cpu_latency_ms_batch1",
                      "ort_cpu_latency_ms_batch32", "ort_cpu_threads"}
    metrics = {k: v for k, v in source.metrics.items() if k not in export_metrics}
    size = source.preprocess.input_size
    metrics.update({
        "onnx_parity_reference": f"float version {source.version}",
        "onnx_parity_photos": parity["photos"], "onnx_parity_max_abs_diff": parity["max_abs_dp"],
        "onnx_parity_mean_abs_diff": parity["mean_abs_dp"], "onnx_parity_top1_agreement": parity["top1_agreement"],
        "ort_cpu_latency_ms_batch1": ort_latency(session, size, 1),
        "ort_cpu_latency_ms_batch32": ort_latency(session, size, 32), "ort_cpu_threads": threads,
    })
    card = source.model_copy(update={
        "version": version, "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "quantization": quantization, "metrics": metrics,
        "hashes": {source.onnx_file: sha256_file(path)},
    })
    card.save(model_dir)
    return card
