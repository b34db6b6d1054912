"""Evaluating an exported model version exactly as it is served (its ONNX file on ONNX Runtime,
the shared preprocessing), on any directory in the dataset's layout.

Writes a JSON summary and a markdown report with PNG plots. Photos whose label is not a class
('Not sure', 'Other', 'Skip') are left out of accuracy and counted separately.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from pathlib import Path

import numpy as np
from tqdm import tqdm

from services.trainer.evaluation import plots
from services.trainer.data.augment import rotate_photo
from services.trainer.model.calibrate import expected_calibration_error
from services.trainer.data.dataset import load_dataset
from services.trainer.data.dataset import load_photo
from shared.model_card import ModelCard
from shared.model_contract import load_model
from shared.preprocessing import preprocess
from shared.taxonomy import Taxonomy, load_taxonomy

__all__ = ["evaluate", "classification_metrics", "ten_way", "write_report", "hedging_section", "TOP10_LABELS", "ROTATION_ANGLES"]

log = logging.getLogger(__name__)

# The ten most common classes, as in published ten-class results on this dataset.
TOP10_LABELS = ["T-Shirt", "Longsleeve", "Pants", "Shoes", "Shirt", "Dress", "Outwear", "Shorts", "Skirt", "Hat"]
ROTATION_ANGLES = [-90, -60, -30, 0, 30, 60, 90]


class ModelRunner:
    """The exported model as serving runs it (``shared.model_contract.load_model``, on the CPU),
    fed by the shared preprocessing."""

    def __init__(self, model_dir: Path, threads: int = 2) -> None:
        self.model = load_model(model_dir, prefer_gpu=False, intra_op_threads=threads)
        self.card = self.model.card

    def probabilities(self, images, batch_size: int = 32, desc: str = "") -> np.ndarray:
        cfg = self.card.preprocess
        out, batch = [], []
        for img in tqdm(images, desc=desc, leave=False, mininterval=2.0):
            batch.append(preprocess(img, cfg))
            if len(batch) == batch_size:
                out.append(self.model.run(np.stack(batch))); batch = []
        if batch:
            out.append(self.model.run(np.stack(batch)))
        return np.concatenate(out) if out else np.zeros((0, len(self.card.classes)), np.float32)


def _per_class(y: np.ndarray, pred: np.ndarray, classes: list[str]) -> tuple[dict, np.ndarray]:
    k = len(classes)
    matrix = np.zeros((k, k), dtype=np.int64)
    np.add.at(matrix, (y, pred), 1)
    per = {}
    for i, name in enumerate(classes):
        tp, support, predicted = matrix[i, i], matrix[i].sum(), matrix[:, i].sum()
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per[name] = {"precision": float(precision), "recall": float(recall), "f1": float(f1), "support": int(support)}
    return per, matrix


def ten_way(probs: np.ndarray, classes: list[str], taxonomy: Taxonomy, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(is the true class one of the ten common ones, the prediction restricted to those ten): what
    ``top1_top10`` and ``top1_10way`` are read from."""
    index = {c: i for i, c in enumerate(classes)}
    top10_idx = np.array([index[taxonomy.label_to_leaf[label]] for label in TOP10_LABELS])
    return np.isin(y, top10_idx), top10_idx[probs[:, top10_idx].argmax(1)]


def classification_metrics(probs: np.ndarray, y: np.ndarray, classes: list[str], taxonomy: Taxonomy
                           ) -> tuple[dict, np.ndarray, list[dict]]:
    """The evaluation JSON's accuracy and calibration figures for any probabilities (an exported
    model's, or out-of-fold predictions in ``wardrobe cv``); also the confusion matrix and ECE bins."""
    pred = probs.argmax(1)
    top3 = np.argsort(-probs, axis=1)[:, :3]
    in_top10, restricted_pred = ten_way(probs, classes, taxonomy, y)
    per_class, matrix = _per_class(y, pred, classes)
    ece, bins = expected_calibration_error(probs, y, bins=15)
    metrics = {
        "top1": float((pred == y).mean()),
        "top3": float((top3 == y[:, None]).any(1).mean()),
        "n_top10": int(in_top10.sum()),
        "top1_top10": float((pred[in_top10] == y[in_top10]).mean()) if in_top10.any() else None,
        "top1_10way": float((restricted_pred[in_top10] == y[in_top10]).mean()) if in_top10.any() else None,
        "per_class": per_class,
        "ece": ece,
    }
    return metrics, matrix, bins


def evaluate(data_dir: Path, model_dir: Path, json_out: Path, split: str | None = None,
             split_file: Path | None = None, taxonomy: Taxonomy | None = None,
             rotation: bool = True, report_dir: Path | None = None, bootstrap: int = 1000) -> dict:
    start = time.time()
    runner = ModelRunner(model_dir)
    card = runner.card
    taxonomy = taxonomy or load_taxonomy()
    if taxonomy.digest != card.taxonomy_digest:
        raise ValueError(f"model {card.version} was trained on taxonomy {card.taxonomy_digest}, "
                         f"but the loaded taxonomy is {taxonomy.digest}")
    dataset = load_dataset(data_dir, taxonomy, on_error="skip")
    samples = dataset.samples
    if split:
        split_path = Path(split_file) if split_file else Path(model_dir) / "split.json"
        ids = set(json.loads(split_path.read_text())[split])
        samples = [s for s in samples if s.image_id in ids]
    classified = [s for s in samples if s.leaf is not None]
    ignored = Counter(s.label for s in samples if s.leaf is None)
    if not classified:
        raise ValueError(f"no labelled photo to evaluate in {data_dir} (split={split})")
    classes = card.classes
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[s.leaf] for s in classified])
    photos = [load_photo(s.path) for s in tqdm(classified, desc="decode", leave=False, mininterval=2.0)]
    probs = runner.probabilities(photos, desc="evaluate")
    metrics, matrix, bins = classification_metrics(probs, y, classes, taxonomy)
    summary: dict = {
        "model_version": card.version,
        "data": str(data_dir),
        "split": split,
        "n": int(len(y)),
        "ignored": dict(ignored),
        "skipped": len(dataset.skipped),
        **metrics,
        "temperature": card.temperature,
    }
    if rotation:
        summary["rotation"], summary["rotation_true_prob"] = {}, {}
        for angle in ROTATION_ANGLES:
            p = probs if angle == 0 else runner.probabilities(
                [rotate_photo(img, angle, card.preprocess) for img in photos], desc=f"rotate {angle}°")
            summary["rotation"][str(angle)] = float((p.argmax(1) == y).mean())
            summary["rotation_true_prob"][str(angle)] = float(p[np.arange(len(y)), y].mean())
    if card.calibration:
        from services.trainer.evaluation.comparison import (
            bootstrap_gain_difference,
            calibrated_world_difference,
            compare_darts_backoff,
        )
        from services.trainer.evaluation.report import hedged_summary

        summary["hedged"] = hedged_summary(probs, y, taxonomy, card.calibration)
        comparison = compare_darts_backoff(probs, y, taxonomy, card.calibration)
        # at equal realised accuracy: DARTS's mean information gain minus the back-off baseline's
        summary["hedged"]["darts_vs_backoff"] = {
            k: comparison[k] for k in ("accuracy_range", "darts_ge_backoff", "min_diff", "mean_diff", "share_ge",
                                       "at_targets")}
        # is a gap at a target larger than resampling the photos would produce? (paired bootstrap)
        summary["hedged"]["darts_vs_backoff"]["bootstrap"] = bootstrap_gain_difference(
            probs, y, taxonomy, card.calibration, n_boot=bootstrap)
        # how often would a split this size show DARTS behind if the probabilities were right?
        summary["hedged"]["darts_vs_backoff"]["calibrated_world"] = calibrated_world_difference(
            probs, taxonomy, card.calibration, n_draws=bootstrap)
    summary["seconds"] = time.time() - start

    json_out = Path(json_out)
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(summary, indent=2) + "\n")
    report_dir = Path(report_dir) if report_dir else json_out.parent
    write_report(summary, probs, y, matrix, bins, taxonomy, card, report_dir, json_out.stem)
    return summary


def write_report(summary: dict, probs: np.ndarray, y: np.ndarray, matrix: np.ndarray, bins: list[dict],
                 taxonomy: Taxonomy, card: ModelCard, out: Path, stem: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    short = [c.split(".")[-1] for c in card.classes]
    images = {
        "confusion": plots.confusion_matrix(matrix, short, out / f"{stem}_confusion.png"),
        "per_class": plots.per_class_bars({s: summary["per_class"][c] for s, c in zip(short, card.classes)},
                                          out / f"{stem}_per_class.png"),
        "reliability": plots.reliability_diagram(bins, summary["ece"], out / f"{stem}_reliability.png",
                                                 title=f"T={card.temperature:.2f}"),
    }
    if "rotation" in summary:
        rot = {a: {"accuracy": summary["rotation"][a], "mean_true_prob": summary["rotation_true_prob"][a]}
               for a in summary["rotation"]}
        images["rotation"] = plots.rotation_curve(rot, out / f"{stem}_rotation.png")
    if card.calibration:
        from services.trainer.evaluation.report import write_hedging_plots

        for path in write_hedging_plots(probs, y, taxonomy, card.calibration, out, summary=summary.get("hedged")):
            images[Path(path).stem] = Path(path)
    pct = lambda v: "n/a" if v is None else f"{100 * v:.1f}%"  # noqa: E731
    lines = [
        f"# Evaluation of model {card.version}", "",
        f"Data: `{summary['data']}`" + (f", split `{summary['split']}`" if summary["split"] else ""),
        f"; {summary['n']} labelled photos ({sum(summary['ignored'].values())} with a non-class label left out:"
        f" {summary['ignored']}).", "",
        "| metric | value |", "|---|---|",
        f"| top-1 (17 classes) | {pct(summary['top1'])} |",
        f"| top-3 | {pct(summary['top3'])} |",
        f"| top-1 on the ten most common classes (n={summary['n_top10']}) | {pct(summary['top1_top10'])} |",
        f"| top-1, ten-way (prediction restricted to those ten) | {pct(summary['top1_10way'])} |",
        f"| ECE (15 bins, T={card.temperature:.3f}) | {pct(summary['ece'])} |", "",
    ]
    if "rotation" in summary:
        lines += ["## Rotation check", "", "| angle | top-1 | mean p(true) |", "|---|---|---|"]
        lines += [f"| {a}° | {pct(summary['rotation'][a])} | {summary['rotation_true_prob'][a]:.3f} |"
                  for a in summary["rotation"]]
        lines.append("")
    if "hedged" in summary:
        lines += hedging_section(summary["hedged"])
    lines += ["## Per class", "", "| class | precision | recall | support |", "|---|---|---|---|"]
    lines += [f"| {c} | {v['precision']:.2f} | {v['recall']:.2f} | {v['support']} |"
              for c, v in summary["per_class"].items()]
    lines += ["", "## Plots", ""] + [f"![{k}]({p.name})" for k, p in images.items()]
    path = out / f"{stem}.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def hedging_section(hedged: dict) -> list[str]:
    """The report's hedging tables (the JSON has every number; these are the ones people read)."""
    lines = ["## Hedged answers", "",
             f"Default method `{hedged['default_method']}`, reward `{hedged['reward']}`, {hedged['n']} photos. "
             "Gain: mean information gain in bits, 0 for a wrong answer. Depth shares: root / 1 / 2 / 3.", "",
             "| method | target | λ | realised accuracy | mean gain | leaf answers | depth shares |",
             "|---|---|---|---|---|---|---|"]
    for method in ("crc", "darts"):
        for key, v in hedged[method].items():
            shares = " / ".join(f"{100 * s:.0f}" for s in v["level_share"].values())
            lines.append(f"| {method} | {key} | {v['lam']:.3g} | {100 * v['accuracy']:.1f}% | "
                         f"{v['mean_info_gain']:.3f} | {100 * v['specificity']:.1f}% | {shares} |")
    cmp = hedged.get("darts_vs_backoff")
    if cmp:
        boot = cmp.get("bootstrap", {}).get("targets", {})
        world = cmp.get("calibrated_world", {})
        lines += ["", "### DARTS vs back-off at equal realised accuracy", "",
                  "Observed on these photos, with a paired-bootstrap 95 % interval; and in a *calibrated "
                  "world* (labels drawn from the model's own probabilities, "
                  f"{world.get('n_draws', 0)} draws): the expected difference and how often one split of "
                  "this size shows DARTS behind anyway.", "",
                  "| target | DARTS | back-off | difference | 95 % interval | calibrated world: expected | sd | "
                  "splits with DARTS behind |", "|---|---|---|---|---|---|---|---|"]
        for key, b in boot.items():
            at = cmp["at_targets"].get(key, {})
            w = world.get("targets", {}).get(key, {})
            cells = [f"{at['darts']:.3f}" if at else "–", f"{at['backoff']:.3f}" if at else "–",
                     f"{b['diff']:+.3f}", f"[{b['ci95'][0]:+.3f}, {b['ci95'][1]:+.3f}]",
                     f"{w['expected']:+.3f}" if w else "–", f"{w['sd']:.3f}" if "sd" in w else "–",
                     f"{100 * w['share_below']:.0f}%" if "share_below" in w else "–"]
            lines.append(f"| {key} | " + " | ".join(cells) + " |")
        if world.get("share_all_ge") is not None:
            lines += ["", f"In the calibrated world, DARTS is at least as good at every target on "
                          f"{100 * world['share_all_ge']:.0f}% of splits this size."]
        lines += ["", f"Over the accuracy range {cmp['accuracy_range'][0]:.3f}–{cmp['accuracy_range'][1]:.3f}: "
                      f"mean difference {cmp['mean_diff']:+.3f} bits, DARTS ≥ back-off on "
                      f"{100 * cmp['share_ge']:.0f}% of it."]
        share = world.get("range_share_ge")
        if share:
            lines[-1] += (f" In the calibrated world: {100 * share['mean']:.0f}% on average "
                          f"(5th–95th percentile of splits {100 * share['p05']:.0f}–{100 * share['p95']:.0f}%).")
    return lines + [""]
