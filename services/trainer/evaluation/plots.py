"""PNG plots people would rather look at than numbers (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["save_figure", "training_curves", "confusion_matrix", "per_class_bars", "reliability_diagram", "rotation_curve"]


def save_figure(fig, path: Path, dpi: int = 110) -> Path:  # noqa: ANN001 - a matplotlib Figure
    """Lay out, write and close a figure (closed so long runs that plot do not pile up figures)."""
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def training_curves(history: list[dict], path: Path) -> Path:
    epochs = [h["epoch"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    a.plot(epochs, [h["train_loss"] for h in history], "o-", label="train loss")
    a.plot(epochs, [h["val_nll"] for h in history], "o-", label="val NLL")
    a.set_xlabel("epoch"); a.legend(); a.set_title("loss")
    b.plot(epochs, [h["train_acc"] for h in history], "o-", label="train (augmented)")
    b.plot(epochs, [h["val_acc"] for h in history], "o-", label="validation")
    b.set_xlabel("epoch"); b.set_ylim(0, 1); b.legend(); b.set_title("top-1 accuracy")
    return save_figure(fig, path)


def confusion_matrix(matrix: np.ndarray, names: list[str], path: Path) -> Path:
    norm = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(9, 8))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=75, fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    for i in range(len(names)):
        for j in range(len(names)):
            if matrix[i, j]:
                ax.text(j, i, int(matrix[i, j]), ha="center", va="center", fontsize=6,
                        color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted"); ax.set_ylabel("true"); ax.set_title("confusion matrix (counts; colour = row share)")
    fig.colorbar(im, fraction=0.04)
    return save_figure(fig, path)


def per_class_bars(per_class: dict[str, dict], path: Path) -> Path:
    names = list(per_class)
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.bar(x - 0.2, [per_class[n]["precision"] for n in names], 0.4, label="precision")
    ax.bar(x + 0.2, [per_class[n]["recall"] for n in names], 0.4, label="recall")
    ax.set_xticks(x, [f"{n}\n(n={per_class[n]['support']})" for n in names], rotation=75, fontsize=7)
    ax.set_ylim(0, 1); ax.legend(); ax.set_title("per-class precision and recall")
    return save_figure(fig, path)


def reliability_diagram(bins: list[dict], ece: float, path: Path, title: str = "") -> Path:
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    centers = [(b["lo"] + b["hi"]) / 2 for b in bins]
    acc = [b["accuracy"] if b["n"] else 0 for b in bins]
    ax.bar(centers, acc, width=1 / len(bins), edgecolor="k", alpha=0.7, label="accuracy")
    ax.plot([0, 1], [0, 1], "r--", label="perfect calibration")
    ax.set_xlabel("confidence"); ax.set_ylabel("accuracy")
    ax.set_title(f"{title} ECE={ece * 100:.2f}%"); ax.legend(loc="upper left")
    return save_figure(fig, path)


def rotation_curve(rotation: dict[str, dict], path: Path) -> Path:
    angles = [int(a) for a in rotation]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(angles, [rotation[str(a)]["accuracy"] for a in angles], "o-", label="top-1 accuracy")
    ax.plot(angles, [rotation[str(a)]["mean_true_prob"] for a in angles], "s-", label="mean p(true class)")
    ax.set_xlabel("rotation (degrees)"); ax.set_ylim(0, 1); ax.legend(); ax.set_title("rotation check")
    return save_figure(fig, path)
