"""ONNX Runtime latency of an exported model version at batch 1 and batch 32 (not a test).

    .venv/bin/python bench/onnx_latency.py [--model models/<version>] [--threads 2] [--repeats 30]

Prints a table and, with --json, writes the numbers. Inputs are real-sized random tensors: the
network's cost does not depend on pixel values.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from shared.config import BUNDLED_MODELS_DIR
from shared.model_card import ModelCard


def measure(session: ort.InferenceSession, size: int, batch: int, repeats: int) -> dict:
    x = np.random.default_rng(0).standard_normal((batch, 3, size, size)).astype(np.float32)
    for _ in range(3):
        session.run(None, {"images": x})
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        session.run(None, {"images": x})
        times.append((time.perf_counter() - t) * 1000)
    t = np.array(times)
    return {"batch": batch, "p50_ms": float(np.median(t)), "p95_ms": float(np.percentile(t, 95)),
            "ms_per_photo": float(np.median(t) / batch), "photos_per_s": float(batch * 1000 / np.median(t))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", type=Path, help="model version dir (default: newest bundled)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    model = args.model or sorted(BUNDLED_MODELS_DIR.glob("*/card.json"))[-1].parent
    card = ModelCard.load(model)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    session = ort.InferenceSession(str(model / card.onnx_file), opts, providers=["CPUExecutionProvider"])
    rows = [measure(session, card.preprocess.input_size, b, args.repeats if b == 1 else max(5, args.repeats // 4))
            for b in (1, 32)]
    result = {"model": card.version, "threads": args.threads, "processor": platform.processor() or platform.machine(),
              "onnxruntime": ort.__version__, "results": rows}
    print(f"model {card.version}, ONNX Runtime {ort.__version__} CPU, {args.threads} threads")
    for r in rows:
        print(f"  batch {r['batch']:>2}: p50 {r['p50_ms']:.1f} ms  p95 {r['p95_ms']:.1f} ms  "
              f"{r['ms_per_photo']:.2f} ms/photo  {r['photos_per_s']:.0f} photos/s")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
