"""Fine-tuning the garment network: the whole default recipe, top to bottom.

    1. read the dataset, split it by sender (split file kept stable)
    2. decode training photos once; run ``views`` augmented views of each through the frozen
       front (ONNX Runtime) and cache the activations
    3. fine-tune ``back`` + ``head`` on the cached activations (AdamW, cosine, label smoothing,
       class weights); validate each epoch; checkpoint
    4. temperature scaling on the validation split
    5. hedger calibration (λ(ε) tables) on the calibration split
    6. export to ONNX with a parity check, write the model card and plots
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from services.trainer import plots
from services.trainer.augment import shrink_for_cache, training_transform, augmented_view
from services.trainer.calibrate import expected_calibration_error, fit_temperature, softmax
from services.trainer.data import Dataset, Sample, load_dataset, load_or_create_split
from services.trainer.export import export_model
from services.trainer.features import OrtRunner, run_in_batches
from services.trainer.model import GarmentNet
from services.trainer.recipe import Recipe
from shared.model_card import ModelCard, PreprocessConfig
from shared.photos import decode_photo
from shared.preprocessing import preprocess
from shared.taxonomy import Taxonomy

__all__ = ["train", "TrainResult", "load_photo"]

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    model_dir: Path
    card: ModelCard
    seconds: float


def load_photo(path: Path):
    """Dataset photos go through the same decoder as uploads (EXIF orientation, RGB)."""
    return decode_photo(Path(path).read_bytes())


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _class_weights(labels: np.ndarray, n_classes: int, power: float) -> torch.Tensor:
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    weights = np.where(counts > 0, (counts.sum() / np.maximum(counts, 1)) ** power, 0.0)
    weights = weights / (weights * counts).sum() * counts.sum()  # mean weight per sample = 1
    return torch.as_tensor(weights, dtype=torch.float32)


def mix_batch(x: torch.Tensor, y: torch.Tensor, recipe: Recipe, rng: np.random.Generator
              ) -> tuple[torch.Tensor, torch.Tensor | None, float]:
    """CutMix / mixup on a batch of cached front activations (N, C, H, W).

    Returns the mixed batch, the partner labels (None when the batch is left alone) and the
    share of the loss that goes to the original labels (for CutMix: the area kept)."""
    if recipe.mix == "none" or len(x) < 2 or rng.random() >= recipe.mix_prob:
        return x, None, 1.0
    perm = torch.from_numpy(rng.permutation(len(x)))
    share = float(rng.beta(recipe.mix_alpha, recipe.mix_alpha))
    if recipe.mix == "mixup":
        return share * x + (1 - share) * x[perm], y[perm], share
    h, w = x.shape[2], x.shape[3]
    cut_h, cut_w = int(round(h * math.sqrt(1 - share))), int(round(w * math.sqrt(1 - share)))
    cy, cx = int(rng.integers(h)), int(rng.integers(w))
    y0, y1 = max(cy - cut_h // 2, 0), min(cy + (cut_h + 1) // 2, h)
    x0, x1 = max(cx - cut_w // 2, 0), min(cx + (cut_w + 1) // 2, w)
    if y1 <= y0 or x1 <= x0:
        return x, None, 1.0
    x = x.clone()
    x[:, :, y0:y1, x0:x1] = x[perm][:, :, y0:y1, x0:x1]
    return x, y[perm], 1.0 - (y1 - y0) * (x1 - x0) / (h * w)


@torch.no_grad()
def logits_from_front(net: GarmentNet, acts: np.ndarray | tuple[np.ndarray, np.ndarray],
                      batch_size: int = 128) -> np.ndarray:
    """Eval-mode logits from cached front activations; a (plain, mirrored) pair is averaged,
    exactly as the exported graph does with test-time augmentation."""
    if isinstance(acts, tuple):
        return 0.5 * (logits_from_front(net, acts[0], batch_size) + logits_from_front(net, acts[1], batch_size))
    net.eval()
    out = [net.forward_from_front(torch.from_numpy(acts[i:i + batch_size]).float()).numpy()
           for i in range(0, len(acts), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, net.fc.out_features), np.float32)


def train(
    data_dir: Path, out_root: Path, taxonomy: Taxonomy, recipe: Recipe | None = None,
    split_file: Path | None = None, on_error: str = "skip", version: str | None = None,
    max_photos: int | None = None, exclude: set[str] | None = None,
) -> TrainResult:
    """Train a model version into ``out_root/<version>/`` and return its card.

    ``exclude``: image ids left out of the training split only (photos flagged as mislabelled
    by ``wardrobe find-label-issues``); validation, calibration and test are never touched.
    ``max_photos`` caps each split (for smoke tests); never set for a real model.
    """
    recipe = recipe or Recipe()
    start = time.time()
    torch.set_num_threads(recipe.threads)
    _seed_everything(recipe.seed)
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
    for name in ("train", "val", "cal"):
        assert parts[name], f"split '{name}' has no labelled photos; the dataset is too small"
    counts = {name: len(v) for name, v in parts.items()}
    log.info("photos per split: %s (skipped rows: %d)", counts, len(dataset.skipped))
    y = {name: np.array([class_index[s.leaf] for s in v], dtype=np.int64) for name, v in parts.items()}

    # 2. network and cached front activations -----------------------------------------------
    net = GarmentNet(recipe.architecture, len(classes), recipe.input_size, recipe.split_block,
                     dropout=recipe.dropout, drop_connect=recipe.drop_connect)
    net.freeze_front()
    front = OrtRunner(net.front, recipe.input_size, recipe.threads)

    photos = [shrink_for_cache(load_photo(s.path), cfg)
              for s in tqdm(parts["train"], desc="decode train photos", leave=False, mininterval=2.0)]
    transform = training_transform(recipe, cfg)
    view_acts = []
    for v in range(recipe.views):
        torch.manual_seed(recipe.seed * 1000 + v)  # torchvision's random draws
        view_acts.append(run_in_batches(photos, lambda im: augmented_view(im, transform, cfg), front,
                                        desc=f"view {v + 1}/{recipe.views}", total=len(photos)))
        log.info("cached view %d/%d (%.0f s so far)", v + 1, recipe.views, time.time() - start)
    train_acts = np.concatenate(view_acts)  # (views·N, C, h, w) float16
    train_y = np.tile(y["train"], recipe.views)
    del view_acts, photos

    def eval_acts(samples: list[Sample], desc: str) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Front activations of the serving preprocessing (and of its mirror image with TTA)."""
        arrays = [preprocess(load_photo(s.path), cfg) for s in tqdm(samples, desc=desc, leave=False, mininterval=2.0)]
        plain = run_in_batches(arrays, lambda a: a, front)
        if not recipe.tta:
            return plain
        return plain, run_in_batches(arrays, lambda a: np.ascontiguousarray(a[:, :, ::-1]), front)

    val_acts = eval_acts(parts["val"], "val photos")
    log.info("cached %s front activations %s in %.0f s", len(train_acts), train_acts.shape[1:], time.time() - start)

    # 3. fine-tune back + head ------------------------------------------------------------------
    net.back.to(memory_format=torch.channels_last)
    head_params = list(net.fc.parameters())
    opt = torch.optim.AdamW([
        {"params": list(net.back.parameters()), "lr": recipe.lr},
        {"params": head_params, "lr": recipe.lr * recipe.head_lr_mult},
    ], weight_decay=recipe.weight_decay)
    base_lrs = [g["lr"] for g in opt.param_groups]
    steps_per_epoch = math.ceil(len(train_acts) / recipe.batch_size)
    total_steps = steps_per_epoch * recipe.epochs
    warmup = max(1, int(recipe.warmup_frac * total_steps))
    loss_fn = torch.nn.CrossEntropyLoss(
        weight=_class_weights(y["train"], len(classes), recipe.class_weight_power),
        label_smoothing=recipe.label_smoothing,
    )
    history: list[dict] = []
    evals_per_epoch = 4  # validation points per epoch, for the training curves
    eval_every = max(1, steps_per_epoch // evals_per_epoch)
    step, rng = 0, np.random.default_rng(recipe.seed)

    def validate(running: dict) -> None:
        val_logits = logits_from_front(net, val_acts)
        net.back.train(); net.dropout.train()
        record = {"epoch": round(step / steps_per_epoch, 3), "step": step,
                  "train_loss": running["loss"] / max(1, running["seen"]),
                  "train_acc": running["correct"] / max(1, running["seen"]),
                  "val_acc": float((val_logits.argmax(1) == y["val"]).mean()),
                  "val_nll": float(torch.nn.functional.cross_entropy(torch.from_numpy(val_logits),
                                                                     torch.from_numpy(y["val"]))),
                  "seconds": time.time() - start}
        history.append(record)
        log.info("epoch %(epoch).2f: train loss %(train_loss).3f acc %(train_acc).3f | "
                 "val acc %(val_acc).3f nll %(val_nll).3f", record)
        running.update(loss=0.0, correct=0, seen=0)

    for epoch in range(recipe.epochs):
        net.back.train(); net.dropout.train()
        order = rng.permutation(len(train_acts))
        running = {"loss": 0.0, "correct": 0, "seen": 0}  # since the last validation
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{recipe.epochs}", leave=False, mininterval=2.0)
        for b in bar:
            idx = order[b * recipe.batch_size:(b + 1) * recipe.batch_size]
            # channels_last: ~25% faster depthwise convolutions on CPU
            xb = torch.from_numpy(train_acts[idx]).float().contiguous(memory_format=torch.channels_last)
            yb = torch.from_numpy(train_y[idx])
            scale = (step + 1) / warmup if step < warmup else 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total_steps - warmup)))
            for g, lr in zip(opt.param_groups, base_lrs):
                g["lr"] = lr * scale
            xb, yb_mixed, share = mix_batch(xb, yb, recipe, rng)
            logits = net.forward_from_front(xb)
            loss = loss_fn(logits, yb) if yb_mixed is None else share * loss_fn(logits, yb) + (1 - share) * loss_fn(logits, yb_mixed)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            running["loss"] += float(loss.detach()) * len(idx)
            running["correct"] += int((logits.argmax(1) == yb).sum())
            running["seen"] += len(idx)
            if b % 20 == 0:
                bar.set_postfix(loss=f"{running['loss'] / running['seen']:.3f}",
                                acc=f"{running['correct'] / running['seen']:.3f}")
            last = b + 1 == steps_per_epoch
            if last or ((b + 1) % eval_every == 0 and steps_per_epoch - (b + 1) >= eval_every // 2):
                validate(running)
        torch.save({"model": net.state_dict(), "recipe": recipe.to_dict(), "classes": classes, "epoch": epoch + 1,
                    "history": history, "taxonomy_digest": taxonomy.digest}, model_dir / "checkpoint.pt")
    del train_acts

    # 4. temperature scaling on validation ------------------------------------------------------
    net.eval()
    val_logits = logits_from_front(net, val_acts)
    temperature = fit_temperature(val_logits, y["val"])
    ece_before, _ = expected_calibration_error(softmax(val_logits), y["val"])
    ece_after, _ = expected_calibration_error(softmax(val_logits, temperature), y["val"])
    log.info("temperature %.3f: val ECE %.4f → %.4f", temperature, ece_before, ece_after)

    # 5. hedger calibration on the calibration split --------------------------------------------
    cal_probs = softmax(logits_from_front(net, eval_acts(parts["cal"], "cal photos")), temperature)
    hedger_calibration = calibrate_hedger(cal_probs, y["cal"], taxonomy, y["train"])

    # 6. export, card, plots ------------------------------------------------------------------------
    parity_photos = [load_photo(s.path) for s in parts["val"][:16]]
    export_info = export_model(net, temperature, cfg, model_dir, parity_photos, tta=recipe.tta)
    plots.training_curves(history, model_dir / "training_curves.png")
    card = ModelCard(
        version=version,
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        architecture=recipe.architecture,
        preprocess=cfg,
        classes=classes,
        taxonomy_version=taxonomy.version,
        taxonomy_digest=taxonomy.digest,
        temperature=temperature,
        calibration=hedger_calibration,
        data={"dir": str(data_dir), "split_file": str(split_file), "photos_per_split": counts,
              "skipped_rows": len(dataset.skipped), "ignored_label_photos": len(dataset.ignored),
              "excluded_train_photos": excluded},
        recipe=recipe.to_dict(),
        metrics={"history": history, "val_ece_before": ece_before, "val_ece_after": ece_after,
                 "train_seconds": time.time() - start, **export_info["metrics"]},
        hashes=export_info["hashes"],
    )
    card.save(model_dir)
    (model_dir / "split.json").exists() or (model_dir / "split.json").write_text(json.dumps(split) + "\n")
    (model_dir / "checkpoint.pt").unlink(missing_ok=True) if not recipe.extra.get("keep_checkpoint") else None
    log.info("model %s written to %s in %.0f s", version, model_dir, time.time() - start)
    return TrainResult(model_dir, card, time.time() - start)


def calibrate_hedger(probs: np.ndarray, labels: np.ndarray, taxonomy: Taxonomy, train_labels: np.ndarray) -> dict:
    """λ(ε) tables for the hedger, computed once per model version on the calibration split."""
    from services.hedger.calibration import calibrate

    return calibrate(probs, labels, taxonomy).model_dump(mode="json")
