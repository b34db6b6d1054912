"""Per-photo cost of hedging (issue C must-reach: < 0.1 ms per photo).

Synthetic Dirichlet leaf probabilities over the real taxonomy (the hedger never looks at
pixels, so this is the serving workload), calibrated on a synthetic calibration split. Measures,
for each method, the per-photo cost of:

* ``batch core``    — ``Hedger.choose_batch`` on N photos (vectorised numpy, node indices only);
* ``batch answers`` — ``Hedger.hedge_batch`` (vectorised choice + one pydantic answer per photo);
* ``single core``   — ``Hedger.choose_one`` (validation + choice for one photo, no answer object);
* ``single answer`` — ``hedge()`` one photo, end to end with the cached Hedger and the pydantic
  ``HedgedAnswer`` (what the hedger worker pays per job).

Usage: ``.venv/bin/python bench/hedge_latency.py [--n 20000] [--clock cpu] [--json out.json | --json -]``.
Timings are the median of ``--repeats`` runs; the machine may be shared, so look at the median,
or time with ``--clock cpu`` (this process's CPU time, which other processes do not inflate).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.hedging.calibration import calibrate  # noqa: E402
from shared.hedging.hedging import get_hedger, hedge  # noqa: E402
from shared.taxonomy import load_taxonomy  # noqa: E402

BUDGET_US = 100.0


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
_clock = time.perf_counter


def _median_us(fn, n_items: int, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = _clock()
        fn()
        times.append((_clock() - t0) / n_items * 1e6)
    return statistics.median(times)


def run(n: int = 20000, n_single: int = 2000, repeats: int = 5, accuracy: float = 0.9, seed: int = 0) -> dict:
    taxonomy = load_taxonomy()
    n_leaves = len(taxonomy.leaves)
    rng = np.random.default_rng(seed)
    alpha = np.full(n_leaves, 0.3)  # peaked, like a trained classifier
    cal_p = rng.dirichlet(alpha, size=5000)
    cal_y = np.array([rng.choice(n_leaves, p=p) for p in cal_p[:5000]])
    calibration = calibrate(cal_p, cal_y, taxonomy).model_dump()  # as stored in the model card
    hedger = get_hedger(taxonomy, calibration)
    probs = rng.dirichlet(alpha, size=n)
    single = [p.astype(np.float32) for p in probs[:n_single]]  # ONNX outputs float32

    rows = []
    for method in ("crc", "darts"):
        hedger.hedge(probs[0], accuracy, method)  # warm up
        rows.append({"method": method, "what": "batch core", "n": n,
                     "us_per_photo": _median_us(lambda: hedger.choose_batch(probs, accuracy, method), n, repeats)})
        k = min(n, 5000)
        rows.append({"method": method, "what": "batch answers", "n": k,
                     "us_per_photo": _median_us(lambda: hedger.hedge_batch(probs[:k], accuracy, method), k, repeats)})
        rows.append({"method": method, "what": "single core", "n": n_single,
                     "us_per_photo": _median_us(lambda: [hedger.choose_one(p, accuracy, method) for p in single], n_single, repeats)})
        rows.append({"method": method, "what": "single answer", "n": n_single,
                     "us_per_photo": _median_us(lambda: [hedge(p, taxonomy, calibration, accuracy, method) for p in single], n_single, repeats)})
    for row in rows:
        row["under_budget"] = row["us_per_photo"] < BUDGET_US
    return {
        "budget_us": BUDGET_US,
        "accuracy_target": accuracy,
        "n_leaves": n_leaves,
        "n_nodes": len(taxonomy.node_names),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "machine": platform.machine(),
        "rows": rows,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000, help="photos in the batch measurement")
    ap.add_argument("--n-single", type=int, default=2000, help="photos in the single-call measurement")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--accuracy", type=float, default=0.9)
    ap.add_argument("--json", help="write the results as JSON to this path ('-' for stdout)")
    ap.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                    help="wall time, or this process's CPU time (steadier on a machine others share)")
    args = ap.parse_args(argv)
    global _clock
    _clock = CLOCKS[args.clock]
    result = run(args.n, args.n_single, args.repeats, args.accuracy)
    print(f"hedging cost per photo ({args.clock} clock, median of {args.repeats}; budget {BUDGET_US:.0f} µs; "
          f"target {args.accuracy})")
    print(f"{'method':<7} {'what':<14} {'n':>6} {'µs/photo':>10}  ok")
    for row in result["rows"]:
        print(f"{row['method']:<7} {row['what']:<14} {row['n']:>6} {row['us_per_photo']:>10.2f}  {'yes' if row['under_budget'] else 'NO'}")
    if args.json == "-":
        print(json.dumps(result, indent=2))
    elif args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
