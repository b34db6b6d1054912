"""Peak memory of the gateway and the workers under ordinary and hostile photos at concurrency 16.

Starts the stack (``services.launcher.start_stack``: Redis, gateway, inference and hedger workers,
the committed model), warms it up, then runs one load after another and reads each process's
peak resident memory (``VmHWM``, reset between loads through ``/proc/<pid>/clear_refs``):

1. ordinary photos: 640 × 480 JPEGs sent back to back by 16 clients for ``--seconds`` (60);
2. each hostile kind of ``--kind`` (by default the worst for memory, ``tests.hostile.WORST_FOR_MEMORY``:
   a 130 KB PNG declaring 6300 × 6300 RGB pixels; the 188 KB JPEG scan bomb; the 1.6 KB lossless
   WebP declaring 8000 × 5000), ``-n`` requests each at the same concurrency.

    nice -n 10 .venv/bin/python bench/hostile_memory.py --json bench/results/hostile_memory.json

Prints one line per load and process; the target is a peak under 600 MB for each process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._system import bench_system  # noqa: E402
from tests.factories import jpeg_bytes  # noqa: E402
from tests.hostile import WORST_FOR_MEMORY, hostile_photos  # noqa: E402

log = logging.getLogger("hostile_memory")
DEFAULT_KINDS = (WORST_FOR_MEMORY, "jpeg_scan_bomb", "lossless_webp_8000x5000")
PROCESSES = ("gateway", "inference", "hedger")
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


async def load(url: str, key: str, photo: bytes, n: int, concurrency: int, seconds: float | None = None) -> dict:
    """``n`` requests at ``concurrency``, or with ``seconds``: ``concurrency`` clients back to back
    for that long."""
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

        async def back_to_back(deadline: float) -> None:
            while time.perf_counter() < deadline:
                await one()

        t0 = time.perf_counter()
        if seconds is None:
            await asyncio.gather(*(one() for _ in range(n)))
        else:
            await asyncio.gather(*(back_to_back(t0 + seconds) for _ in range(concurrency)))
        return {"seconds": round(time.perf_counter() - t0, 2), "statuses": statuses,
                "requests": sum(statuses.values())}


def measure(url: str, key: str, pids: dict[str, int], photo: bytes, n: int, concurrency: int,
            seconds: float | None = None) -> dict:
    for pid in pids.values():
        reset_peak(pid)
    before = {name: round(rss_mb(pid), 1) for name, pid in pids.items()}
    out = asyncio.run(load(url, key, photo, n, concurrency, seconds))
    out["rss_before_mb"] = before
    out["peak_rss_mb"] = {name: round(peak_mb(pid), 1) for name, pid in pids.items()}
    out["rss_after_mb"] = {name: round(rss_mb(pid), 1) for name, pid in pids.items()}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-c", "--concurrency", type=int, default=16)
    ap.add_argument("-n", type=int, default=64, help="requests per load")
    ap.add_argument("--seconds", type=float, default=60.0, help="length of the ordinary-photo load")
    ap.add_argument("--kind", action="append", default=None,
                    help="hostile photo kind from tests/hostile.py (repeatable; default: "
                    f"{', '.join(DEFAULT_KINDS)})")
    ap.add_argument("--model-dir", type=Path, default=None, help="model registry (default: the committed models/)")
    ap.add_argument("--target-mb", type=float, default=600.0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    max_bytes = 15 * MB  # the default MAX_PHOTO_BYTES
    photos = {p.kind: p for p in hostile_photos(max_bytes)}
    kinds = args.kind or list(DEFAULT_KINDS)
    normal = jpeg_bytes((640, 480), seed=1)
    result: dict = {"host": platform.node(), "cpus": os.cpu_count(), "concurrency": args.concurrency,
                    "requests": args.n, "seconds": args.seconds, "max_photo_bytes": max_bytes,
                    "kinds": {k: len(photos[k].data) for k in kinds}}
    with bench_system("hostile-memory", args.model_dir) as system:
        url, key = system.url, system.key
        pids = {name: system.group.get(name).popen.pid for name in PROCESSES}
        import httpx

        versions = httpx.get(f"{url}/v1/models", headers={"Authorization": f"Bearer {key}"}).json()
        result["model"] = [v.get("version") for v in versions if v.get("active")]
        asyncio.run(load(url, key, normal, 2 * args.concurrency, args.concurrency))  # warm-up
        result["at_rest_mb"] = {name: round(rss_mb(pid), 1) for name, pid in pids.items()}
        result["normal_jpeg"] = measure(url, key, pids, normal, args.n, args.concurrency, args.seconds)
        result["hostile"] = {k: measure(url, key, pids, photos[k].data, args.n, args.concurrency) for k in kinds}
        result["at_end_mb"] = {name: round(rss_mb(pid), 1) for name, pid in pids.items()}

    loads = {"normal_jpeg": result["normal_jpeg"], **result["hostile"]}
    result["pass"] = all(v < args.target_mb for load_ in loads.values() for v in load_["peak_rss_mb"].values())
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    for name in PROCESSES:
        peaks = ", ".join(f"{label} {load_['peak_rss_mb'][name]:.0f}" for label, load_ in loads.items())
        print(f"{name}: at rest {result['at_rest_mb'][name]:.0f} MB; peak at c={args.concurrency} (MB): {peaks}; "
              f"at the end {result['at_end_mb'][name]:.0f}; target < {args.target_mb:.0f} MB")
    for label, load_ in loads.items():
        print(f"{label}: {load_['requests']} requests in {load_['seconds']} s: {load_['statuses']}")
    print("pass" if result["pass"] else "FAIL")


if __name__ == "__main__":
    main()
