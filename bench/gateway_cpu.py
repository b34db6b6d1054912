"""Benchmark: the gateway's CPU per re-hedge, alone (no classifications meanwhile).

    python bench/gateway_cpu.py [--gateway-loop asyncio --gateway-http h11]

Starts the system (``bench/_system.py``), classifies ``--jobs`` photos, then re-hedges them with
``bench/rehedge.py``'s lean client from this process and reads the gateway's CPU time (psutil,
threads included) around each phase:

* ``back_to_back``: ``--n`` re-hedges from 16 clients as fast as served (requests queue in the
  gateway: its cost per request when busy);
* ``paced``: 64 clients together at ``--rate`` per second (126: issue [K]'s load), each request
  arriving by itself;
* ``burst``: the same rate, 8 requests at a time (what a wake-up of the idle process costs is the
  difference between ``paced`` and ``burst``).

``--gateway-loop`` / ``--gateway-http`` choose uvicorn's event loop and HTTP parser (default
``auto``: uvloop and httptools, the gateway extra).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._system import bench_system, cpu_seconds, dataset_photos  # noqa: E402
from bench.rehedge import REHEDGED, LeanConnection, _client, classify, gateway_server, rehedge_requests  # noqa: E402


async def crowd(url: str, key: str, job_ids: list[str], n: int, clients: int, rate: float | None,
                burst: int = 1) -> int:
    """``n`` re-hedges from ``clients`` connections (at ``rate`` per second in groups of ``burst``,
    or back to back); returns the failures."""
    requests = rehedge_requests(url, key, job_ids)
    parts = urlsplit(url)
    conns = [LeanConnection(parts.hostname, parts.port) for _ in range(clients)]
    failures, t0 = 0, time.perf_counter()

    async def worker(w: int) -> None:
        nonlocal failures
        for i in range(w, n, clients):
            if rate:
                await asyncio.sleep(max(0.0, t0 + (i // burst) * burst / rate - time.perf_counter()))
            try:
                status, body = await conns[w].get(requests[i % len(requests)])
                failures += not (status == 200 and REHEDGED in body)
            except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                failures += 1

    try:
        await asyncio.gather(*(worker(w) for w in range(clients)))
    finally:
        for conn in conns:
            await conn.close()
    return failures


async def measure(url: str, key: str, pid: int, photos: list[bytes], args: argparse.Namespace) -> dict:
    async with _client(url, key, 4) as client:
        _, job_ids, failures = await classify(client, photos, args.jobs)
    if failures or not job_ids:
        raise SystemExit(f"{failures} of {args.jobs} classifications failed")
    await crowd(url, key, job_ids, 500, 16, None)  # warm-up
    result = {}
    n_paced = int(args.rate * args.paced_s)
    for name, n, clients, rate, burst in (("back_to_back", args.n, 16, None, 1),
                                          ("paced", n_paced, 64, args.rate, 1),
                                          ("burst", n_paced, 64, args.rate, 8)):
        cpu0, t0 = cpu_seconds(pid), time.perf_counter()
        failures = await crowd(url, key, job_ids, n, clients, rate, burst)
        cpu, wall = cpu_seconds(pid) - cpu0, time.perf_counter() - t0
        result[name] = {"n": n, "clients": clients, "rate_per_s": rate, "burst": burst, "failures": failures,
                        "per_s": round(n / wall, 1), "gateway_cpu_ms_per_rehedge": round(cpu / n * 1000, 3)}
    cpu0 = cpu_seconds(pid)
    await asyncio.sleep(5)
    result["idle_cores"] = round((cpu_seconds(pid) - cpu0) / 5, 4)
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=Path, default=Path("../shared/data/clothing/images"))
    ap.add_argument("--jobs", type=int, default=32, help="finished jobs the re-hedges cycle over")
    ap.add_argument("-n", type=int, default=3000, help="back-to-back re-hedges")
    ap.add_argument("--rate", type=float, default=126.0, help="re-hedges per second when paced")
    ap.add_argument("--paced-s", type=float, default=10.0, help="seconds of each paced phase")
    ap.add_argument("--gateway-loop", default="auto", help="uvicorn --loop for the gateway (auto, asyncio, uvloop)")
    ap.add_argument("--gateway-http", default="auto", help="uvicorn --http for the gateway (auto, h11, httptools)")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args()
    os.environ["UVICORN_LOOP"], os.environ["UVICORN_HTTP"] = args.gateway_loop, args.gateway_http
    photos = dataset_photos(args.photos)
    with bench_system("gateway-cpu") as system:
        result = asyncio.run(measure(system.url, system.key, system.group.get("gateway").popen.pid, photos, args))
    result.update(gateway_server=gateway_server(args.gateway_loop, args.gateway_http),
                  command=" ".join(["bench/gateway_cpu.py", *sys.argv[1:]]), cpus=os.cpu_count())
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
