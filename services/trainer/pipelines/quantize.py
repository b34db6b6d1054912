"""An INT8 copy of a float model version (``wardrobe quantize``), for serving on a CPU.

The result is a **new model version** (its own directory, card and hash) rather than a second
graph inside the float version. Why: everything that handles versions handles it unchanged (the
promotion gate judges it, an operator activates it and rolls it back, each answer names the
version that made it, stored answers re-hedge with its card), and the accuracy it gives up is a
model change that should be decided and recorded like one. A GPU deployment simply keeps the float
version active (ONNX Runtime's CUDA provider does not run QDQ convolutions as int8 kernels).
The same reasoning made recalibration a new version (``jobs/recalibrate.py``).

Calibration photos are the version's training photos (all labelled photos for a version trained
on all of them, else its split file's ``train`` photos), a seeded sample; the agreement check
uses the next photos of the same order, which the calibration did not see.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from services.trainer.data.dataset import Sample, load_dataset
from services.trainer.errors import RefitError
from services.trainer.model.quantize import (ServedPhotoReader, agreement, choose_calibration_photos, quantize_graph,
                                             served_inputs)
from services.trainer.pipelines.version import write_quantized_version
from shared.hedging.hedging import Hedger
from shared.model_card import TRAINED_ON_ALL, ModelCard, Quantization, card_taxonomy, sha256_file
from shared.model_contract import load_model, open_session
from shared.taxonomy import load_taxonomy

__all__ = ["quantize_version", "QuantizeResult", "training_photos", "calibration_ids"]

log = logging.getLogger(__name__)


@dataclass
class QuantizeResult:
    model_dir: Path
    card: ModelCard


def training_photos(card: ModelCard, source_dir: Path, samples: list[Sample]) -> tuple[list[Sample], str]:
    """The labelled photos the version learned from, and how to say so on the card."""
    classified = [s for s in samples if s.leaf is not None]
    split_file = Path(source_dir) / "split.json"
    if card.data.get("trained_on") != TRAINED_ON_ALL and split_file.is_file():
        train = set(json.loads(split_file.read_text())["train"])
        return [s for s in classified if s.image_id in train], "the train split of the source version's split.json"
    return classified, "all labelled photos (the source version was trained on all of them)"


def calibration_ids(card: ModelCard, source_dir: Path, samples: list[Sample]) -> set[str]:
    """The image ids an INT8 version's card says it was calibrated on (chosen again by its rule)."""
    q = card.quantization
    if q is None:
        return set()
    pool, _ = training_photos(card, source_dir, samples)
    return {i for i, _ in choose_calibration_photos([(s.image_id, s.path) for s in pool], q.calibration_photos,
                                                    q.calibration_seed)}


def quantize_version(source_dir: Path, data_dir: Path, models_dir: Path, version: str | None = None, *,
                     photos: int = 300, method: str = "minmax", seed: int = 0, check_photos: int = 200,
                     min_top1_agreement: float = 0.97, threads: int = 2) -> QuantizeResult:
    """Write ``models_dir/<version>`` (default ``<source>-int8``): the source version's network as
    a static QDQ INT8 graph. Refuses (and removes the directory) when the INT8 graph's top-1
    agrees with the float one on fewer than ``min_top1_agreement`` of the check photos."""
    source_dir = Path(source_dir)
    card = ModelCard.load(source_dir)
    if card.quantization is not None:
        raise RefitError(f"{card.version} is already quantized (from {card.quantization.source_version})")
    version = version or f"{card.version}-int8"
    taxonomy = card_taxonomy(card, load_taxonomy())
    pool, pool_rule = training_photos(card, source_dir, load_dataset(data_dir, taxonomy, verify_images=False).samples)
    ordered = choose_calibration_photos([(s.image_id, s.path) for s in pool], photos + check_photos, seed)
    calib, check = ordered[:photos], ordered[photos:]
    if len(calib) < photos:
        raise RefitError(f"{photos} calibration photos asked for, the version's training photos are {len(pool)}")
    model_dir = Path(models_dir) / version
    if model_dir.exists():
        raise RefitError(f"{model_dir} exists already")
    model_dir.mkdir(parents=True)
    try:
        dst = model_dir / card.onnx_file
        reader = ServedPhotoReader([p for _, p in calib], card.preprocess, card.onnx_input)
        made = quantize_graph(source_dir / card.onnx_file, dst, reader, method)
        x = served_inputs([p for _, p in check], card.preprocess)
        reference = np.concatenate([load_model(source_dir, prefer_gpu=False, intra_op_threads=threads).run(x[i:i + 32])
                                    for i in range(0, len(x), 32)]) if len(x) else np.zeros((0, len(card.classes)))
        session = open_session(dst, threads)
        got = np.concatenate([session.run([card.onnx_output], {card.onnx_input: x[i:i + 32]})[0]
                              for i in range(0, len(x), 32)]) if len(x) else np.zeros_like(reference)
        hedger = Hedger(taxonomy, card.calibration, card.classes) if card.calibration is not None else None
        parity = agreement(reference, got, hedger)
        log.info("INT8 against float on %d photos the calibration did not use: %s", len(x), parity)
        if parity["top1_agreement"] < min_top1_agreement:
            raise RefitError(f"INT8 top-1 agrees with float on {parity['top1_agreement']:.3f} of {len(x)} photos "
                             f"< {min_top1_agreement}: not written (try another --method or more --photos)")
        quantization = Quantization(
            source_version=card.version, source_onnx_sha256=sha256_file(source_dir / card.onnx_file),
            format=made["format"], weights=made["weights"], activations=made["activations"],
            calibration_method=method, calibration_photos=len(calib), calibration_seed=seed,
            calibration_selection=(f"{len(calib)} of {len(pool)} {pool_rule}, the first in the order of "
                                   f"sha256('{seed}:<image id>'); decoded and preprocessed as served"),
            float_nodes=made["float_nodes"], agreement={**parity, "photos_rule": (
                f"the next {len(check)} photos of the same order (not used to calibrate)")},
        )
        new = write_quantized_version(source_dir, model_dir, version=version, quantization=quantization,
                                      parity=parity, threads=threads)
    except BaseException:
        shutil.rmtree(model_dir, ignore_errors=True)
        raise
    return QuantizeResult(model_dir, new)
