"""The learning loop relearns the served kind for the next new people (issue [L], "must reach").

    1. people: the dataset's senders, cut by a seeded hash into three groups. *Stream* and *judge*
       people are small senders (≤ ``--max-sender-photos`` photos: most users add a few dozen
       garments, not the 7 senders who hold half of the photos); the *start* people are all the
       others (the big senders among them), capped at ``--max-start-photos`` whole senders;
    2. start: the model recipe (``--recipe served``: the active card's ``model_recipe``, or the
       reduced one-member recipe this script defines) trained offline on the start people
       (``pipelines.crossfit.fit_model_recipe``), bundled and named by ``RELEASE`` in a fresh
       database + model store;
    3. the stream people's photos arrive as feedback, person by person: finished classifications
       whose verdict (``shared.feedback.give``, what ``POST /v1/classifications/{id}/feedback``
       stores) is the true leaf, ``--noise`` of them (10 %) a wrong leaf and ``--partial`` of them
       a "Yes" to the leaf's parent (a hedged answer confirmed: a partial label); every
       ``--every`` items a ``quick`` job, and once at the end a ``full`` job, is run by
       ``jobs.runner.run_training_job`` (what ``trainer.run_job`` calls): feedback → the active
       version's recipe again → publish → the real gate (held-back people, judged per person) →
       promotion;
    4. every version (start, each candidate, the active one after each job) is judged on the
       *judge* people, never used for training, feedback or the gate: top-1 over photos and
       averaged per person;
    5. the reference: the same recipe trained offline on the same photos (start + the stream people
       the loop may learn from, i.e. not held back for the gate) with their true labels: what the
       loop would have made had every verdict been right and known at once. The ceiling: the same
       on start + *every* stream person (the held-back ones too, whom the loop never learns from).

The jobs' dataset split holds only the start people, so the gate's evaluation split is empty and
the held-back stream people's feedback is the only evidence (a version trained on every photo
cannot be judged on a split it learned).

    nice -n 10 python bench/learning_loop.py --data /work/shared/data/clothing --out runs/learning_loop
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._feedback_people import (  # noqa: E402
    bench_settings, caller_id, choose_people, dataset_subset, draw_verdict, give_verdict, person_order, start_run)
from services.trainer.data.dataset import PhotoRef, load_dataset  # noqa: E402
from services.trainer.data.feedback import LabelledPhoto, is_held_back  # noqa: E402
from services.trainer.jobs import runner as jobs_runner  # noqa: E402
from services.trainer.jobs.gate import GATE_MIN_PEOPLE, ProbabilityCache, per_person, top1_hits  # noqa: E402
from services.trainer.pipelines.crossfit import fit_model_recipe  # noqa: E402
from shared import registry  # noqa: E402
from shared import training_jobs as tj  # noqa: E402
from shared.db import session_scope  # noqa: E402
from shared.model_card import ModelCard  # noqa: E402
from shared.model_store import open_model_store  # noqa: E402
from shared.recipe import CalibrationRecipe, ModelRecipe, Recipe  # noqa: E402
from shared.registry import RELEASE_FILE  # noqa: E402
from shared.storage import PhotoStore  # noqa: E402
from shared.taxonomy import load_taxonomy  # noqa: E402

log = logging.getLogger("learning_loop")


def reduced(input_size: int, epochs: int) -> ModelRecipe:
    """The reduced kind for a 2-core CPU: one Lite0 member cut where the served pair's second
    member is cut (block 13), trained on one augmented view + the served crops (upright, ±30°),
    cross-fitted on 3 person-disjoint folds with a per-person (sender) promise."""
    return ModelRecipe([Recipe(architecture="efficientnet-lite0", input_size=input_size,
                               resize_size=round(input_size * 256 / 224), split_block=13, views=1, epochs=epochs,
                               threads=2)],
                       calibration=CalibrationRecipe("cross-fitted", folds=3, crc_unit="sender"), train_on_served=True)


def judge_hits(model_dir: Path, photos: list[LabelledPhoto], cache: ProbabilityCache) -> np.ndarray:
    """Per judge photo: is the version's top-1 (its ONNX file, as served) right?"""
    card = ModelCard.load(model_dir)
    return top1_hits(cache.probabilities(model_dir, [p.photo for p in photos]), [p.leaf for p in photos],
                     card.classes)


def judge_version(model_dir: Path, photos: list[LabelledPhoto], cache: ProbabilityCache) -> dict:
    """Top-1 of a version on the judge people: over photos and per person."""
    hits = judge_hits(model_dir, photos, cache)
    per = defaultdict(list)
    for p, h in zip(photos, hits):
        per[p.person].append(h)
    return {"top1": float(hits.mean()), "top1_per_person": float(np.mean([np.mean(v) for v in per.values()])),
            "photos": len(photos), "people": len(per)}


def gap(ours: np.ndarray, theirs: np.ndarray, persons: list[str], draws: int = 2000, level: float = 0.9) -> dict:
    """``theirs`` − ``ours`` in top-1 points on the judge people, photo-weighted and per person, each
    with a bootstrap interval over people (one person's photos are not independent evidence): how
    sure a single seed's "within 1 point" is."""
    diff = theirs - ours
    people = per_person(diff, persons, draws=draws, level=level)
    index = {p: i for i, p in enumerate(sorted(set(persons)))}
    who = np.array([index[p] for p in persons])
    sums, counts = np.bincount(who, diff, len(index)), np.bincount(who, minlength=len(index))
    drawn = np.random.default_rng(0).integers(0, len(index), size=(draws, len(index)))
    boot = sums[drawn].sum(1) / counts[drawn].sum(1)
    lo, hi = np.quantile(boot, [(1 - level) / 2, 1 - (1 - level) / 2])
    return {"points": round(100 * float(diff.mean()), 2), "lo": round(100 * float(lo), 2), "hi": round(100 * float(hi), 2),
            "per_person_points": round(100 * people["mean"], 2), "per_person_lo": round(100 * people["lo"], 2),
            "per_person_hi": round(100 * people["hi"], 2), "level": level}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=Path("runs/learning_loop"))
    ap.add_argument("--cache", type=Path, default=Path("var/cache"), help="front activations + probabilities")
    ap.add_argument("--recipe", choices=["reduced", "served"], default="reduced",
                    help="reduced: one Lite0 member (fits a 2-core CPU); served: the released card's model recipe")
    ap.add_argument("--input-size", type=int, default=224, help="reduced recipe: network input side")
    ap.add_argument("--epochs", type=int, default=3, help="reduced recipe: epochs")
    ap.add_argument("--stream-people", type=int, default=40)
    ap.add_argument("--judge-people", type=int, default=40)
    ap.add_argument("--max-sender-photos", type=int, default=150)
    ap.add_argument("--max-start-photos", type=int, default=600)
    ap.add_argument("--every", type=int, default=150, help="feedback items between quick jobs")
    ap.add_argument("--noise", type=float, default=0.10, help="share of verdicts naming a wrong leaf")
    ap.add_argument("--partial", type=float, default=0.15, help="share of verdicts that are a Yes to the parent")
    ap.add_argument("--holdout", type=float, default=0.2, help="share of stream people held back for the gate")
    ap.add_argument("--min-people", type=int, default=GATE_MIN_PEOPLE, help="GATE_MIN_PEOPLE (the trainer's default)")
    ap.add_argument("--tolerance", type=float, default=0.01)
    ap.add_argument("--no-full", action="store_true", help="skip the final full job")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    out = start_run(args.out)
    cache_root = args.cache.resolve()
    taxonomy = load_taxonomy()
    rng = random.Random(args.seed)
    t0 = time.time()
    kind = reduced(args.input_size, args.epochs) if args.recipe == "reduced" else ModelCard.load(
        Path("models") / (Path("models") / RELEASE_FILE).read_text().strip()).model_recipe

    # 1. people ------------------------------------------------------------------------------
    dataset = load_dataset(args.data, taxonomy, on_error="skip", verify_images=False)
    everyone = [LabelledPhoto(PhotoRef.of(s.path), s.leaf, s.sender) for s in dataset.classified]
    start, stream, judge = choose_people(everyone, args.seed, args.stream_people, args.judge_people,
                                         args.max_sender_photos, args.max_start_photos)
    n_people = lambda ps: len({p.person for p in ps})  # noqa: E731
    log.info("people: start %d (%d photos), stream %d (%d photos), judge %d (%d photos)", n_people(start),
             len(start), n_people(stream), len(stream), n_people(judge), len(judge))
    # the jobs' DATASET_DIR: only the start people, so a job never learns from the judge people
    job_data = dataset_subset(args.data, {p.photo.path.stem for p in start}, out / "dataset")
    split_file = out / "split.json"  # made by the first job over the start people's dataset
    split_file.unlink(missing_ok=True)
    cache = ProbabilityCache(cache_root / "probabilities")

    # 2. start and 5. reference (offline, the same recipe) --------------------------------------
    def offline(root: Path, name: str, photos: list) -> tuple[Path, float]:
        t = time.time()
        if not (root / name / "card.json").is_file():
            fit_model_recipe(kind, photos, taxonomy, cache_root / "features", root, name)
        return root / name, time.time() - t

    start_dir, start_s = offline(out / "bundled", "start", start)
    (out / "bundled" / RELEASE_FILE).write_text("start\n")
    learnable = [p for p in stream if not is_held_back(caller_id(p.person), args.holdout)]
    reference_dir, reference_s = offline(out / "reference", "reference", [*start, *learnable])
    ceiling_dir, ceiling_s = offline(out / "ceiling", "ceiling", [*start, *stream])
    versions = {name: judge_version(d, judge, cache)
                for name, d in (("start", start_dir), ("reference", reference_dir), ("ceiling", ceiling_dir))}
    log.info("judge people: start %s, reference %s, ceiling %s", versions["start"], versions["reference"],
             versions["ceiling"])

    settings = bench_settings(out, out / "bundled", job_data, split_file, cache_root, holdout=args.holdout,
                              tolerance=args.tolerance, min_people=args.min_people)
    store = open_model_store(settings.model_store)
    curve = [{"feedback_items": 0, "active": "start", **versions["start"]}]
    jobs = []

    def run_job(mode: str, k: int) -> None:
        with session_scope(settings.resolved_database_url) as session:
            job_id = str(tj.create(session, mode, {"version": f"{mode}-{k:05d}"}, "bench").id)
        t = time.time()
        status = jobs_runner.run_training_job(job_id, "bench", settings)
        with session_scope(settings.resolved_database_url) as session:
            row = tj.get(session, job_id)
            active = registry.active_version(session)
            active_version, active_key = active.version, active.key
            record = {"mode": mode, "feedback_items": k, "status": status, "candidate": row.candidate_version,
                      "seconds": round(time.time() - t, 1), "gate": row.gate, "error": row.error,
                      "metrics": {m: v for m, v in (row.metrics or {}).items() if m != "stage_seconds"}}
        gate = row.gate or {}
        if row.candidate_version:
            versions[row.candidate_version] = judge_version(store.fetch(row.candidate_version), judge, cache)
        jobs.append(record)
        log.info("%s job after %d items: %s in %.0f s, gate %s: %s", mode, k, status, record["seconds"],
                 "PROMOTE" if gate.get("promote") else "keep", gate.get("reason"))
        curve.append({"feedback_items": k, "active": active_version, "job": mode,
                      "candidate": row.candidate_version, "promoted": bool(gate.get("promote")),
                      **judge_version(store.fetch(active_key), judge, cache)})

    # 3. the stream -------------------------------------------------------------------------------
    photos = PhotoStore(settings.resolved_photo_dir)
    order = sorted(stream, key=lambda p: (person_order(p.person, args.seed + 1), p.photo.sha256))
    drawn: Counter = Counter()
    for k, p in enumerate(order, start=1):
        node, what = draw_verdict(p.leaf, taxonomy, rng, args.noise, args.partial)
        drawn[what] += 1
        give_verdict(settings.resolved_database_url, photos, p, node, taxonomy)
        if k % args.every == 0 or k == len(order):
            run_job("quick", k)
    if not args.no_full:
        run_job("full", len(order))

    final = curve[-1]
    ref = versions["reference"]
    # the gaps with their uncertainty: to the reference (true labels), to the ceiling, and to `full`,
    # the same recipe from ImageNet on exactly the loop's photos *and verdicts* in one go
    with session_scope(settings.resolved_database_url) as session:
        end_hits = judge_hits(store.fetch(registry.active_version(session).key), judge, cache)
    yardsticks = {"reference": reference_dir, "ceiling": ceiling_dir}
    full_job = next((j for j in jobs if j["mode"] == "full" and j["candidate"]), None)
    if full_job:
        yardsticks["full_same_verdicts"] = store.fetch(full_job["candidate"])
    gaps = {name: gap(end_hits, judge_hits(d, judge, cache), [p.person for p in judge])
            for name, d in yardsticks.items()}
    result = {
        "command": " ".join(sys.argv), "recipe": kind.to_dict(), "scale": args.recipe,
        "people": {"start": n_people(start), "stream": n_people(stream), "learnable": n_people(learnable),
                   "judge": n_people(judge)},
        "photos": {"start": len(start), "stream": len(stream), "learnable": len(learnable), "judge": len(judge)},
        "noise": args.noise, "wrong_verdicts": drawn["wrong"], "partial": args.partial,
        "partial_verdicts": drawn["partial"],
        "every": args.every, "holdout_share": args.holdout, "tolerance": args.tolerance,
        "offline_seconds": {"start": round(start_s, 1), "reference": round(reference_s, 1),
                            "ceiling": round(ceiling_s, 1)},
        "versions": versions, "curve": curve, "jobs": jobs,
        "beats_start": final["top1"] > versions["start"]["top1"],
        "gap_to_reference_points": round(100 * (ref["top1"] - final["top1"]), 2),
        "gap_to_reference_points_per_person": round(100 * (ref["top1_per_person"] - final["top1_per_person"]), 2),
        "gap_to_ceiling_points": round(100 * (versions["ceiling"]["top1"] - final["top1"]), 2),
        "gaps": gaps,
        "within_1_point_of_reference": bool(ref["top1"] - final["top1"] <= 0.01),
        "seconds": round(time.time() - t0, 1),
    }
    (out / "results.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    _plot(result, out / "learning_loop.png")
    log.info("final %.4f, start %.4f, reference %.4f (gap %.2f points)", final["top1"], versions["start"]["top1"],
             ref["top1"], result["gap_to_reference_points"])


def _plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from services.trainer.evaluation.plots import save_figure

    fig, ax = plt.subplots(figsize=(7, 4.2))
    xs = [c["feedback_items"] for c in result["curve"]]
    ax.plot(xs, [100 * c["top1"] for c in result["curve"]], "o-", label="active version (after the gate)")
    for c in result["curve"][1:]:
        cand = result["versions"].get(c.get("candidate") or "")
        if cand:
            ax.plot(c["feedback_items"], 100 * cand["top1"], "^" if c["promoted"] else "x",
                    color="tab:green" if c["promoted"] else "tab:red", ms=8)
    ax.plot([], [], "^", color="tab:green", label="candidate, promoted")
    ax.plot([], [], "x", color="tab:red", label="candidate, kept out")
    ref = 100 * result["versions"]["reference"]["top1"]
    ax.axhline(ref, color="grey", ls="--", label=f"same recipe offline, same photos, true labels ({ref:.1f} %)")
    ax.axhspan(ref - 1, ref, color="grey", alpha=0.12, label="within 1 point")
    if "ceiling" in result["versions"]:
        ceiling = 100 * result["versions"]["ceiling"]["top1"]
        ax.axhline(ceiling, color="grey", ls=":", label=f"… and the held-back people too ({ceiling:.1f} %)")
    ax.set_xlabel(f"feedback items ({100 * result['noise']:.0f} % wrong, {100 * result['partial']:.0f} % partial); "
                  f"quick every {result['every']}, full at the end")
    ax.set_ylabel(f"top-1 (%) on {result['people']['judge']} new people ({result['photos']['judge']} photos)")
    ax.set_title(f"The learning loop ({result['scale']} recipe)")
    ax.legend(fontsize=8, loc="center left")
    ax.grid(alpha=0.3)
    save_figure(fig, path, dpi=120)


if __name__ == "__main__":
    main()
