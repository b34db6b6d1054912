"""INT8 versions against their float source on every labelled photo, in one pass (not a test).

    .venv/bin/python bench/quantization_accuracy.py --float models/<float version> \\
        --int8 <int8 version dir> [--int8 ...] --data ../shared/data/clothing --out reports/quantization

Every photo is decoded and preprocessed once, as the inference worker does it, and run through
every version. Per INT8 version and photo group (all labelled photos, the small senders' photos,
those the calibration did not use): top-1 of each, top-1 agreement with float, mean and max
|Δp|, and whether the hedged answer (DARTS over the card's λ tables) changes at several targets.

The float version was trained on these photos, so its top-1 here is flattering; the *difference*
is what matters, and it is bounded by the disagreement: |Δtop-1| ≤ 1 − agreement. Writes
``accuracy.json`` and the probabilities (``probabilities.npz``) under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections import Counter
from pathlib import Path

import numpy as np

from services.trainer.data.dataset import load_dataset
from services.trainer.model.quantize import agreement, served_inputs
from services.trainer.pipelines.quantize import calibration_ids
from shared.hedging.hedging import Hedger
from shared.model_card import card_taxonomy
from shared.model_contract import load_model
from shared.taxonomy import load_taxonomy

TARGETS = (0.8, 0.9, 0.95, 0.99)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--float", dest="float_dir", type=Path, required=True)
    ap.add_argument("--int8", type=Path, action="append", required=True)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--max-sender-photos", type=int, default=150, help="a small sender has at most this many")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-photos", type=int, help="first N photos only (a quick look)")
    args = ap.parse_args()

    ref = load_model(args.float_dir, prefer_gpu=False, intra_op_threads=args.threads)
    cands = [load_model(d, prefer_gpu=False, intra_op_threads=args.threads) for d in args.int8]
    for c in cands:
        assert c.card.preprocess == ref.card.preprocess and c.card.classes == ref.card.classes, c.version
    taxonomy = card_taxonomy(ref.card, load_taxonomy())
    samples = load_dataset(args.data, taxonomy, verify_images=False).samples
    photos = [s for s in samples if s.leaf is not None][:args.max_photos]
    per_sender = Counter(s.sender for s in photos)
    index = {c: i for i, c in enumerate(ref.card.classes)}
    y = np.array([index[s.leaf] for s in photos])
    small = np.array([per_sender[s.sender] <= args.max_sender_photos for s in photos])

    # a label per model: its version, and its directory where two INT8 copies share a version name
    # (a requantization of the same source compared with the bundled one)
    names = [c.version for c in cands]
    labels = [ref.version, *(n if names.count(n) == 1 else f"{n} ({d})" for n, d in zip(names, args.int8))]
    models = dict(zip(labels, [ref, *cands]))
    probs: dict[str, list[np.ndarray]] = {label: [] for label in labels}
    started = time.perf_counter()
    for start in range(0, len(photos), 32):
        x = served_inputs([s.path for s in photos[start:start + 32]], ref.card.preprocess)
        for label, m in models.items():
            probs[label].append(m.run(x))
        if start % 640 == 0:
            print(f"{start + len(x)} / {len(photos)} photos, {time.perf_counter() - started:.0f} s", flush=True)
    p = {k: np.concatenate(v) for k, v in probs.items()}
    hedger = Hedger(taxonomy, ref.card.calibration, ref.card.classes) if ref.card.calibration else None

    result = {"float": ref.version, "photos": len(photos), "small_sender_photos": int(small.sum()),
              "small_senders": sum(1 for n in per_sender.values() if n <= args.max_sender_photos),
              "max_sender_photos": args.max_sender_photos, "seconds": time.perf_counter() - started, "int8": {}}
    for c, d, label in zip(cands, args.int8, labels[1:]):
        calib = calibration_ids(c.card, args.float_dir, samples)
        unseen = np.array([s.image_id not in calib for s in photos])
        groups = {"all": np.ones(len(photos), bool), "small_senders": small, "not_calibration": unseen,
                  "small_senders_not_calibration": small & unseen}
        rows = {}
        for name, mask in groups.items():
            a, b = p[ref.version][mask], p[label][mask]
            row = agreement(a, b, hedger, TARGETS)
            row.update({"top1_float": float((a.argmax(1) == y[mask]).mean()),
                        "top1_int8": float((b.argmax(1) == y[mask]).mean())})
            row["delta_top1_points"] = 100 * (row["top1_int8"] - row["top1_float"])
            rows[name] = row
        result["int8"][label] = {"dir": str(d), "quantization": c.card.quantization.model_dump()
                                     if c.card.quantization else None, "groups": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "accuracy.json").write_text(json.dumps(result, indent=2) + "\n")
    np.savez_compressed(args.out / "probabilities.npz", ids=np.array([s.image_id for s in photos]), y=y,
                        small=small, **{re.sub(r"\W", "_", k): v for k, v in p.items()})
    print(f"{len(photos)} photos ({int(small.sum())} from small senders) in {result['seconds']:.0f} s")
    print("| INT8 version | photos | top-1 float | top-1 INT8 | Δ points | top-1 agreement | mean / max abs Δp | "
          "hedged answer same at 0.8 / 0.9 / 0.95 / 0.99 |")
    print("|---|---|---|---|---|---|---|---|")
    for version, r in result["int8"].items():
        for name, g in r["groups"].items():
            hedged = " / ".join(f"{100 * v:.1f}" for v in g.get("hedged_agreement", {}).values())
            print(f"| {version} | {name} ({g['photos']}) | {100 * g['top1_float']:.2f} % | {100 * g['top1_int8']:.2f} % | "
                  f"{g['delta_top1_points']:+.2f} | {100 * g['top1_agreement']:.2f} % | {g['mean_abs_dp']:.4f} / "
                  f"{g['max_abs_dp']:.3f} | {hedged} % |")


if __name__ == "__main__":
    main()
