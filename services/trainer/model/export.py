"""Checked ONNX export (after timm's ``onnx.py``): named input/output, dynamic batch axis,
``onnx.checker``, and ONNX Runtime compared with PyTorch on real photos."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
import torch
from PIL import Image

from services.trainer.model.net import CalibratedNet, GarmentNet
from services.trainer.model.onnx_export import OPSET, export_onnx
from shared.model_card import INPUT_NAME, ONNX_FILENAME, ModelCard, PreprocessConfig, sha256_file
from shared.model_contract import open_session
from shared.preprocessing import preprocess_batch

if TYPE_CHECKING:
    from shared.recipe import ModelRecipe, Recipe
    from shared.taxonomy import Taxonomy
    from onnxruntime import InferenceSession

__all__ = ["export_model", "version_card", "ParityError", "PARITY_TOLERANCE", "OPSET"]

log = logging.getLogger(__name__)
PARITY_TOLERANCE = 1e-4  # max |p_onnx - p_torch| over photos and classes


class ParityError(AssertionError):
    """ONNX Runtime and PyTorch disagree beyond the tolerance: the export is wrong."""


def ort_latency_stats(session: InferenceSession, input_size: int, batch: int, repeats: int = 5) -> dict:
    """Latency of one ``session.run`` at ``batch`` (after warm-up), in milliseconds."""
    x = np.random.default_rng(0).standard_normal((batch, 3, input_size, input_size)).astype(np.float32)
    for _ in range(2):
        session.run(None, {INPUT_NAME: x})
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        session.run(None, {INPUT_NAME: x})
        times.append((time.perf_counter() - t) * 1000)
    t = np.array(times)
    return {"batch": batch, "p50_ms": float(np.median(t)), "p95_ms": float(np.percentile(t, 95)),
            "ms_per_photo": float(np.median(t) / batch), "photos_per_s": float(batch * 1000 / np.median(t))}


def ort_latency(session: InferenceSession, input_size: int, batch: int, repeats: int = 5) -> float:
    """Median milliseconds per call at ``batch``."""
    return ort_latency_stats(session, input_size, batch, repeats)["p50_ms"]


def export_model(net: GarmentNet, temperature: float, cfg: PreprocessConfig, model_dir: Path,
                 parity_photos: list[Image.Image], threads: int = 2, tta: bool = False) -> dict:
    module = CalibratedNet(net, temperature, tta).eval()
    path = export_onnx(module, Path(model_dir) / ONNX_FILENAME, cfg.input_size)
    onnx.checker.check_model(onnx.load(str(path)))
    session = open_session(path, threads)
    x = preprocess_batch(parity_photos, cfg)
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    got = session.run(None, {INPUT_NAME: x})[0]
    max_diff = float(np.abs(got - expected).max()) if len(x) else 0.0
    log.info("ONNX parity on %d real photos: max |Δp| = %.2e", len(x), max_diff)
    if max_diff > PARITY_TOLERANCE:
        raise ParityError(f"ONNX Runtime differs from PyTorch by {max_diff:.2e} > {PARITY_TOLERANCE}")
    metrics = {
        "onnx_parity_max_abs_diff": max_diff,
        "onnx_parity_photos": len(x),
        "onnx_opset": OPSET,
        "ort_cpu_latency_ms_batch1": ort_latency(session, cfg.input_size, 1),
        "ort_cpu_latency_ms_batch32": ort_latency(session, cfg.input_size, 32),
        "ort_cpu_threads": threads,
    }
    return {"metrics": metrics, "hashes": {ONNX_FILENAME: sha256_file(path)}}


def version_card(*, version: str, recipe: Recipe, model_recipe: ModelRecipe, cfg: PreprocessConfig,
                 classes: list[str], taxonomy: Taxonomy, temperature: float, calibration: Any, data: dict,
                 metrics: dict, export_info: dict, recipe_extra: dict | None = None) -> ModelCard:
    """The card of a freshly exported network: the one place that says what every version records
    (full training, quick refit and the cross-fitted model of ``wardrobe cv`` all end here), so a
    field added to cards reaches all of them. ``export_info`` is :func:`export_model`'s answer."""
    return ModelCard(
        version=version,
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        architecture="+".join(m.architecture for m in model_recipe.members),
        preprocess=cfg,
        classes=classes,
        taxonomy_version=taxonomy.version,
        taxonomy_digest=taxonomy.digest,
        taxonomy=taxonomy.raw,
        temperature=temperature,
        calibration=calibration,
        data=data,
        recipe={**recipe.to_dict(), "architecture": "+".join(m.architecture for m in model_recipe.members),
                **(recipe_extra or {})},
        model_recipe=model_recipe,
        metrics={**metrics, **export_info["metrics"]},
        hashes=export_info["hashes"],
    )
