"""Learning from feedback: the photos people confirmed or corrected join the training photos.

Two modes (issue [D]):

* ``quick_refit``: the ``quick`` recipe preset: only the last block and the head are trained, on
  front activations cached on disk (``feature_store``) for the training photos and every
  feedback photo, so a refit costs only the fine-tuning. The front is the pretrained one, the same
  in every quick version, so nothing is warm-started from the active version: a refit is the quick
  recipe run again on more data (reproducible; a bad version cannot poison the next one).
* ``full_retrain``: the model recipe (``train.train``) with the feedback photos added to the
  training split.

Either way the result is a candidate version directory (ONNX + card, temperature fitted on the
validation split, the hedger's λ tables on the calibration split), not yet registered: the
promotion gate (``gate.py``) decides.

Which feedback teaches what (``feedback_label``): a verdict names a node that contains the truth:
the answered node when the answer was confirmed, the named node when it was corrected. Only a
*leaf* is a training label. An inner node ("at least a top") does not say which class, so it is
skipped (and counted in the card): guessing a leaf would teach wrong labels, and a partial-label
loss for a handful of photos is not worth a second loss function. A hedged answer confirmed as
right is usually an inner node, so most confirmations of hedged answers are skipped too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from services.trainer.model.calibrate import expected_calibration_error, fit_temperature, softmax
from services.trainer.data.dataset import Sample, load_photo
from services.trainer.data.feedback import LabelledPhoto
from services.trainer.errors import RefitError
from services.trainer.fit.front_cache import FeatureStore
from services.trainer.fit.loop import eval_logits, fit_on_views, label_targets
from services.trainer.pipelines.version import write_version
from services.trainer.model.net import GarmentNet
from services.trainer.pipelines.train import TrainResult, calibrate_hedger, train
from shared.recipe import ModelRecipe, Recipe
from shared.model_card import ModelCard, PreprocessConfig
from shared.taxonomy import Taxonomy

__all__ = ["RefitResult", "Progress", "quick_refit", "full_retrain"]

log = logging.getLogger(__name__)

# progress(stage, fraction of that stage done); it may raise to cancel the job
Progress = Callable[[str, float], None]


@dataclass
class RefitResult:
    model_dir: Path
    card: ModelCard
    seconds: float
    stages: dict[str, float] = field(default_factory=dict)  # seconds per stage


def _without_eval_photos(train: list[LabelledPhoto], parts: dict[str, list[LabelledPhoto]]) -> list[LabelledPhoto]:
    """Feedback on a photo that validation, calibration or test also use must not train on it."""
    held = {p.photo.sha256 for name in ("val", "cal", "test") for p in parts.get(name, [])}
    seen: set[str] = set()
    kept = []
    for p in reversed(train):  # feedback comes last: its label wins over the dataset's
        if p.photo.sha256 not in held and p.photo.sha256 not in seen:
            kept.append(p)
            seen.add(p.photo.sha256)
    return kept[::-1]


def quick_refit(
    parts: dict[str, list[LabelledPhoto]], feedback: Sequence[LabelledPhoto], taxonomy: Taxonomy,
    out_root: Path, version: str, cache_dir: Path, recipe: Recipe | None = None,
    progress: Progress | None = None,
) -> RefitResult:
    """Train the quick recipe on ``parts["train"]`` + ``feedback`` from cached front activations
    and write the candidate ``out_root/<version>/`` (ONNX, card, training curves)."""
    recipe = recipe or Recipe.from_overrides({}, preset="quick")
    assert recipe.fine_tune == "back", "the quick refit trains on cached front activations"
    start, cpu_start = time.time(), time.process_time()
    stages: dict[str, float] = {}
    report = progress or (lambda stage, fraction: None)
    torch.set_num_threads(recipe.threads)
    torch.manual_seed(recipe.seed)
    classes = taxonomy.leaves
    index = {leaf: i for i, leaf in enumerate(classes)}
    unknown = {p.leaf for p in [*parts.get("train", []), *feedback] if p.leaf not in taxonomy.nodes}
    if unknown:
        raise RefitError(f"labels {sorted(unknown)} are not leaves of taxonomy {taxonomy.version}")
    train_photos = _without_eval_photos([*parts["train"], *feedback], parts)
    for name, photos in (("train", train_photos), ("val", parts.get("val")), ("cal", parts.get("cal"))):
        if not photos:
            raise RefitError(f"no labelled photos for '{name}': a refit needs training, validation "
                             "and calibration photos")
    model_dir = Path(out_root) / version
    model_dir.mkdir(parents=True, exist_ok=True)
    cfg = PreprocessConfig(input_size=recipe.input_size, resize_size=recipe.resize_size)

    # 1. front activations (from the cache; only new photos pay for the front) ------------
    net = GarmentNet(recipe.architecture, len(classes), recipe.input_size, recipe.split_block,
                     dropout=recipe.dropout, drop_connect=recipe.drop_connect)
    net.freeze_front()
    store = FeatureStore(cache_dir, net, recipe, cfg)
    n_feedback = sum(p.source == "feedback" for p in train_photos)
    train_acts = store.augmented([p.photo for p in train_photos], recipe.views,
                                 lambda f: report("features", 0.8 * f))
    val_acts = store.plain([p.photo for p in parts["val"]])
    cal_acts = store.plain([p.photo for p in parts["cal"]], lambda f: report("features", 0.8 + 0.2 * f))
    y_photo, partial = label_targets([p.leaf for p in train_photos], taxonomy)  # inner nodes: partial labels
    y_val = np.array([index[p.leaf] for p in parts["val"]], dtype=np.int64)
    y_cal = np.array([index[p.leaf] for p in parts["cal"]], dtype=np.int64)
    # (N, V, C, h, w) → (V, N, C, h, w): the layout of the one fit loop (view-major)
    views = np.ascontiguousarray(train_acts.transpose(1, 0, *range(2, train_acts.ndim)))
    stages["features"] = time.time() - start
    log.info("features for %d training photos (%d from feedback) ready in %.1f s (%d computed)",
             len(train_photos), n_feedback, stages["features"], store.computed)

    # 2. fine-tune the last block(s) and the head ---------------------------------------------
    t = time.time()
    device = torch.device("cpu")
    # the training curve's validation points see a fixed third of the validation photos (a
    # dozen full passes would cost a sixth of the refit); temperature uses all of them
    curve = slice(None, None, 3)
    history = fit_on_views(net, views, np.arange(len(y_photo)), y_photo, recipe, val_acts[curve], y_val[curve],
                           start, progress=lambda f: report("fine-tune", f), partial=partial)
    stages["fine_tune"] = time.time() - t

    # 3. temperature (validation) and the hedger's λ tables (calibration split) ----------------
    t = time.time()
    report("calibrate", 0.0)
    val_logits = eval_logits(net, net.forward_from_front, val_acts, device)
    temperature = fit_temperature(val_logits, y_val)
    ece_before, _ = expected_calibration_error(softmax(val_logits), y_val)
    ece_after, _ = expected_calibration_error(softmax(val_logits, temperature), y_val)
    cal_probs = softmax(eval_logits(net, net.forward_from_front, cal_acts, device), temperature)
    calibration = calibrate_hedger(cal_probs, y_cal, taxonomy, y_photo)
    stages["calibrate"] = time.time() - t

    # 4. export (checked against PyTorch on real photos) and the card --------------------------
    t = time.time()
    report("export", 0.0)
    net.eval()
    parity = [load_photo(p.photo.path) for p in parts["val"][:8]]
    card = write_version(
        net, model_dir, version=version, model_recipe=ModelRecipe([recipe]), taxonomy=taxonomy,
        temperature=temperature, calibration=calibration, parity_photos=parity, history=history,
        data={"mode": "quick", "feature_cache": store.key,
              "photos_per_split": {"train": len(train_photos), "val": len(parts["val"]), "cal": len(parts["cal"]),
                                   "test": len(parts.get("test", []))},
              "feedback_photos": n_feedback},
        metrics={"history": history, "val_ece_before": ece_before, "val_ece_after": ece_after,
                 "train_device": "cpu", "features_computed": store.computed},
        threads=recipe.threads)
    stages["export"] = time.time() - t
    seconds = time.time() - start
    stages["cpu_seconds"] = time.process_time() - cpu_start  # both cores' work: wall time on an idle CPU ≈ half
    card.metrics.update(train_seconds=seconds, refit_stage_seconds=stages)
    card.save(model_dir)
    report("done", 1.0)
    log.info("quick refit %s in %.1f s (features %.1f, fine-tune %.1f, calibrate %.1f, export %.1f; %.0f CPU s)",
             version, seconds, stages["features"], stages["fine_tune"], stages["calibrate"], stages["export"],
             stages["cpu_seconds"])
    return RefitResult(model_dir, card, seconds, stages)


def full_retrain(
    data_dir: Path, feedback: Sequence[LabelledPhoto], taxonomy: Taxonomy, out_root: Path, version: str,
    split_file: Path, recipe: Recipe | None = None,
) -> TrainResult:
    """The model recipe with the feedback photos added to the training split (a new leaf in the
    taxonomy gets its photos from here and the head grows with ``taxonomy.leaves``)."""
    unknown = {p.leaf for p in feedback if p.leaf not in taxonomy.nodes}
    if unknown:
        raise RefitError(f"labels {sorted(unknown)} are not leaves of taxonomy {taxonomy.version}")
    # the split recipe's own loop trains on leaves; partial labels teach the cross-fitted recipes
    feedback = [p for p in feedback if taxonomy.nodes[p.leaf].is_leaf]
    extra = [Sample(image_id=f"feedback-{p.photo.sha256[:16]}", path=p.photo.path, sender=p.person,
                    label=p.leaf, leaf=p.leaf) for p in feedback]
    result = train(Path(data_dir), Path(out_root), taxonomy, recipe, split_file=split_file, version=version,
                   extra_train=extra)
    result.card.data["mode"] = "full"
    result.card.data["feedback_photos"] = len(extra)
    result.card.save(result.model_dir)
    return result
