"""What a ``quick`` job on the served pair costs with ~1,000 feedback photos (issue [L], "must reach":
≤ 15 minutes on a 2-core machine when the fronts are cached).

    1. setup (once, kept under ``--out``): a fresh embedded SQLite database + model store whose
       released (active) version is ``--model`` (the shipped pair by default); a DATASET_DIR holding
       the dataset minus a seeded set of small senders (≤ ``--max-sender-photos`` photos each) whose
       ~``--feedback-photos`` photos become finished classifications with verdicts (the true leaf,
       ``--noise`` of them a wrong leaf, ``--partial`` of them a "Yes" to the parent node: the users
       of ``bench/learning_loop.py``, from the same ``bench/_feedback_people.py``);
    2. ``--warm`` (untimed, resumable: the cache is per photo): the front cache filled for every photo
       and view the quick job will read (``pipelines.crossfit.member_fronts`` over the job's own photo
       list, ``jobs.modes.training_photos``), then stop;
    3. timed (without ``--warm``): one ``quick`` job exactly as the trainer worker runs it
       (``jobs.runner.run_training_job``): feedback → the active version's recipe trimmed by
       ``jobs.modes.quick_recipe`` → publish → gate. Recorded: wall time, process CPU time
       (``resource.getrusage`` self + children), the per-stage / per-member / per-fold seconds,
       ``features_computed`` (0 when warm), the gate's decision; and from the fits' cost per
       photo·view·epoch an upper bound for the real scale (``--estimate-photos`` training photos).

``--mode full`` times a ``full`` job the same way instead (the active version's recipe as recorded,
from ImageNet: every member's folds and final network on all the photos' augmented views and served
crops; issue [L]: "``full``: measured ... with its wall time"), written to ``OUT/full_cost.json``.
Run without ``--warm`` it is the cost of a first ``full`` job, the fronts it computes included and
recorded apart (``stage_seconds``); ``--warm --mode full`` fills that recipe's fronts beforehand.

Reduced scale (a few minutes on a contended CPU):

    python bench/quick_cost.py --data /work/shared/data/clothing --out runs/quick_cost_small \\
        --feedback-photos 150 --max-dataset-photos 300 --warm
    python bench/quick_cost.py --data /work/shared/data/clothing --out runs/quick_cost_small \\
        --feedback-photos 150 --max-dataset-photos 300

Real scale: the same without the two caps (``--feedback-photos`` defaults to 1,000).
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import resource
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._feedback_people import (  # noqa: E402
    bench_settings, choose_people, dataset_subset, draw_verdict, give_verdict, person_order, start_run)
from services.trainer.data.dataset import PhotoRef, load_dataset  # noqa: E402
from services.trainer.data.feedback import LabelledPhoto  # noqa: E402
from services.trainer.jobs import runner as jobs_runner  # noqa: E402
from services.trainer.jobs.gate import GATE_MIN_PEOPLE  # noqa: E402
from services.trainer.jobs.modes import learning_feedback, quick_recipe, training_photos  # noqa: E402
from services.trainer.pipelines.crossfit import member_fronts  # noqa: E402
from shared import registry  # noqa: E402
from shared import training_jobs as tj  # noqa: E402
from shared.db import session_scope  # noqa: E402
from shared.model_card import ModelCard  # noqa: E402
from shared.model_store import open_model_store  # noqa: E402
from shared.registry import RELEASE_FILE  # noqa: E402
from shared.storage import PhotoStore  # noqa: E402
from shared.taxonomy import load_taxonomy  # noqa: E402

log = logging.getLogger("quick_cost")

DOC_MARKER = "<!-- bench/quick_cost.py rows -->"


def cpu_now() -> float:
    """User + system CPU seconds of this process and its waited-for children."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def setup(args: argparse.Namespace, out: Path, taxonomy) -> dict:  # noqa: ANN001
    """The database, model store, DATASET_DIR and verdicts; reused when ``out/setup.json`` says the
    same options made them (so ``--warm`` and the timed run see one world)."""
    key = {k: str(getattr(args, k)) for k in ("data", "model", "feedback_photos", "max_sender_photos",
                                              "max_dataset_photos", "noise", "partial", "holdout", "seed")}
    record = out / "setup.json"
    if record.is_file() and json.loads(record.read_text()).get("options") == key:
        return json.loads(record.read_text())
    dataset = load_dataset(args.data, taxonomy, on_error="skip", verify_images=False)
    everyone = [LabelledPhoto(PhotoRef.of(s.path), s.leaf, s.sender) for s in dataset.classified]
    start, stream, _ = choose_people(everyone, args.seed, -args.feedback_photos, 0, args.max_sender_photos,
                                     args.max_dataset_photos or len(everyone))
    dataset_subset(args.data, {p.photo.path.stem for p in start}, out / "dataset")
    (out / "split.json").unlink(missing_ok=True)
    bundled = out / "bundled"
    bundled.mkdir(parents=True, exist_ok=True)
    link = bundled / args.model.name
    if not link.exists():
        link.symlink_to(args.model.resolve(), target_is_directory=True)
    (bundled / RELEASE_FILE).write_text(f"{args.model.name}\n")
    settings = bench_settings(out, bundled, out / "dataset", out / "split.json", args.cache.resolve(),
                              holdout=args.holdout, tolerance=0.01, min_people=GATE_MIN_PEOPLE)
    photos = PhotoStore(settings.resolved_photo_dir)
    rng = random.Random(args.seed)
    drawn: Counter = Counter()
    for p in sorted(stream, key=lambda p: (person_order(p.person, args.seed + 1), p.photo.sha256)):
        node, what = draw_verdict(p.leaf, taxonomy, rng, args.noise, args.partial)
        drawn[what] += 1
        give_verdict(settings.resolved_database_url, photos, p, node, taxonomy)
    facts = {"options": key, "dataset_photos": len(start), "dataset_people": len({p.person for p in start}),
             "feedback_photos": len(stream), "feedback_people": len({p.person for p in stream}),
             "verdicts": dict(drawn), "all_labelled_photos": len(everyone)}
    record.write_text(json.dumps(facts, indent=2) + "\n")
    log.info("setup: %s", facts)
    return facts


def warm(settings, taxonomy, mode: str) -> dict:  # noqa: ANN001
    """Fill the front cache for every photo and view a ``mode`` job reads; (photos, arrays computed)."""
    with session_scope(settings.resolved_database_url) as session:
        active = registry.active_version(session)
        model_dir = open_model_store(settings.model_store).fetch(active.key)
    kind = ModelCard.load(model_dir).model_recipe
    run = quick_recipe(kind) if mode == "quick" else kind
    learn, _ = learning_feedback(settings, taxonomy)
    refs = [p.photo for p in training_photos(settings, taxonomy, learn)]
    computed, t = 0, time.time()
    for i, member in enumerate(run.members):
        log.info("warming member %d/%d %s: %d photos", i + 1, len(run.members), member.architecture, len(refs))
        _, _, n = member_fronts(run, i, refs, settings.resolved_cache_dir / "features", len(taxonomy.leaves))
        computed += n
    return {"photos": len(refs), "computed": computed, "seconds": round(time.time() - t, 1)}


def estimate(metrics: dict, run_photos: int, real_photos: int, cpu_per_wall: float) -> dict:
    """The real scale (``real_photos`` training photos) from this run, as an **upper bound** for a quiet
    2-core CPU: each fit's process CPU seconds (both threads) per photo·view·epoch, times the real
    scale's photo·view·epochs, over 2 cores; every other stage (fronts read from the cache,
    calibration, feedback + publish + gate) scaled with the photos, its wall time converted to
    CPU by this run's CPU/wall ratio, over 2 cores; the export as measured. An upper bound because a
    small run's per-fit fixed costs (a fresh network, the curve points) are scaled with it, and
    because under other load two threads' CPU time includes spin-waiting (``bench/finetune_cost.py
    --threads 1`` gives the cost per example without either: docs/learning.md)."""
    fits = metrics.get("fits", [])
    per: dict[int, dict[str, float]] = {}
    for f in fits:
        m = per.setdefault(f["member"], {"units": 0.0, "seconds": 0.0, "cpu_seconds": 0.0})
        m["units"] += f["photos"] * f["views"] * f["epochs"]
        m["seconds"] += f["seconds"]
        m["cpu_seconds"] += f.get("cpu_seconds", 0.0)
    scale = real_photos / max(run_photos, 1)
    stages = metrics.get("stage_seconds", {})
    fronts = sum(v for k, v in stages.items() if k.endswith(": fronts"))
    fit_s = sum(m["seconds"] for m in per.values())
    fit_cpu = sum(m["cpu_seconds"] for m in per.values())
    other = max(metrics["seconds"] - fit_s - fronts - stages.get("calibrate", 0) - stages.get("export", 0), 0.0)
    rest = (fronts + stages.get("calibrate", 0) + other) * scale * min(1.0, cpu_per_wall * 2) / 2
    bound = fit_cpu * scale / 2 + rest + stages.get("export", 0)
    return {"photos_measured": run_photos, "photos_real": real_photos, "scale": round(scale, 2),
            "photo_view_epochs_measured": {str(i): int(m["units"]) for i, m in per.items()},
            "photo_view_epochs_real": {str(i): int(m["units"] * scale) for i, m in per.items()},
            "per_member_wall_ms_per_photo_view_epoch": {str(i): round(1000 * m["seconds"] / m["units"], 2)
                                                        for i, m in per.items()},
            "per_member_cpu_ms_per_photo_view_epoch": {str(i): round(1000 * m["cpu_seconds"] / m["units"], 2)
                                                       for i, m in per.items()},
            "fits_seconds": round(fit_s, 1), "fits_cpu_seconds": round(fit_cpu, 1),
            "fronts_seconds": round(fronts, 1), "calibrate_seconds": stages.get("calibrate"),
            "export_seconds": stages.get("export"), "feedback_publish_gate_seconds": round(other, 1),
            "upper_bound_quiet_2_cores_seconds": round(bound)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=Path("runs/quick_cost"))
    ap.add_argument("--cache", type=Path, default=Path("var/cache"), help="front activations + probabilities")
    ap.add_argument("--model", type=Path, default=Path("models/2026-12-02-lite2-b19-lite0-b13"),
                    help="the released version (active in the fresh database)")
    ap.add_argument("--feedback-photos", type=int, default=1000, help="feedback photos (whole small senders)")
    ap.add_argument("--max-sender-photos", type=int, default=150)
    ap.add_argument("--max-dataset-photos", type=int, default=0, help="cap on DATASET_DIR's photos (0: all)")
    ap.add_argument("--noise", type=float, default=0.10)
    ap.add_argument("--partial", type=float, default=0.15)
    ap.add_argument("--holdout", type=float, default=0.2, help="FEEDBACK_HOLDOUT_SHARE")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mode", choices=("quick", "full"), default="quick", help="the job mode to time")
    ap.add_argument("--warm", action="store_true", help="fill the front cache and stop (untimed, resumable)")
    ap.add_argument("--estimate-photos", type=int, default=3890,
                    help="training photos of the real scale the estimate is for (the default setup with 1,000 "
                         "feedback photos: 3,271 dataset photos + 619 feedback photos of people not held back)")
    ap.add_argument("--reestimate", action="store_true",
                    help="recompute the estimate of OUT/quick_cost.json with this code (no job)")
    ap.add_argument("--doc", type=Path, help=f"add a row to this markdown file's table (before '{DOC_MARKER}')")
    args = ap.parse_args()
    out = start_run(args.out)
    result_file = out / f"{args.mode}_cost.json"
    if args.reestimate:
        saved = json.loads(result_file.read_text())
        real = args.estimate_photos
        saved["estimate"] = estimate({"fits": saved["fits"], "stage_seconds": saved["stage_seconds"],
                                      "seconds": saved["wall_seconds"]}, saved["train_photos"], real,
                                     saved["cpu_per_wall"])
        result_file.write_text(json.dumps(saved, indent=2, default=str) + "\n")
        print(json.dumps(saved["estimate"], indent=2))
        return
    taxonomy = load_taxonomy()
    facts = setup(args, out, taxonomy)
    settings = bench_settings(out, out / "bundled", out / "dataset", out / "split.json", args.cache.resolve(),
                              holdout=args.holdout, tolerance=0.01, min_people=GATE_MIN_PEOPLE,
                              fresh=False)
    if args.warm:
        done = warm(settings, taxonomy, args.mode)
        (out / "warm.json").write_text(json.dumps(done, indent=2) + "\n")
        log.info("front cache warm: %s", done)
        return

    with session_scope(settings.resolved_database_url) as session:
        # every timed run starts from the released version: an earlier run's promoted candidate,
        # which learned these very verdicts, would otherwise be the one continued and compared with
        registry.activate(session, args.model.name, reason="quick_cost: every timed run starts from the release")
        version = f"{args.mode}-cost-{int(time.time())}"
        job_id = str(tj.create(session, args.mode, {"version": version, "promote": "gate"}, "bench").id)
    cpu0, t0 = cpu_now(), time.monotonic()
    status = jobs_runner.run_training_job(job_id, "bench", settings)
    wall, cpu = time.monotonic() - t0, cpu_now() - cpu0
    with session_scope(settings.resolved_database_url) as session:
        row = tj.get(session, job_id)
        metrics, gate, error = dict(row.metrics or {}), row.gate or {}, row.error
    if status != "done":
        raise SystemExit(f"the {args.mode} job ended {status}: {error}")
    trained = facts["dataset_photos"] + metrics.get("feedback_photos_learned", 0)
    real = args.estimate_photos
    result = {
        "command": " ".join(sys.argv), "mode": args.mode, "setup": facts, "job": job_id, "candidate": version,
        "wall_seconds": round(wall, 1), "cpu_seconds": round(cpu, 1), "cpu_per_wall": round(cpu / wall, 2),
        "load_average": list(__import__("os").getloadavg()),
        "features_computed": metrics.get("features_computed"),
        "train_photos": trained, "stage_seconds": metrics.get("stage_seconds"), "fits": metrics.get("fits"),
        "job_seconds": metrics.get("seconds"), "train_seconds": metrics.get("train_seconds"),
        "fitted_with": {"members": metrics.get("members"), "folds": metrics.get("folds")},
        "feedback": {k: v for k, v in metrics.items() if k.startswith("feedback_")},
        "gate": {"promote": gate.get("promote"), "reason": gate.get("reason")},
        "estimate": estimate({**metrics, "seconds": wall}, trained, real, cpu / wall),
    }
    result_file.write_text(json.dumps(result, indent=2, default=str) + "\n")
    if result["features_computed"] and args.mode == "quick":
        log.warning("%s front arrays were computed: the cache was not warm (run --warm first), so the time "
                    "includes them", result["features_computed"])
    est = result["estimate"]
    line = (f"| {trained} | {facts['feedback_photos']} ({facts['feedback_people']} people) | {wall:.0f} s "
            f"| {cpu:.0f} s | {result['features_computed']} | ≤ {est['upper_bound_quiet_2_cores_seconds'] / 60:.1f} min "
            f"| {'promote' if gate.get('promote') else 'keep'} | load {result['load_average'][0]:.1f} |")
    log.info("%s job: %s in %.0f s wall, %.0f s CPU; features computed %s; gate: %s", args.mode, status, wall, cpu,
             result["features_computed"], gate.get("reason"))
    log.info("real scale (%d training photos): at most %.1f min on a quiet 2-core CPU (upper bound, see estimate())",
             real, est["upper_bound_quiet_2_cores_seconds"] / 60)
    print(line)
    if args.doc and args.mode == "quick":  # the doc's table is the quick job's
        add_row(args.doc, line)


def add_row(doc: Path, line: str) -> bool:
    """Put ``line`` into ``doc``'s table, just before ``DOC_MARKER``; False when there is no marker."""
    text = doc.read_text()
    if DOC_MARKER not in text:
        log.warning("%s has no '%s': the row is only printed", doc, DOC_MARKER)
        return False
    doc.write_text(text.replace(DOC_MARKER, f"{line}\n{DOC_MARKER}", 1))
    return True


if __name__ == "__main__":
    main()
