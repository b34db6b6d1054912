"""Peak memory of an ONNX Runtime session on the served model with and without its CPU arena.

    nice -n 10 .venv/bin/python bench/ort_arena_memory.py [--model-dir models/<version>] [--runs 25]

Each configuration runs in a fresh process, as the inference worker does (two intra-op threads,
no spinning, glibc's mmap threshold fixed by ``return_freed_bitmaps_to_the_os``), on ``--runs``
batches whose sizes are drawn from 1 to 16 (the micro-batcher's mix under load), and prints its
peak and final resident memory and the median time of a batch of 16. Configurations: ``arena``
(ONNX Runtime's default), ``same-as-requested`` (an arena that grows only by what is asked),
``no-arena`` (``ORT_CPU_MEM_ARENA=false``, the worker's default).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CONFIGS = ("arena", "same-as-requested", "no-arena")


def run_one(config: str, model_dir: Path, runs: int) -> dict:
    import random
    import statistics
    import time

    import numpy as np
    import onnxruntime as ort
    import psutil

    from shared.model_card import ModelCard
    from shared.photos import return_freed_bitmaps_to_the_os

    return_freed_bitmaps_to_the_os()
    card = ModelCard.load(model_dir)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.enable_cpu_mem_arena = config != "no-arena"
    if config == "same-as-requested":
        info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
        ort.create_and_register_allocator(info, ort.OrtArenaCfg(0, 1, -1, -1))  # 1: kSameAsRequested
        opts.add_session_config_entry("session.use_env_allocators", "1")
    session = ort.InferenceSession(str(model_dir / card.onnx_file), opts, providers=["CPUExecutionProvider"])
    side, me, rng = card.preprocess.input_size, psutil.Process(), random.Random(0)
    loaded = me.memory_info().rss / 2**20
    peak, times16 = loaded, []
    for _ in range(runs):
        n = rng.randint(1, 16)
        x = np.random.default_rng(n).random((n, 3, side, side), dtype=np.float32)
        t0 = time.perf_counter()
        session.run(None, {card.onnx_input: x})
        if n == 16:
            times16.append(time.perf_counter() - t0)
        peak = max(peak, me.memory_info().rss / 2**20)
    return {"config": config, "loaded_mb": round(loaded), "peak_mb": round(peak),
            "end_mb": round(me.memory_info().rss / 2**20),
            "median_batch16_s": round(statistics.median(times16), 3) if times16 else None}


def main() -> None:
    from shared.config import BUNDLED_MODELS_DIR

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    from shared.registry import release_version

    released = BUNDLED_MODELS_DIR / (release_version(BUNDLED_MODELS_DIR) or "")  # the served float version
    newest = sorted(p for p in BUNDLED_MODELS_DIR.iterdir() if (p / "card.json").is_file())[-1]
    ap.add_argument("--model-dir", type=Path, default=released if (released / "card.json").is_file() else newest)
    ap.add_argument("--runs", type=int, default=25)
    ap.add_argument("--config", choices=CONFIGS, help="(internal) run one configuration in this process")
    args = ap.parse_args()
    if args.config:
        print(json.dumps(run_one(args.config, args.model_dir, args.runs)))
        return
    for config in CONFIGS:
        out = subprocess.run([sys.executable, __file__, "--config", config, "--model-dir", str(args.model_dir),
                              "--runs", str(args.runs)], capture_output=True, text=True, check=True)
        print(out.stdout.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
