"""Cross-validation grouped by person, and the model trained on everything (``wardrobe cv``).

Every user of Wardrobe is a person whose photos were never in training, and one person's photos
look alike (same floor, light, camera and labelling habits). So recipes are compared by K-fold
cross-validation in which **no sender is in two folds**, over all labelled photos; the single
test split of ``models/split.json`` stays only as a quick check.

Compute is the binding constraint (a shared 2-core CPU), and the CPU recipe freezes the front
of the network, so the front's work is done **once for all folds**:

    1. decode every labelled photo once; run the frozen front on ``views`` augmented views of
       each (and on the served, centre-cropped photo upright and rotated ±30°); cache the
       activations on disk (float16, ``cache/``; reused by a rerun with the same front/views)
    2. for each fold: a fresh back + head fine-tuned (``fit.loop.fit_on_views``) on the cached
       views of the other folds' photos; the held-out photos' logits are the out-of-fold (OOF)
       predictions (``folds/fold<k>.npz``; a rerun skips finished folds)
    3. the shipped network: back + head fine-tuned on the cached views of **all** photos
       (``final/checkpoint.pt``)
    4. cross-fitting (``ship``): its temperature and the hedger's λ tables are fitted on the OOF
       predictions (every sender, each predicted by a model that never saw them), then it is
       exported and checked like any model version

5 folds + the final network cost 5 × (photos × views × epochs) fine-tuning steps but only one
pass of the front, where 6 independent ``train()`` runs would pay the front 6 times.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from tqdm import tqdm

from services.trainer.data.augment import augmented_view, rotate_photo, shrink_for_cache, training_transform
from services.trainer.data.dataset import Sample, load_dataset, load_photo, split_by_sender
from services.trainer.fit.front import OrtRunner, run_in_batches
from services.trainer.fit.loop import eval_logits, fit_on_views, new_net, seed_everything
from services.trainer.model.net import GarmentNet
from services.trainer.pipelines.version import write_version
from shared.recipe import CalibrationRecipe, ModelRecipe, Recipe
from shared.model_card import TRAINED_ON_ALL, PreprocessConfig
from shared.preprocessing import preprocess
from shared.taxonomy import Taxonomy

if TYPE_CHECKING:
    from shared.hedging.calibration import Calibration

__all__ = ["assign_folds", "ViewCache", "build_cache", "cross_validate", "CVRun",
           "CV_ANGLES", "load_oof", "with_kids", "ship", "CALIBRATION_SOURCE"]

log = logging.getLogger(__name__)

CV_ANGLES = (0, -30, 30)  # served photo upright and turned ±30° (the rotation check)
CURVE_PHOTOS = 256  # held-out photos scored at each validation point (training curves only)


# --- 0. folds ------------------------------------------------------------------------------------
def assign_folds(senders: list[str], labels: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """Fold index (0..k-1) per photo; every sender's photos land in one fold.

    scikit-learn's ``StratifiedGroupKFold`` (installed with cleanlab) also balances the classes
    across folds, which matters for rare classes held by few senders; without it, the trainer's
    deterministic greedy sender split (``split_by_sender``) with equal shares."""
    senders = [str(s) for s in senders]
    n_senders = len(set(senders))
    if n_senders < k:
        raise ValueError(f"{k} folds need at least {k} senders, the data has {n_senders}")
    folds = np.full(len(senders), -1, dtype=np.int64)
    try:
        import warnings

        from sklearn.model_selection import StratifiedGroupKFold

        splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        with warnings.catch_warnings():  # "least populated class has fewer members than n_splits"
            warnings.simplefilter("ignore", UserWarning)
            for f, (_, test) in enumerate(splitter.split(np.zeros(len(senders)), labels, groups=senders)):
                folds[test] = f
    except ImportError:
        samples = [Sample(str(i), Path(), s, "", None) for i, s in enumerate(senders)]
        parts = split_by_sender(samples, seed=seed, fractions={str(f): 1.0 / k for f in range(k)})
        for f in range(k):
            folds[[int(i) for i in parts[str(f)]]] = f
    assert (folds >= 0).all(), "every photo gets a fold"
    return folds


# --- 1. the front, once --------------------------------------------------------------------------
@dataclass
class ViewCache:
    """Front activations: ``views`` (V, N, C, h, w) augmented training views and ``served[angle]``
    (N, C, h, w) for the photo as served (resize, centre crop), upright or rotated."""

    views: np.ndarray
    served: dict[int, np.ndarray]

    def training_views(self, with_served: bool) -> np.ndarray:
        """(V', N, C, h, w): the augmented views, plus the served crops (upright and rotated) when
        ``with_served`` — on a crowded CPU those are the cheapest views there are, since the
        evaluation needs them anyway (the recipe trains on rotations up to ±50° in any case)."""
        extra = [self.served[a][None] for a in sorted(self.served)] if with_served else []
        if not extra:
            return self.views
        return np.concatenate([self.views, *extra]) if len(self.views) else np.concatenate(extra)


FRONT_FIELDS = ("architecture", "input_size", "resize_size", "split_block")  # what the front computes
AUGMENT_FIELDS = ("crop_scale", "rotation_degrees", "hflip", "color_jitter", "seed")  # what a view draws


def _served_key(recipe: Recipe, ids: list[str], angles: tuple[int, ...]) -> dict:
    """What the served crops' activations depend on (not the number of augmented views)."""
    r = recipe.to_dict()
    key = {"front": {k: r[k] for k in FRONT_FIELDS}, "ids_sha": _sha(ids), "angles": list(angles)}
    return json.loads(json.dumps(key))  # as read back from JSON (tuples become lists)


def _view_key(recipe: Recipe, ids: list[str], view: int) -> dict:
    """What augmented view number ``view`` depends on. Each view draws from its own seed, so view v
    is the same whichever ``views`` a run asks for: a run with more views reuses the ones cached."""
    r = recipe.to_dict()
    key = {"front": {k: r[k] for k in FRONT_FIELDS}, "augment": {k: r[k] for k in AUGMENT_FIELDS},
           "view": view, "ids_sha": _sha(ids)}
    return json.loads(json.dumps(key))


def _sha(ids: list[str]) -> str:
    import hashlib

    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


def _cached(cache_dir: Path, name: str, key: dict) -> bool:
    meta = cache_dir / f"{name}.json"
    return meta.is_file() and json.loads(meta.read_text()) == key


def _add_seconds(cache_dir: Path, seconds: float) -> None:
    """Front compute spent on this cache, summed over the runs that filled it."""
    timing = cache_dir / "seconds.json"
    before = json.loads(timing.read_text())["seconds"] if timing.is_file() else 0.0
    timing.write_text(json.dumps({"seconds": before + seconds}) + "\n")


def build_cache(samples: list[Sample], net: GarmentNet, recipe: Recipe, cfg: PreprocessConfig,
                cache_dir: Path, angles: tuple[int, ...] = CV_ANGLES) -> ViewCache:
    """Decode each photo once, run the frozen front on its served crops and augmented views, and
    keep the activations in ``cache_dir``: the served crops and each view in its own file with its
    own key (``served.json``, ``view<v>.json``), so a run reuses every part whose front, photos and
    augmentation match and computes only what is missing (e.g. views 4-7 after a 4-view run)."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    ids = [s.image_id for s in samples]
    served_key = _served_key(recipe, ids, angles)
    missing_views = [v for v in range(recipe.views) if not _cached(cache_dir, f"view{v}", _view_key(recipe, ids, v))]
    have_served = _cached(cache_dir, "served", served_key)
    if have_served and not missing_views:
        log.info("reusing cached front activations in %s (served crops, %d views)", cache_dir, recipe.views)
        return _load_cache(cache_dir, recipe.views, angles)
    start = time.time()
    front = OrtRunner(net.front, recipe.input_size, recipe.threads)

    # decode once; served crops (upright and rotated) in chunks so full-size photos never pile up
    photos, served = [], {a: [] for a in angles}
    chunk = 64
    desc = "decode" if have_served else "decode + served crops"
    for i in tqdm(range(0, len(samples), chunk), desc=desc, mininterval=5.0):
        decoded = [load_photo(s.path) for s in samples[i:i + chunk]]
        if not have_served:
            for a in angles:
                batch = np.stack([preprocess(rotate_photo(img, a, cfg), cfg) for img in decoded])
                served[a].append(front(batch).astype(np.float16))
        photos.extend(shrink_for_cache(img, cfg) for img in decoded)
    if not have_served:
        (cache_dir / "served.json").unlink(missing_ok=True)
        for a, parts in served.items():
            np.save(cache_dir / f"served_{a}.npy", np.concatenate(parts))
        (cache_dir / "served.json").write_text(json.dumps(served_key, indent=1) + "\n")  # last: never half-written
        log.info("decoded %d photos and cached %d served crops each in %.0f s", len(photos), len(angles),
                 time.time() - start)

    transform = training_transform(recipe, cfg)
    for v in missing_views:
        torch.manual_seed(recipe.seed * 1000 + v)  # torchvision's random draws, as in train()
        (cache_dir / f"view{v}.json").unlink(missing_ok=True)
        acts = run_in_batches(photos, lambda im: augmented_view(im, transform, cfg), front,
                              desc=f"view {v + 1}/{recipe.views}", total=len(photos))
        np.save(cache_dir / f"view{v}.npy", acts.astype(np.float16))
        (cache_dir / f"view{v}.json").write_text(json.dumps(_view_key(recipe, ids, v), indent=1) + "\n")
        log.info("cached view %d/%d (%.0f s so far)", v + 1, recipe.views, time.time() - start)
    _add_seconds(cache_dir, time.time() - start)
    return _load_cache(cache_dir, recipe.views, angles)


def _load_cache(cache_dir: Path, views: int, angles: tuple[int, ...]) -> ViewCache:
    served = {a: np.load(cache_dir / f"served_{a}.npy") for a in angles}
    shape = served[angles[0]].shape
    stacked = np.empty((views, *shape), np.float16)  # in memory: fine-tuning reads it at random
    for v in range(views):
        stacked[v] = np.load(cache_dir / f"view{v}.npy", mmap_mode="r")
    return ViewCache(stacked, served)


@dataclass
class CVRun:
    out_dir: Path
    samples: list[Sample]
    y: np.ndarray
    folds: np.ndarray
    oof_logits: dict[int, np.ndarray]  # angle → (N, classes), each photo scored by its fold's model
    final_checkpoint: Path | None
    seconds: float


def cross_validate(data_dir: Path, taxonomy: Taxonomy, out_dir: Path, recipe: Recipe | None = None,
                   folds: int = 5, final: bool = True, max_photos: int | None = None,
                   angles: tuple[int, ...] = CV_ANGLES, train_on_served: bool = False,
                   cache_dir: Path | None = None) -> CVRun:
    """Steps 1-3 of the module docstring; returns the OOF logits (also in ``oof.npz``).

    ``train_on_served``: the served crops (upright, ±30°) are training views too, next to the
    recipe's ``views`` augmented ones (which may then be 0). ``cache_dir`` (default
    ``out_dir/cache``): another run's cache, to try a fine-tuning variant without the front.

    Resumable: the cache, each finished fold and the final network are kept in ``out_dir`` and
    skipped by a rerun with the same recipe and data. ``max_photos`` takes a sender-grouped
    subset for smoke runs only."""
    recipe = recipe or Recipe()
    if recipe.fine_tune != "back":
        raise ValueError("wardrobe cv shares the frozen front across folds: it needs fine_tune=back")
    start = time.time()
    torch.set_num_threads(recipe.threads)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = PreprocessConfig(input_size=recipe.input_size, resize_size=recipe.resize_size)
    classes = taxonomy.leaves
    index = {leaf: i for i, leaf in enumerate(classes)}

    dataset = load_dataset(data_dir, taxonomy, on_error="skip")
    samples = sorted(dataset.classified, key=lambda s: s.image_id)  # 'Not sure'/'Other'/'Skip' left out
    if max_photos:
        samples = samples[:max_photos]
    y = np.array([index[s.leaf] for s in samples], dtype=np.int64)
    senders = [s.sender for s in samples]
    fold_of = assign_folds(senders, y, folds, seed=recipe.seed)
    (out_dir / "folds.json").write_text(json.dumps(
        {"k": folds, "seed": recipe.seed, "folds": {s.image_id: int(f) for s, f in zip(samples, fold_of)}}) + "\n")
    log.info("%d labelled photos from %d senders in %d sender-disjoint folds of %s photos", len(samples),
             len(set(senders)), folds, np.bincount(fold_of).tolist())
    (out_dir / "recipe.json").write_text(json.dumps(
        {**recipe.to_dict(), "cv": {"folds": folds, "train_on_served": train_on_served, "angles": list(angles)}},
        indent=1) + "\n")

    seed_everything(recipe.seed)
    cache_path = Path(cache_dir) if cache_dir else out_dir / "cache"
    cache = build_cache(samples, new_net(recipe, len(classes)), recipe, cfg, cache_path, angles)
    views = cache.training_views(train_on_served)
    log.info("training views per photo: %d (%d augmented%s)", len(views), len(cache.views),
             " + the served crops" if train_on_served else "")

    fold_dir = out_dir / "folds"
    fold_dir.mkdir(exist_ok=True)
    for k in range(folds):
        path = fold_dir / f"fold{k}.npz"
        if path.is_file():
            log.info("fold %d already done (%s)", k, path)
            continue
        t0 = time.time()
        seed_everything(recipe.seed + k)
        held = np.flatnonzero(fold_of == k)
        train_idx = np.flatnonzero(fold_of != k)
        net = new_net(recipe, len(classes))
        history = fit_on_views(net, views, train_idx, y, recipe, cache.served[0][held[:CURVE_PHOTOS]],
                               y[held[:CURVE_PHOTOS]])
        logits = {f"logits_{a}": eval_logits(net, net.forward_from_front, cache.served[a][held]) for a in angles}
        np.savez(path, idx=held, history=json.dumps(history), seconds=time.time() - t0, **logits)
        top1 = float((logits["logits_0"].argmax(1) == y[held]).mean())
        log.info("fold %d/%d: %d held-out photos, top-1 %.3f (%.0f s)", k + 1, folds, len(held), top1, time.time() - t0)

    oof = {a: np.zeros((len(samples), len(classes)), np.float32) for a in angles}
    fold_seconds = []
    for k in range(folds):
        saved = np.load(fold_dir / f"fold{k}.npz")
        for a in angles:
            oof[a][saved["idx"]] = saved[f"logits_{a}"]
        fold_seconds.append(float(saved["seconds"]))
    # children's clothes are reported apart (evaluation.audience), when the dataset says which they are
    kids = {"kids": np.array([bool(s.kids) for s in samples])} if all(s.kids is not None for s in samples) else {}
    np.savez(out_dir / "oof.npz", ids=np.array([s.image_id for s in samples]), senders=np.array(senders),
             labels=y, folds=fold_of, classes=np.array(classes), **kids,
             **{f"logits_{a}": v for a, v in oof.items()})

    final_checkpoint = None
    if final:
        final_checkpoint = out_dir / "final" / "checkpoint.pt"
        if not final_checkpoint.is_file():
            t0 = time.time()
            seed_everything(recipe.seed)
            net = new_net(recipe, len(classes))
            everyone = np.arange(len(samples))
            # no photo is held out: the curves of the final network show its fit on training photos
            history = fit_on_views(net, views, everyone, y, recipe, cache.served[0][:CURVE_PHOTOS], y[:CURVE_PHOTOS])
            final_checkpoint.parent.mkdir(exist_ok=True)
            torch.save({"model": net.state_dict(), "recipe": recipe.to_dict(), "classes": classes,
                        "history": history, "taxonomy_digest": taxonomy.digest, "seconds": time.time() - t0,
                        "photos": len(samples), "senders": len(set(senders))}, final_checkpoint)
            log.info("final network on all %d photos in %.0f s", len(samples), time.time() - t0)
    seconds = time.time() - start
    # compute spent on this run's results, also when a rerun only resumed (each stage keeps its own)
    timing_file = cache_path / "seconds.json"
    cache_seconds = json.loads(timing_file.read_text())["seconds"] if timing_file.is_file() else None
    final_seconds = (float(torch.load(final_checkpoint, map_location="cpu", weights_only=False)["seconds"])
                     if final_checkpoint else None)
    (out_dir / "timing.json").write_text(json.dumps(
        {"cache_seconds": cache_seconds, "fold_seconds": fold_seconds, "final_seconds": final_seconds,
         "this_invocation_seconds": seconds}) + "\n")
    return CVRun(out_dir, samples, y, fold_of, oof, final_checkpoint, seconds)


def load_oof(out_dir: Path) -> dict:
    """``oof.npz`` as a dict (ids, senders, labels, folds, classes, logits_<angle>; kids when the
    dataset has the column: :func:`with_kids` adds it to a run made before)."""
    with np.load(Path(out_dir) / "oof.npz") as f:
        return {k: f[k] for k in f.files}


def with_kids(oof: dict, data_dir: Path | None, taxonomy: Taxonomy) -> dict:
    """``oof`` with a ``kids`` flag per photo read from ``data_dir``'s images.csv when it has none
    (runs made before the flag was saved); unchanged without a dataset or when a photo is missing
    from it or has no flag."""
    if "kids" in oof or not data_dir:
        return oof
    dataset = load_dataset(data_dir, taxonomy, verify_images=False)
    flags = {s.image_id: s.kids for s in dataset.samples}
    kids = [flags.get(str(i)) for i in oof["ids"]]
    if any(k is None for k in kids):
        log.warning("%d of %d photos have no kids flag in %s: children's clothes not reported apart",
                    sum(k is None for k in kids), len(kids), data_dir)
        return oof
    return {**oof, "kids": np.array(kids, dtype=bool)}


# --- 4. cross-fitting: the shipped model ------------------------------------------------------------
CALIBRATION_SOURCE = "cross-fitted"


@dataclass
class CrossFit:
    """Temperature and λ tables fitted on out-of-fold predictions, and what the card says of them."""

    temperature: float
    calibration: "Calibration"
    ece_before: float
    ece_after: float
    source: dict  # card.data.calibration_source


def cross_fit(oof: dict, taxonomy: Taxonomy, crc_unit: str, what: str) -> CrossFit:
    """Cross-fitting: the temperature and the hedger's λ tables (for the promise ``crc_unit``) fitted
    on out-of-fold predictions, every sender scored by models that never saw them (``cv.ship`` and
    ``ensemble.ship_ensemble``). ``what`` says in the card where the predictions came from."""
    from services.trainer.model.calibrate import expected_calibration_error, fit_temperature, softmax
    from shared.hedging.calibration import CRC_UNITS, calibrate_for_unit

    if crc_unit not in CRC_UNITS:
        raise ValueError(f"crc_unit must be one of {', '.join(CRC_UNITS)}, got {crc_unit!r}")
    y, senders, logits = oof["labels"], oof["senders"].astype(str), oof["logits_0"]
    # partial labels (a "Yes" to a hedged answer): ``label_sets`` (N, L) bool, the leaves the truth
    # may be; temperature and λ are fitted on them too, the ECE (top-1 right or wrong) on leaves only
    sets = oof.get("label_sets")
    labels = y if sets is None else sets
    exact = np.ones(len(y), bool) if sets is None else sets.sum(axis=1) == 1
    y_exact = y[exact] if sets is None else sets[exact].argmax(axis=1)
    temperature = fit_temperature(logits, labels)
    probs = softmax(logits, temperature)
    ece_before, _ = expected_calibration_error(softmax(logits[exact]), y_exact)
    ece_after, _ = expected_calibration_error(probs[exact], y_exact)
    cal = calibrate_for_unit(probs, labels, senders, taxonomy, crc_unit)
    log.info("cross-fitted temperature %.3f (OOF ECE %.4f → %.4f), crc per %s on %d photos (%d partial labels) "
             "of %d senders", temperature, ece_before, ece_after, crc_unit, len(y), int((~exact).sum()),
             len(np.unique(senders)))
    source = {"kind": CALIBRATION_SOURCE, "folds": int(oof["folds"].max()) + 1, "photos": int(len(y)),
              "senders": int(len(np.unique(senders))), "crc_unit": crc_unit, "what": what,
              **({"partial_label_photos": int((~exact).sum()),
                  "partial_labels": "temperature: NLL of the mass on the node's leaves; λ: an answer is known right "
                                    "when the node's leaves are all under it, known wrong when none is, and excluded "
                                    "where unknown"} if (~exact).any() else {})}
    return CrossFit(temperature, cal, ece_before, ece_after, source)


def cross_fitted_recipe(members: list[Recipe], cv: list[dict], crc_unit: str) -> ModelRecipe:
    """The model recipe of a version shipped from ``wardrobe cv`` runs (one per member, same folds):
    what the card records, and what a training job runs again."""
    return ModelRecipe(members, calibration=CalibrationRecipe(
        "cross-fitted", int(cv[0].get("folds", 5)), crc_unit, tuple(cv[0].get("angles", CV_ANGLES))),
        train_on_served=all(bool(c.get("train_on_served")) for c in cv))


def load_final(run_dir: Path, taxonomy: Taxonomy) -> tuple[GarmentNet, Recipe, dict]:
    """The network a ``wardrobe cv`` run trained on all photos (eval mode), its recipe and the saved
    checkpoint (history, photos, senders, seconds); refuses a run made for another taxonomy."""
    saved = torch.load(Path(run_dir) / "final" / "checkpoint.pt", map_location="cpu", weights_only=False)
    if saved["taxonomy_digest"] != taxonomy.digest or list(saved["classes"]) != taxonomy.leaves:
        raise ValueError(f"{run_dir} was trained for taxonomy {saved['taxonomy_digest']}, not {taxonomy.digest}")
    recipe = Recipe.from_overrides(dict(saved["recipe"]))
    net = new_net(recipe, len(taxonomy.leaves))
    net.load_state_dict(saved["model"])
    return net.eval(), recipe, saved


def parity_photos(oof: dict, data_dir: Path | None, n: int = 16) -> list:
    """A few of the run's own photos for the export's ONNX-vs-PyTorch check (none without data)."""
    if not data_dir:
        return []
    return [load_photo(Path(data_dir) / "images" / f"{i}.jpg") for i in sorted(oof["ids"][:n].tolist())]


def ship(run_dir: Path, taxonomy: Taxonomy, models_dir: Path, version: str, crc_unit: str = "group",
         data_dir: Path | None = None) -> Path:
    """Export the network trained on all photos as a model version, its temperature and λ tables
    fitted on the out-of-fold predictions (cross-fitting: every sender's photos scored by a
    model that never saw that sender), with ``crc_unit`` 'group' (a promise for every group of new
    people, the default), 'sender' (for a new person on average) or 'photo'. The card records how
    (``data.calibration_source``, ``calibration.crc_unit``)."""
    run_dir = Path(run_dir)
    net, recipe, saved = load_final(run_dir, taxonomy)
    oof = load_oof(run_dir)
    fit = cross_fit(oof, taxonomy, crc_unit, "temperature and λ tables fitted on out-of-fold predictions of "
                    "sender-disjoint fold models (wardrobe cv); the shipped network was trained on all photos")

    timing = json.loads((run_dir / "timing.json").read_text()) if (run_dir / "timing.json").is_file() else {}
    cv = json.loads((run_dir / "recipe.json").read_text()).get("cv", {})
    model_dir = Path(models_dir) / version
    write_version(
        net, model_dir, version=version, model_recipe=cross_fitted_recipe([recipe], [cv], crc_unit),
        taxonomy=taxonomy, temperature=fit.temperature, calibration=fit.calibration,
        parity_photos=parity_photos(oof, data_dir), history=saved["history"], recipe_extra={"cv": cv},
        data={"dir": str(data_dir) if data_dir else None, "photos": int(saved["photos"]),
              "senders": int(saved["senders"]), "trained_on": TRAINED_ON_ALL, "calibration_source": fit.source},
        metrics={"history": saved["history"], "oof_ece_before": fit.ece_before, "oof_ece_after": fit.ece_after,
                 "final_fit_seconds": saved.get("seconds"), "cv_timing": timing, "train_device": "cpu"},
    )
    log.info("model %s written to %s", version, model_dir)
    return model_dir
