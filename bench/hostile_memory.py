"""Peak memory of the gateway and the inference worker under hostile photos at concurrency 16.

Starts the stack (``services.launcher.start_stack``: Redis, gateway, inference and hedger workers,
the committed model), warms it up, then runs two loads of the same size and shape and reads each
process's peak resident memory (``VmHWM``, reset between loads through ``/proc/<pid>/clear_refs``):

1. baseline: ordinary 640 × 480 JPEGs;
2. the worst photo kind for memory (``tests.hostile.WORST_FOR_MEMORY``: a 130 KB PNG declaring
   6300 × 6300 RGB pixels), or ``--kind``.

    nice -n 10 .venv/bin/python bench/hostile_memory.py --json bench/results/hostile_memory.json

Prints one line per load and process; the target is a peak under 600 MB for each process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._system import bench_system  # noqa: E402
from tests.factories import jpeg_bytes  # noqa: E402
from tests.hostile import WORST_FOR_MEMORY, hostile_photos  # noqa: E402

log = logging.getLogger("hostile_memory")
MB = 1024 * 1024


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def rss_mb(pid: int) -> float:
    return _status_kb(pid, "VmRSS") / 1024


def peak_mb(pid: int) -> float:
    return _status_kb(pid, "VmHWM") / 1024


def reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # 5: reset the peak RSS to the current RSS


async def load(url: str, key: str, photo: bytes, n: int, concurrency: int) -> dict:
    import httpx

    sem, statuses = asyncio.Semaphore(concurrency), {}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits,
                                 headers={"Authorization": f"Bearer {key}"}) as client:
        async def one() -> None:
            async with sem:
                r = await client.post("/v1/classifications", params={"wait": 30},
                                      files={"photo": ("p", photo, "application/octet-stream")})
                done = r.status_code == 200 and r.json().get("status") == "done"
                label = f"{r.status_code} {'done' if done else r.json().get('status', r.json().get('error', {}).get('code'))}"
                statuses[label] = statuses.get(label, 0) + 1

        t0 = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(n)))
        return {"seconds": round(time.perf_counter() - t0, 2), "statuses": statuses}


def measure(url: str, key: str, pids: dict[str, int], photo: bytes, n: int, concurrency: int) -> dict:
    for pid in pids.values():
        reset_peak(pid)
    before = {name: round(rss_mb(pid), 1) for name, pid in pids.items()}
    out = asyncio.run(load(url, key, photo, n, concurrency))
    out["rss_before_mb"] = before
    out["peak_rss_mb"] = {name: round(peak_mb(pid), 1) for name, pid in pids.items()}
    out["rss_after_mb"] = {name: round(rss_mb(pid), 1) for name, pid in pids.items()}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-c", "--concurrency", type=int, default=16)
    ap.add_argument("-n", type=int, default=64, help="requests per load")
    ap.add_argument("--kind", default=WORST_FOR_MEMORY, help="photo kind from tests/hostile.py")
    ap.add_argument("--model-dir", type=Path, default=None, help="model registry (default: the committed models/)")
    ap.add_argument("--target-mb", type=float, default=600.0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    max_bytes = 15 * MB  # the default MAX_PHOTO_BYTES
    photos = {p.kind: p for p in hostile_photos(max_bytes)}
    hostile = photos[args.kind]
    normal = jpeg_bytes((640, 480), seed=1)
    result: dict = {"host": platform.node(), "concurrency": args.concurrency, "requests": args.n,
                    "kind": args.kind, "photo_bytes": len(hostile.data), "max_photo_bytes": max_bytes}
    with bench_system("hostile-memory", args.model_dir) as system:
        url, key = system.url, system.key
        pids = {name: system.group.get(name).popen.pid for name in ("gateway", "inference")}
        asyncio.run(load(url, key, normal, 2 * args.concurrency, args.concurrency))  # warm-up
        result["baseline_normal_jpeg"] = measure(url, key, pids, normal, args.n, args.concurrency)
        result["hostile"] = measure(url, key, pids, hostile.data, args.n, args.concurrency)

    result["pass"] = all(v < args.target_mb for v in result["hostile"]["peak_rss_mb"].values())
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    for name in ("gateway", "inference"):
        base, hot = result["baseline_normal_jpeg"], result["hostile"]
        print(f"{name}: at rest {base['rss_before_mb'][name]:.0f} MB; peak at c={args.concurrency}: "
              f"{base['peak_rss_mb'][name]:.0f} MB (normal JPEGs), {hot['peak_rss_mb'][name]:.0f} MB "
              f"({args.kind}, {len(hostile.data) // 1024} KB); target < {args.target_mb:.0f} MB")
    print("statuses:", result["baseline_normal_jpeg"]["statuses"], result["hostile"]["statuses"])


if __name__ == "__main__":
    main()
