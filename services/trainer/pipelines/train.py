"""Fine-tuning the garment network, top to bottom.

    1. read the dataset, split it by sender (split file kept stable)
    2-3. fit, one of two ways (``Recipe.fine_tune``):
       "back" (the CPU default): decode training photos once, run ``views`` augmented views of
       each through the frozen front (ONNX Runtime on a CPU, PyTorch on a GPU), cache the
       activations and fine-tune ``back`` + ``head`` on them;
       "full" (``--recipe gpu``): the whole network on a fresh augmented view every epoch.
       Both share one loop (AdamW, warm-up + cosine, label smoothing, class weights, validation
       points, a checkpoint per epoch)
    4. temperature scaling on the validation split
    5. hedger calibration (λ(ε) tables) on the calibration split
    6. export to ONNX on the CPU with a parity check, write the model card and plots
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from services.trainer.data.augment import shrink_for_cache, training_transform, augmented_view
from services.trainer.model.calibrate import expected_calibration_error, fit_temperature, softmax
from services.trainer.data.dataset import Dataset, Sample, load_dataset, load_or_create_split, load_photo
from services.trainer.pipelines.version import write_version
from services.trainer.fit.front import OrtRunner, TorchRunner, run_in_batches
from services.trainer.fit.loop import (FineTuner, eval_logits, fit_on_views, resolve_device, seed_everything,
                                       sibling_smoothing_targets)
from services.trainer.model.net import GarmentNet
from shared.recipe import ModelRecipe, Recipe
from shared.model_card import ModelCard, PreprocessConfig
from shared.preprocessing import preprocess
from shared.taxonomy import Taxonomy

__all__ = ["train", "TrainResult"]

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    model_dir: Path
    card: ModelCard
    seconds: float


class AugmentedPhotos(torch.utils.data.Dataset):
    """Training photos with a fresh augmentation at every access (for DataLoader workers)."""

    def __init__(self, photos: list, labels: np.ndarray, transform, cfg: PreprocessConfig) -> None:
        self.photos, self.labels, self.transform, self.cfg = photos, labels, transform, cfg

    def __len__(self) -> int:
        return len(self.photos)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        return augmented_view(self.photos[i], self.transform, self.cfg), int(self.labels[i])


def train(
    data_dir: Path, out_root: Path, taxonomy: Taxonomy, recipe: Recipe | None = None,
    split_file: Path | None = None, on_error: str = "skip", version: str | None = None,
    max_photos: int | None = None, exclude: set[str] | None = None, extra_train: list[Sample] | None = None,
) -> TrainResult:
    """Train a model version into ``out_root/<version>/`` and return its card.

    ``exclude``: image ids left out of the training split only (photos flagged as mislabelled
    by ``wardrobe find-label-issues``); validation, calibration and test are never touched.
    ``extra_train``: photos added to the training split only (feedback photos, ``refit.full_retrain``);
    one that validation, calibration or test also holds is left out.
    ``max_photos`` caps each split (for smoke tests); never set for a real model.
    """
    recipe = recipe or Recipe()
    start = time.time()
    torch.set_num_threads(recipe.threads)
    seed_everything(recipe.seed)
    device = resolve_device(recipe.device)
    torch.backends.cudnn.benchmark = device.type == "cuda"  # fixed input sizes: let cuDNN pick kernels
    version = version or datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    model_dir = Path(out_root) / version
    model_dir.mkdir(parents=True, exist_ok=True)
    cfg = PreprocessConfig(input_size=recipe.input_size, resize_size=recipe.resize_size)
    classes = taxonomy.leaves
    class_index = {leaf: i for i, leaf in enumerate(classes)}

    # 1. data ------------------------------------------------------------------------------
    dataset: Dataset = load_dataset(data_dir, taxonomy, on_error=on_error)
    split_file = Path(split_file) if split_file else model_dir / "split.json"
    split = load_or_create_split(dataset.samples, split_file, seed=recipe.seed)
    by_id = {s.image_id: s for s in dataset.classified}
    parts: dict[str, list[Sample]] = {
        name: [by_id[i] for i in ids if i in by_id][:max_photos] for name, ids in split.items()
    }
    excluded = 0
    if exclude:
        kept = [s for s in parts["train"] if s.image_id not in exclude]
        excluded = len(parts["train"]) - len(kept)
        parts["train"] = kept
        log.info("left %d flagged photos out of the training split", excluded)
    if extra_train:
        held = {s.path.resolve() for name in ("val", "cal", "test") for s in parts.get(name, [])}
        added = [s for s in extra_train if s.path.resolve() not in held]
        parts["train"] = parts["train"] + added
        log.info("added %d feedback photos to the training split", len(added))
    for name in ("train", "val", "cal"):
        assert parts[name], f"split '{name}' has no labelled photos; the dataset is too small"
    counts = {name: len(v) for name, v in parts.items()}
    log.info("photos per split: %s (skipped rows: %d); training on %s", counts, len(dataset.skipped), device)
    y = {name: np.array([class_index[s.leaf] for s in v], dtype=np.int64) for name, v in parts.items()}

    # 2-3. network, fine-tuning -------------------------------------------------------------------
    net = GarmentNet(recipe.architecture, len(classes), recipe.input_size, recipe.split_block,
                     dropout=recipe.dropout, drop_connect=recipe.drop_connect)

    def checkpoint(epoch: int, history: list[dict]) -> None:
        torch.save({"model": net.state_dict(), "recipe": recipe.to_dict(), "classes": classes, "epoch": epoch,
                    "history": history, "taxonomy_digest": taxonomy.digest}, model_dir / "checkpoint.pt")

    fit = _fit_on_cached_front if recipe.fine_tune == "back" else _fit_end_to_end
    targets = (sibling_smoothing_targets(taxonomy, recipe.label_smoothing)
               if recipe.label_smoothing_scope == "siblings" else None)
    history, split_logits = fit(net, parts, y, recipe, cfg, device, checkpoint, start, targets)

    # 4. temperature scaling on validation ------------------------------------------------------
    val_logits = split_logits("val")
    temperature = fit_temperature(val_logits, y["val"])
    ece_before, _ = expected_calibration_error(softmax(val_logits), y["val"])
    ece_after, _ = expected_calibration_error(softmax(val_logits, temperature), y["val"])
    log.info("temperature %.3f: val ECE %.4f → %.4f", temperature, ece_before, ece_after)

    # 5. hedger calibration on the calibration split --------------------------------------------
    cal_probs = softmax(split_logits("cal"), temperature)
    hedger_calibration = calibrate_hedger(cal_probs, y["cal"], taxonomy, y["train"])

    # 6. export (on the CPU, as served), card, plots ------------------------------------------------
    net.to("cpu").eval()
    parity_photos = [load_photo(s.path) for s in parts["val"][:16]]
    card = write_version(
        net, model_dir, version=version, model_recipe=ModelRecipe([recipe]), taxonomy=taxonomy,
        temperature=temperature, calibration=hedger_calibration, parity_photos=parity_photos, history=history,
        data={"dir": str(data_dir), "split_file": str(split_file), "photos_per_split": counts,
              "skipped_rows": len(dataset.skipped), "ignored_label_photos": len(dataset.ignored),
              "excluded_train_photos": excluded},
        metrics={"history": history, "val_ece_before": ece_before, "val_ece_after": ece_after,
                 "train_seconds": time.time() - start, "train_device": _device_name(device)},
    )
    (model_dir / "split.json").exists() or (model_dir / "split.json").write_text(json.dumps(split) + "\n")
    (model_dir / "checkpoint.pt").unlink(missing_ok=True) if not recipe.extra.get("keep_checkpoint") else None
    log.info("model %s written to %s in %.0f s", version, model_dir, time.time() - start)
    return TrainResult(model_dir, card, time.time() - start)


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def _decode_training_photos(samples: list[Sample], cfg: PreprocessConfig) -> list:
    """Decoded once and kept small in memory; every augmented view starts from these."""
    return [shrink_for_cache(load_photo(s.path), cfg)
            for s in tqdm(samples, desc="decode train photos", leave=False, mininterval=2.0)]


def _eval_arrays(samples: list[Sample], cfg: PreprocessConfig, tta: bool, desc: str
                 ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Photos as served (resize, centre crop, normalise), plus their mirror images with TTA."""
    arrays = np.stack([preprocess(load_photo(s.path), cfg)
                       for s in tqdm(samples, desc=desc, leave=False, mininterval=2.0)])
    return (arrays, np.ascontiguousarray(arrays[:, :, :, ::-1])) if tta else arrays


def _fit_on_cached_front(net: GarmentNet, parts: dict, y: dict, recipe: Recipe, cfg: PreprocessConfig,
                         device: torch.device, checkpoint, start: float, targets: torch.Tensor | None = None):
    """The CPU recipe: the frozen front runs once per augmented view (ONNX Runtime on a CPU,
    PyTorch on a GPU) and only back + head are trained, on the cached activations."""
    net.freeze_front()
    front = TorchRunner(net.front, device) if device.type == "cuda" else OrtRunner(net.front, recipe.input_size, recipe.threads)

    photos = _decode_training_photos(parts["train"], cfg)
    transform = training_transform(recipe, cfg)
    view_acts = []
    for v in range(recipe.views):
        torch.manual_seed(recipe.seed * 1000 + v)  # torchvision's random draws
        if recipe.workers:
            loader = torch.utils.data.DataLoader(AugmentedPhotos(photos, y["train"], transform, cfg),
                                                 batch_size=64, num_workers=recipe.workers)
            acts = np.concatenate([front(xb.numpy()).astype(np.float16) for xb, _ in loader])
        else:
            acts = run_in_batches(photos, lambda im: augmented_view(im, transform, cfg), front,
                                  desc=f"view {v + 1}/{recipe.views}", total=len(photos))
        view_acts.append(acts)
        log.info("cached view %d/%d (%.0f s so far)", v + 1, recipe.views, time.time() - start)
    train_acts = np.stack(view_acts)  # (views, N, C, h, w) float16
    del view_acts, photos

    cached: dict[str, np.ndarray | tuple] = {}

    def split_acts(name: str):
        if name not in cached:
            arrays = _eval_arrays(parts[name], cfg, recipe.tta, f"{name} photos")
            parts_to_run = arrays if isinstance(arrays, tuple) else (arrays,)
            acts = tuple(run_in_batches(a, lambda x: x, front) for a in parts_to_run)
            cached[name] = acts if isinstance(arrays, tuple) else acts[0]
        return cached[name]

    split_acts("val")
    log.info("cached %s front activations %s in %.0f s", train_acts.shape[:2], train_acts.shape[2:], time.time() - start)

    history = fit_on_views(net, train_acts, np.arange(len(y["train"])), y["train"], recipe, split_acts("val"),
                           y["val"], start, targets, checkpoint, device=device)
    del train_acts
    return history, lambda name: eval_logits(net, net.forward_from_front, split_acts(name), device)


def _fit_end_to_end(net: GarmentNet, parts: dict, y: dict, recipe: Recipe, cfg: PreprocessConfig,
                    device: torch.device, checkpoint, start: float, targets: torch.Tensor | None = None):
    """The GPU recipe: the whole network, a fresh augmented view of every photo each epoch."""
    photos = _decode_training_photos(parts["train"], cfg)
    generator = torch.Generator().manual_seed(recipe.seed)
    loader = torch.utils.data.DataLoader(
        AugmentedPhotos(photos, y["train"], training_transform(recipe, cfg), cfg),
        batch_size=recipe.batch_size, shuffle=True, drop_last=len(photos) > recipe.batch_size,
        num_workers=recipe.workers, persistent_workers=recipe.workers > 0, generator=generator,
        pin_memory=device.type == "cuda",
    )
    arrays: dict[str, np.ndarray | tuple] = {}

    def split_arrays(name: str):
        if name not in arrays:
            arrays[name] = _eval_arrays(parts[name], cfg, recipe.tta, f"{name} photos")
        return arrays[name]

    net.to(device).to(memory_format=torch.channels_last)
    tuner = FineTuner(
        net, net,
        [{"params": list(net.front.parameters()), "lr": recipe.lr * recipe.front_lr_mult},
         {"params": list(net.back.parameters()), "lr": recipe.lr},
         {"params": list(net.fc.parameters()), "lr": recipe.lr * recipe.head_lr_mult}],
        recipe, y["train"], len(loader),
        lambda: eval_logits(net, net, split_arrays("val"), device), y["val"], checkpoint, device, start, targets)
    history = tuner.run(lambda epoch: iter(loader))
    return history, lambda name: eval_logits(net, net, split_arrays(name), device)


def calibrate_hedger(probs: np.ndarray, labels: np.ndarray, taxonomy: Taxonomy, train_labels: np.ndarray) -> dict:
    """λ(ε) tables for the hedger, computed once per model version on the calibration split."""
    from shared.hedging.calibration import calibrate

    return calibrate(probs, labels, taxonomy).model_dump(mode="json")
