"""ONNX Runtime latency of an exported model version at batch 1 and batch 32 (not a test).

    .venv/bin/python bench/onnx_latency.py [--model models/<version>] [--threads 2] [--repeats 30]

Prints a table and, with --json, writes the numbers. Inputs are real-sized random tensors: the
network's cost does not depend on pixel values.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import onnxruntime as ort

from services.trainer.model.export import ort_latency_stats
from shared.config import BUNDLED_MODELS_DIR
from shared.model_card import ModelCard
from shared.model_contract import open_session


def torch_eager_ms_per_photo(card: ModelCard, threads: int, batch: int = 32) -> float:
    """The same architecture in eager PyTorch (weights do not change the cost)."""
    import time

    import torch

    from services.trainer.model.net import GarmentNet

    torch.set_num_threads(threads)
    net = GarmentNet(card.architecture, len(card.classes), card.preprocess.input_size,
                     card.recipe.get("split_block", 11), pretrained=False).eval()
    x = torch.randn(batch, 3, card.preprocess.input_size, card.preprocess.input_size)
    with torch.no_grad():
        net(x)
        t = time.perf_counter()
        for _ in range(3):
            net(x)
    return (time.perf_counter() - t) / 3 / batch * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", type=Path, help="model version dir (default: newest bundled)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--compare-torch", action="store_true",
                    help="also time the same network in eager PyTorch (batch 32, needs the trainer extra)")
    args = ap.parse_args()
    model = args.model or sorted(BUNDLED_MODELS_DIR.glob("*/card.json"))[-1].parent
    card = ModelCard.load(model)
    session = open_session(model / card.onnx_file, args.threads)
    rows = [ort_latency_stats(session, card.preprocess.input_size, b, args.repeats if b == 1 else max(5, args.repeats // 4))
            for b in (1, 32)]
    result = {"model": card.version, "threads": args.threads, "processor": platform.processor() or platform.machine(),
              "onnxruntime": ort.__version__, "results": rows}
    print(f"model {card.version}, ONNX Runtime {ort.__version__} CPU, {args.threads} threads")
    for r in rows:
        print(f"  batch {r['batch']:>2}: p50 {r['p50_ms']:.1f} ms  p95 {r['p95_ms']:.1f} ms  "
              f"{r['ms_per_photo']:.2f} ms/photo  {r['photos_per_s']:.0f} photos/s")
    if args.compare_torch:
        result["torch_eager_ms_per_photo_batch32"] = torch_eager_ms_per_photo(card, args.threads)
        print(f"  eager PyTorch, batch 32: {result['torch_eager_ms_per_photo_batch32']:.2f} ms/photo")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
