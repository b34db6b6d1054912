"""ONNX Runtime latency of model versions at batch 1 and batch 32, compared in one run (not a test).

    .venv/bin/python bench/onnx_latency.py [--model models/<version> ...] [--threads 2] [--repeats 30]
        [--rounds 3] [--clock wall|cpu] [--json out.json] [--compare-torch]

Several ``--model`` (float and INT8 versions alike, each opened by the model contract as the
inference worker opens it) are timed **interleaved**: each round times every model once, batch 1
then batch 32, and a model's figure is the median over all its rounds' runs. So a candidate and
its baseline see the same background load, and the ratio between them holds on a busy machine
even when the absolute figures do not. The load average before and after is printed and
recorded: on a shared machine, rerun it when the load is near 0 for the absolute figures.
Inputs are real-sized random tensors: the network's cost does not depend on pixel values.
Without ``--model``: the bundled release (``models/RELEASE``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from shared.config import BUNDLED_MODELS_DIR
from shared.model_card import ModelCard
from shared.model_contract import load_model
from shared.registry import release_version


def torch_eager_ms_per_photo(card: ModelCard, threads: int, batch: int = 32) -> float:
    """The same architecture in eager PyTorch (weights do not change the cost)."""
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


def time_runs(run, x: np.ndarray, repeats: int, clock=time.perf_counter) -> list[float]:  # noqa: ANN001
    """``repeats`` timed calls of ``run`` (``LoadedModel.run``; milliseconds of ``clock``) after one untimed one."""
    run(x)
    times = []
    for _ in range(repeats):
        t = clock()
        run(x)
        times.append((clock() - t) * 1000)
    return times


def describe(card: ModelCard, path: Path) -> str:
    q = card.quantization
    kind = f"INT8 {q.format} ({q.calibration_method}, {q.calibration_photos} photos)" if q else "float32"
    return f"{card.architecture}, {card.preprocess.input_size} px, {kind}, {path.stat().st_size / 1e6:.1f} MB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, action="append",
                    help="model version dir; repeat to compare, the first is the baseline (default: the bundled release)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=30, help="batch-1 runs per round (batch 32: a quarter, ≥ 3)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds over all models")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="wall: elapsed time (spinning threads, ONNX Runtime's default); cpu: this process's CPU "
                         "time with spinning off, i.e. the work per run, which a busy machine inflates far less "
                         "(on a quiet one, wall ≈ cpu ÷ threads when the threads stay busy)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--compare-torch", action="store_true",
                    help="also time the same network in eager PyTorch (batch 32, needs the trainer extra)")
    args = ap.parse_args()
    dirs = args.model or [BUNDLED_MODELS_DIR / (release_version(BUNDLED_MODELS_DIR)
                                                or sorted(BUNDLED_MODELS_DIR.glob("*/card.json"))[-1].parent.name)]
    cpu = args.clock == "cpu"
    clock = time.process_time if cpu else time.perf_counter
    models = [load_model(d, prefer_gpu=False, intra_op_threads=args.threads, spinning=not cpu) for d in dirs]
    rng = np.random.default_rng(0)
    inputs = {b: {m.version: rng.standard_normal((b, 3, m.card.preprocess.input_size, m.card.preprocess.input_size)
                                                 ).astype(np.float32) for m in models} for b in (1, 32)}
    times: dict[tuple[str, int], list[float]] = {(m.version, b): [] for m in models for b in (1, 32)}
    load_before = os.getloadavg()
    for _ in range(args.rounds):
        for m in models:
            for b in (1, 32):
                times[(m.version, b)] += time_runs(m.run, inputs[b][m.version],
                                                   args.repeats if b == 1 else max(3, args.repeats // 4), clock)
    load_after = os.getloadavg()
    rows = []
    for m, d in zip(models, dirs):
        row = {"model": m.version, "dir": str(d), "what": describe(m.card, Path(d) / m.card.onnx_file)}
        for b in (1, 32):
            t = np.array(times[(m.version, b)])
            row[f"batch{b}"] = {"runs": len(t), "p50_ms": float(np.median(t)), "p95_ms": float(np.percentile(t, 95)),
                                "ms_per_photo": float(np.median(t) / b), "photos_per_s": float(b * 1000 / np.median(t))}
        rows.append(row)
    base = rows[0]
    result = {"clock": args.clock, "threads": args.threads, "processor": platform.processor() or platform.machine(),
              "cpu_count": os.cpu_count(), "onnxruntime": ort.__version__, "rounds": args.rounds,
              "loadavg_before": load_before, "loadavg_after": load_after, "results": rows}
    print(f"ONNX Runtime {ort.__version__} CPU, {args.threads} threads, {args.rounds} interleaved rounds, "
          f"{'CPU time (ms of CPU, photos per CPU-second)' if cpu else 'wall clock'}; "
          f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after (on {os.cpu_count()} CPUs)")
    print("| model | what | batch 1 ms/photo (p95) | batch 32 photos/s | speed-up vs first (b1 / b32) |")
    print("|---|---|---|---|---|")
    for r in rows:
        b1, b32 = r["batch1"], r["batch32"]
        print(f"| {r['model']} | {r['what']} | {b1['ms_per_photo']:.2f} ({b1['p95_ms']:.2f}) | "
              f"{b32['photos_per_s']:.0f} | {base['batch1']['ms_per_photo'] / b1['ms_per_photo']:.2f}× / "
              f"{b32['photos_per_s'] / base['batch32']['photos_per_s']:.2f}× |")
    if args.compare_torch:
        result["torch_eager_ms_per_photo_batch32"] = torch_eager_ms_per_photo(models[0].card, args.threads)
        print(f"eager PyTorch ({models[0].version}), batch 32: {result['torch_eager_ms_per_photo_batch32']:.2f} ms/photo")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
