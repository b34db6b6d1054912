"""The served pair's cross-validation rebuilt through the one training core from the recipe its card
records, and compared with the recorded CV runs (issue [L], "must reach": identical cross-validated
predictions, or a measured, explained difference).

    1. the recipe: the released card's ``model_recipe`` (members, crop, views, epochs, folds, angles,
       served crops as training views); each recorded run's ``recipe.json`` must say the same;
    2. per member ``pipelines.cv.cross_validate`` (the folds only: the out-of-fold predictions are
       what the CV report and the cross-fitted calibration are made of; the final networks are the
       shipped ONNX graph, whose rebuild is ``full``'s cost, not this check), through
       ``fit.loop.fit_on_views`` like every pipeline;
    3. the rebuilt out-of-fold logits against the recorded ``oof.npz`` per member and for the pair
       (``ensemble.combine_oof``): same photos and folds, max / mean |Δ logit|, the share of photos
       with the same top-1, and the CV report (``evaluation.crossval.cv_report``, the audiences
       included) rebuilt from them against the recorded one and the version's own ``eval/cv.json``.

The fronts and fine-tuning run on the CPU they find; floating-point kernels differ between CPUs
(AVX2, AVX-512, VNNI) and the differences grow through thousands of training steps, so bit identity
is expected only on the machine that recorded the runs (the tiny golden run of
``tests/trainer/pipelines/test_cv.py`` measures that drift). ~1.5 h on a quiet 2-core AVX-512 CPU.

    python bench/rebuild_served_cv.py --data /work/shared/data/clothing --out runs/rebuild_served \\
        --recorded reports/cv/2026-12-02-lite2-260-s19 reports/cv/2026-12-02-lite0-260-s13 \\
        --recorded-pair reports/cv/2026-12-02-ensemble-lite2-b19-lite0-b13
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.trainer.evaluation.crossval import cv_report  # noqa: E402
from services.trainer.pipelines.cv import cross_validate, load_oof, with_kids  # noqa: E402
from services.trainer.pipelines.ensemble import combine_oof  # noqa: E402
from shared.model_card import ModelCard  # noqa: E402
from shared.recipe import ModelRecipe  # noqa: E402
from shared.registry import RELEASE_FILE  # noqa: E402
from shared.taxonomy import load_taxonomy  # noqa: E402

log = logging.getLogger("rebuild_served_cv")

HEADLINE = ("top1", "top3", "top1_top10", "top1_10way", "ece")


def compare_oof(rebuilt: dict, recorded: dict) -> dict:
    """How far the rebuilt out-of-fold logits are from the recorded ones, per served angle."""
    same_rows = bool(np.array_equal(rebuilt["ids"], recorded["ids"]) and np.array_equal(rebuilt["folds"],
                                                                                       recorded["folds"]))
    out: dict = {"same_photos_and_folds": same_rows}
    if not same_rows:
        return out
    labels = recorded["labels"]
    for key in sorted(k for k in recorded if k.startswith("logits_")):
        a, b = rebuilt[key].astype(np.float64), recorded[key].astype(np.float64)
        delta = np.abs(a - b)
        out[key] = {"bit_identical": bool(np.array_equal(rebuilt[key], recorded[key])),
                    "max_abs_delta": float(delta.max()), "mean_abs_delta": float(delta.mean()),
                    "same_top1_share": float((a.argmax(1) == b.argmax(1)).mean()),
                    "top1_rebuilt": float((a.argmax(1) == labels).mean()),
                    "top1_recorded": float((b.argmax(1) == labels).mean())}
    return out


def headline(report: dict) -> dict:
    """The figures a reader of the CV report looks at: mean over folds, pooled ECE, small senders."""
    small = report["audience"]["audiences"].get("small", {})
    return {**{k: report["mean"][k] for k in HEADLINE if k in report["mean"]}, "oof_ece": report["oof_ece"],
            **{f"small_top1_{w}": small[w]["folds"]["top1"]["mean"] for w in ("photos", "people") if small}}


def _largest_gap(a: object, b: object) -> float:
    """The largest |a − b| over two JSON trees' numbers; inf where their shape or text differs."""
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return float("inf")
        return max((_largest_gap(a[k], b[k]) for k in a), default=0.0)
    if isinstance(a, list) and isinstance(b, list):
        return max((_largest_gap(x, y) for x, y in zip(a, b)), default=0.0) if len(a) == len(b) else float("inf")
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return abs(float(a) - float(b))
    return 0.0 if a == b else float("inf")


def same_report(rebuilt: Path, recorded: Path) -> dict:
    """The rebuilt ``cv.json`` against a recorded one, every figure (the command that made each
    aside): the largest difference per top-level entry that differs at all. The report's weighted
    means are BLAS dot products, whose rounding depends on the CPU's kernels and the library
    version, so reports of the same predictions made on two machines may differ in the last bits
    (the recorded report rewritten here from its own stored predictions: 9e-16)."""
    drop = ("command", "recomputed_by")
    a, b = (json.loads(Path(f).read_text()) for f in (rebuilt, recorded))
    gaps = {k: _largest_gap(a.get(k), b.get(k)) for k in sorted({*a, *b} - set(drop))}
    largest = max(gaps.values(), default=0.0)
    return {"recorded": str(recorded), "largest_difference": largest, "same_to_1e-12": largest <= 1e-12,
            "entries_that_differ": {k: g for k, g in gaps.items() if g > 0}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=Path("runs/rebuild_served"))
    ap.add_argument("--model", type=Path, help="the version to rebuild (default: the one models/RELEASE names)")
    ap.add_argument("--recorded", type=Path, nargs="+", required=True, help="the members' recorded wardrobe cv runs")
    ap.add_argument("--recorded-pair", type=Path, required=True, help="the pair's recorded CV report directory")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    model = args.model or Path("models") / (Path("models") / RELEASE_FILE).read_text().strip()
    kind = ModelCard.load(model).model_recipe
    if len(args.recorded) != len(kind.members):
        sys.exit(f"{model} has {len(kind.members)} members, {len(args.recorded)} recorded runs given")
    taxonomy = load_taxonomy()
    cal = kind.calibration
    result: dict = {"command": " ".join(sys.argv), "model": str(model), "recipe": kind.to_dict(), "members": []}
    began = time.time()
    runs = []
    for i, (member, recorded) in enumerate(zip(kind.members, args.recorded)):
        written = json.loads((recorded / "recipe.json").read_text())
        cv_options = written.pop("cv")
        matches = (ModelRecipe.from_dict({"members": [written]}).members[0] == member
                   and cv_options == {"folds": cal.folds, "train_on_served": kind.train_on_served,
                                      "angles": list(cal.angles)})
        if not matches:
            sys.exit(f"{recorded}/recipe.json is not member {i} of {model}'s recipe")
        run_dir = args.out / f"member{i}"
        t = time.time()
        log.info("member %d/%d (%s): cross-validating into %s", i + 1, len(kind.members), member.architecture, run_dir)
        cross_validate(args.data, taxonomy, run_dir, member, folds=cal.folds, final=False, angles=tuple(cal.angles),
                       train_on_served=kind.train_on_served)
        runs.append(run_dir)
        comparison = compare_oof(load_oof(run_dir), load_oof(recorded))
        result["members"].append({"architecture": member.architecture, "recorded": str(recorded),
                                  "seconds": round(time.time() - t, 1), **comparison})
        log.info("member %d: %s", i + 1, json.dumps(comparison.get("logits_0", comparison)))

    rebuilt = with_kids(combine_oof(runs) if len(runs) > 1 else load_oof(runs[0]), args.data, taxonomy)
    recorded = with_kids(combine_oof(args.recorded) if len(runs) > 1 else load_oof(args.recorded[0]), args.data,
                         taxonomy)
    report = cv_report(rebuilt, taxonomy, args.out / "report", command=result["command"])
    before = json.loads((args.recorded_pair / "cv.json").read_text())
    result["pair"] = {**compare_oof(rebuilt, recorded), "rebuilt": headline(report), "recorded": headline(before),
                      "report": [same_report(args.out / "report" / "cv.json", where / "cv.json")
                                 for where in (args.recorded_pair, model / "eval")]}
    result["seconds"] = round(time.time() - began, 1)
    (args.out / "rebuild.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"pair": result["pair"], "members": result["members"]}, indent=1))


if __name__ == "__main__":
    main()
