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

import contextlib
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

from services.trainer.evaluation import plots
from services.trainer.augment import shrink_for_cache, training_transform, augmented_view
from services.trainer.calibrate import expected_calibration_error, fit_temperature, softmax
from services.trainer.data import Dataset, Sample, load_dataset, load_or_create_split
from services.trainer.export import export_model, version_card
from services.trainer.features import OrtRunner, run_in_batches
from services.trainer.model import GarmentNet
from shared.recipe import Recipe
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


def sibling_smoothing_targets(taxonomy: Taxonomy, epsilon: float) -> torch.Tensor:
    """(C, C) training targets: row c keeps 1 − ε on leaf c and spreads ε uniformly over c and its
    siblings (the leaves with the same parent), as label smoothing does over all leaves; a leaf
    without siblings keeps a one-hot row. The idea: uniform smoothing teaches every photo a floor
    of probability on every class (a shirt on "shoe"), which the hedger reads as doubt about
    "body". Measured, it does worse: the floor moves onto the siblings, probabilities inside a
    group go wrong (test ECE 12 %) and DARTS falls behind back-off (docs/hedging.md), so the
    recipe keeps it off; it stays so that the run can be repeated."""
    leaves = taxonomy.leaves
    index = {leaf: i for i, leaf in enumerate(leaves)}
    targets = torch.zeros(len(leaves), len(leaves))
    for leaf in leaves:
        parent = taxonomy.nodes[leaf].parent
        group = [index[x] for x in leaves if taxonomy.nodes[x].parent == parent]
        row = index[leaf]
        if len(group) > 1:
            targets[row, group] = epsilon / len(group)
            targets[row, row] += 1.0 - epsilon
        else:
            targets[row, row] = 1.0
    return targets


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


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("recipe asks for device=cuda but PyTorch sees no CUDA GPU")
    return torch.device(name)


@torch.no_grad()
def eval_logits(net: GarmentNet, forward, inputs: np.ndarray | tuple[np.ndarray, np.ndarray],
                device: torch.device | str = "cpu", batch_size: int = 128) -> np.ndarray:
    """Eval-mode logits of ``forward`` (back + head on cached front activations, or the whole
    network on photos); a (plain, mirrored) pair is averaged, exactly as the exported graph
    does with test-time augmentation."""
    if isinstance(inputs, tuple):
        return 0.5 * (eval_logits(net, forward, inputs[0], device, batch_size)
                      + eval_logits(net, forward, inputs[1], device, batch_size))
    net.eval()
    out = [forward(torch.from_numpy(inputs[i:i + batch_size]).float().to(device)).float().cpu().numpy()
           for i in range(0, len(inputs), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, net.fc.out_features), np.float32)


class AugmentedPhotos(torch.utils.data.Dataset):
    """Training photos with a fresh augmentation at every access (for DataLoader workers)."""

    def __init__(self, photos: list, labels: np.ndarray, transform, cfg: PreprocessConfig) -> None:
        self.photos, self.labels, self.transform, self.cfg = photos, labels, transform, cfg

    def __len__(self) -> int:
        return len(self.photos)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        return augmented_view(self.photos[i], self.transform, self.cfg), int(self.labels[i])


class TorchRunner:
    """The frozen front on a GPU (what ``OrtRunner`` does on the CPU)."""

    def __init__(self, module: torch.nn.Module, device: torch.device) -> None:
        self.module, self.device = module.to(device).eval(), device

    @torch.no_grad()
    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.module(torch.from_numpy(np.asarray(batch, np.float32)).to(self.device)).float().cpu().numpy()


class FineTuner:
    """The optimisation loop both recipes share: AdamW with per-group learning rates, warm-up then
    cosine decay, label smoothing, class weights, optional CutMix/mixup, a few validation points
    per epoch for the training curves, and a checkpoint after every epoch."""

    def __init__(self, net: GarmentNet, forward, param_groups: list[dict], recipe: Recipe,
                 y_train: np.ndarray, steps_per_epoch: int, val_logits, y_val: np.ndarray,
                 checkpoint, device: torch.device, start: float, targets: torch.Tensor | None = None) -> None:
        self.net, self.forward, self.recipe, self.device = net, forward, recipe, device
        self.val_logits, self.y_val, self.checkpoint, self.start = val_logits, y_val, checkpoint, start
        self.opt = torch.optim.AdamW(param_groups, weight_decay=recipe.weight_decay)
        self.base_lrs = [g["lr"] for g in self.opt.param_groups]
        self.steps_per_epoch = steps_per_epoch
        self.total_steps = steps_per_epoch * recipe.epochs
        self.warmup = max(1, int(recipe.warmup_frac * self.total_steps))
        weights = _class_weights(y_train, net.fc.out_features, recipe.class_weight_power).to(device)
        if targets is None:
            self.loss_fn = torch.nn.CrossEntropyLoss(weight=weights, label_smoothing=recipe.label_smoothing)
        else:  # soft targets per class (sibling_smoothing_targets)
            soft, ce = targets.to(device), torch.nn.CrossEntropyLoss(weight=weights)
            self.loss_fn = lambda logits, labels: ce(logits, soft[labels])
        # about a dozen validation points in all for the curves (4 per epoch for 3 epochs, 1 for 40)
        self.eval_every = max(1, steps_per_epoch // max(1, 12 // recipe.epochs))
        self.history: list[dict] = []
        self.step = 0
        self.rng = np.random.default_rng(recipe.seed)
        # bf16 autocast on a GPU; the CPU keeps fp32 (and its speed: no autocast overhead)
        self.autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else None

    def _lr_scale(self) -> float:
        if self.step < self.warmup:
            return (self.step + 1) / self.warmup
        return 0.5 * (1 + math.cos(math.pi * (self.step - self.warmup) / max(1, self.total_steps - self.warmup)))

    def _validate(self, running: dict) -> None:
        val_logits = self.val_logits()
        self.train_mode()
        record = {"epoch": round(self.step / self.steps_per_epoch, 3), "step": self.step,
                  "train_loss": running["loss"] / max(1, running["seen"]),
                  "train_acc": running["correct"] / max(1, running["seen"]),
                  "val_acc": float((val_logits.argmax(1) == self.y_val).mean()),
                  "val_nll": float(torch.nn.functional.cross_entropy(torch.from_numpy(val_logits),
                                                                     torch.from_numpy(self.y_val))),
                  "seconds": time.time() - self.start}
        self.history.append(record)
        log.info("epoch %(epoch).2f: train loss %(train_loss).3f acc %(train_acc).3f | "
                 "val acc %(val_acc).3f nll %(val_nll).3f", record)
        running.update(loss=0.0, correct=0, seen=0)

    def train_mode(self) -> None:
        """Train mode for what is fine-tuned; a frozen front stays in eval mode (its BN stats)."""
        self.net.train()
        if self.recipe.fine_tune == "back":
            self.net.front.eval()

    def run(self, batches) -> list[dict]:
        """``batches(epoch)`` yields (inputs, labels) CPU tensors for one epoch."""
        for epoch in range(self.recipe.epochs):
            self.train_mode()
            running = {"loss": 0.0, "correct": 0, "seen": 0}  # since the last validation
            bar = tqdm(batches(epoch), total=self.steps_per_epoch, desc=f"epoch {epoch + 1}/{self.recipe.epochs}",
                       leave=False, mininterval=2.0)
            for b, (xb, yb) in enumerate(bar):
                # channels_last: ~25% faster depthwise convolutions on CPU, and what cuDNN prefers
                xb = xb.to(self.device, non_blocking=True).float().contiguous(memory_format=torch.channels_last)
                yb = yb.to(self.device, non_blocking=True)
                for g, lr in zip(self.opt.param_groups, self.base_lrs):
                    g["lr"] = lr * self._lr_scale()
                xb, yb_mixed, share = mix_batch(xb, yb, self.recipe, self.rng)
                with self.autocast or contextlib.nullcontext():
                    logits = self.forward(xb)
                logits = logits.float()
                loss = self.loss_fn(logits, yb)
                if yb_mixed is not None:
                    loss = share * loss + (1 - share) * self.loss_fn(logits, yb_mixed)
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                self.opt.step()
                self.step += 1
                running["loss"] += float(loss.detach()) * len(yb)
                running["correct"] += int((logits.argmax(1) == yb).sum())
                running["seen"] += len(yb)
                if b % 20 == 0:
                    bar.set_postfix(loss=f"{running['loss'] / running['seen']:.3f}",
                                    acc=f"{running['correct'] / running['seen']:.3f}")
                last = b + 1 == self.steps_per_epoch
                if last or ((b + 1) % self.eval_every == 0 and self.steps_per_epoch - (b + 1) >= self.eval_every // 2):
                    self._validate(running)
            self.checkpoint(epoch + 1, self.history)
        return self.history


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
    _seed_everything(recipe.seed)
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
    export_info = export_model(net, temperature, cfg, model_dir, parity_photos, tta=recipe.tta)
    plots.training_curves(history, model_dir / "training_curves.png")
    card = version_card(
        version=version, recipe=recipe, cfg=cfg, classes=classes, taxonomy=taxonomy, temperature=temperature,
        calibration=hedger_calibration, export_info=export_info,
        data={"dir": str(data_dir), "split_file": str(split_file), "photos_per_split": counts,
              "skipped_rows": len(dataset.skipped), "ignored_label_photos": len(dataset.ignored),
              "excluded_train_photos": excluded},
        metrics={"history": history, "val_ece_before": ece_before, "val_ece_after": ece_after,
                 "train_seconds": time.time() - start, "train_device": _device_name(device)},
    )
    card.save(model_dir)
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
    train_acts = np.concatenate(view_acts)  # (views·N, C, h, w) float16
    train_y = np.tile(y["train"], recipe.views)
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
    log.info("cached %s front activations %s in %.0f s", len(train_acts), train_acts.shape[1:], time.time() - start)

    net.to(device)
    net.back.to(memory_format=torch.channels_last)
    steps_per_epoch = math.ceil(len(train_acts) / recipe.batch_size)
    tuner = FineTuner(
        net, net.forward_from_front,
        [{"params": list(net.back.parameters()), "lr": recipe.lr},
         {"params": list(net.fc.parameters()), "lr": recipe.lr * recipe.head_lr_mult}],
        recipe, y["train"], steps_per_epoch,
        lambda: eval_logits(net, net.forward_from_front, split_acts("val"), device), y["val"], checkpoint, device, start,
        targets)

    def batches(epoch: int):
        order = tuner.rng.permutation(len(train_acts))
        for b in range(steps_per_epoch):
            idx = order[b * recipe.batch_size:(b + 1) * recipe.batch_size]
            yield torch.from_numpy(train_acts[idx]), torch.from_numpy(train_y[idx])

    history = tuner.run(batches)
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
