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

from services.trainer.export import ort_latency_stats
from shared.config import BUNDLED_MODELS_DIR
from shared.model_card import ModelCard


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
    rows = [ort_latency_stats(session, card.preprocess.input_size, b, args.repeats if b == 1 else max(5, args.repeats // 4))
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
