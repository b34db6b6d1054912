"""Learning from feedback, simulated through the real retrain path (issue [D], "must reach").

    1. the training split's senders are cut in two halves by a seeded hash: A and B;
    2. start: the quick recipe (services/trainer/pipelines/refit.py) on A's photos only, registered and
       active in a fresh database + model store (the registry and store the trainer worker uses);
    3. B's photos are streamed person by person as finished classifications whose feedback
       (``shared.feedback.give``, what ``POST /v1/classifications/{id}/feedback`` stores) is the
       true leaf, ``--noise`` of it (10 %) replaced by a wrong leaf; every ``--every`` items a
       ``quick`` training job is created and run by ``jobs_runner.run_training_job``, the function
       the trainer's Celery task ``trainer.run_job`` calls: feedback → quick refit → publish →
       gate → promotion. (The runner is called directly, not through HTTP: uploading 1,300
       photos through the gateway would add an inference pass per photo that this CPU cannot
       spare and that the learning does not use; the classification rows answer the root.)
    4. after each job, the active version's top-1 on the test split (its ONNX file, as served);
    5. the reference: the same quick recipe on all training photos (A and B, true labels).

The gate scores candidates on the validation split (``GATE_EVAL_SPLIT=val``) so that the test
top-1 reported here never chose a version; ``FEEDBACK_HOLDOUT_SHARE`` of B's people are held
back for the gate and never learned from. Front activations are cached on disk
(``--cache``) and shared with every run: only the fine-tuning is paid per job.

    nice -n 10 python bench/feedback_loop.py --data /work/shared/data/clothing --out runs/feedback_loop
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import random
import shutil
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.trainer.jobs import runner as jobs_runner  # noqa: E402
from services.trainer.config import TrainerSettings  # noqa: E402
from services.trainer.jobs.gate import ProbabilityCache, score  # noqa: E402
from services.trainer.data.feedback import dataset_parts  # noqa: E402
from services.trainer.pipelines.refit import quick_refit  # noqa: E402
from shared import registry  # noqa: E402
from shared import training_jobs as tj  # noqa: E402
from shared.auth import Caller, Role  # noqa: E402
from shared.bootstrap import prepare_database  # noqa: E402
from shared.db import session_scope  # noqa: E402
from shared.feedback import give  # noqa: E402
from shared.model_store import open_model_store  # noqa: E402
from shared.storage import PhotoStore  # noqa: E402
from shared.tables import ClassificationJob, JobStatus  # noqa: E402
from shared.taxonomy import load_taxonomy  # noqa: E402

log = logging.getLogger("feedback_loop")


def _order(person: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}:{person}".encode()).hexdigest()


def bench_split(split_file: Path, parts: dict, seed: int) -> tuple[dict, list[str], list[str]]:
    """The stored split with its training senders cut in two: ``train`` = half A, ``stream`` = B."""
    split = json.loads(Path(split_file).read_text())
    sender_of = {p.photo.path.stem: p.person for p in parts["train"]}
    senders = sorted({sender_of[i] for i in split["train"] if i in sender_of}, key=lambda s: _order(s, seed))
    a = set(senders[: len(senders) // 2])
    b = [s for s in senders if s not in a]
    out = {**split, "train": [i for i in split["train"] if sender_of.get(i) in a],
           "stream": [i for i in split["train"] if i in sender_of and sender_of[i] not in a]}
    return out, sorted(a), b


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--split", type=Path, default=Path("models/split.json"))
    ap.add_argument("--out", type=Path, default=Path("runs/feedback_loop"))
    ap.add_argument("--cache", type=Path, default=Path("var/cache"), help="front activations + probabilities")
    ap.add_argument("--every", type=int, default=300, help="feedback items between quick retrain jobs (K)")
    ap.add_argument("--noise", type=float, default=0.10, help="share of feedback naming a wrong leaf")
    ap.add_argument("--holdout", type=float, default=0.1, help="share of B's people held back for the gate")
    ap.add_argument("--tolerance", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for noisy in ("PIL", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    taxonomy = load_taxonomy()
    rng = random.Random(args.seed)
    t0 = time.time()

    # 1. halves A and B ------------------------------------------------------------------------
    full_parts = dataset_parts(args.data, taxonomy, args.split)
    split, a, b = bench_split(args.split, full_parts, args.seed)
    split_file = out / "split.json"
    split_file.write_text(json.dumps(split) + "\n")
    parts = dataset_parts(args.data, taxonomy, split_file)
    log.info("senders: A %d (%d photos), B %d (%d photos)", len(a), len(parts["train"]), len(b), len(parts["stream"]))
    cache = ProbabilityCache(args.cache.resolve() / "probabilities")
    test = parts["test"]

    # 5. the reference, and 2. the start model (direct quick refits: no feedback involved) --------
    def refit(root: Path, name: str, train_photos: list) -> Path:
        """A quick refit without feedback (kept: a rerun reuses it)."""
        if not (root / name / "card.json").is_file():
            quick_refit({**parts, "train": train_photos}, [], taxonomy, root, name, args.cache.resolve() / "features")
        return root / name

    reference = refit(out / "reference", "reference-all", full_parts["train"])
    ref_score = score(reference, test, cache)
    log.info("reference (all training photos): test top-1 %.4f", ref_score["top1"])
    start_dir = refit(out / "bundled", "start-half", parts["train"])  # the registry's only bundled version

    db = out / "db.sqlite3"
    db.unlink(missing_ok=True)
    settings = TrainerSettings(
        database_url=f"sqlite:///{db}", data_dir=out / "var", model_dir=out / "bundled",
        model_store=str(out / "store"), dataset_dir=args.data, split_file=split_file, gate_eval_split="val",
        feedback_holdout_share=args.holdout, gate_tolerance=args.tolerance, cache_dir=args.cache.resolve(),
        heartbeat_interval_s=5.0, heartbeat_timeout_s=3600.0)
    shutil.rmtree(out / "store", ignore_errors=True)
    shutil.rmtree(out / "var", ignore_errors=True)
    prepare_database(settings.resolved_database_url, settings.model_dir, model_store=settings.model_store)
    store = open_model_store(settings.model_store)
    start_score = score(start_dir, test, cache)
    log.info("start (half A): test top-1 %.4f", start_score["top1"])
    curve = [{"feedback_items": 0, "active": "start-half", "test_top1": start_score["top1"], "job": None}]
    decisions = []

    # 3. the stream ----------------------------------------------------------------------------
    stream = sorted(parts["stream"], key=lambda p: (_order(p.person, args.seed + 1), p.photo.sha256))
    photos = PhotoStore(settings.resolved_photo_dir)
    wrong = 0
    for k, p in enumerate(stream, start=1):
        leaf = p.leaf
        if rng.random() < args.noise:
            leaf = rng.choice([x for x in taxonomy.leaves if x != p.leaf])
            wrong += 1
        caller = Caller(id=f"sender-{p.person}", role=Role.client)
        with session_scope(settings.resolved_database_url) as session:
            job = ClassificationJob(id=uuid.uuid4(), status=JobStatus.done, photo_key=photos.put(p.photo.path.read_bytes()),
                                    accuracy_target=0.9, model_version=None, owner_id=caller.id,
                                    result={"answer": {"node": {"name": ""}}})
            session.add(job)
            session.flush()
            give(session, str(job.id), caller, taxonomy, node=leaf)
        if k % args.every and k != len(stream):
            continue
        # a quick retrain job through the runner ---------------------------------------------
        with session_scope(settings.resolved_database_url) as session:
            job_id = str(tj.create(session, "quick", {"version": f"fl-{k:05d}"}, "bench").id)
        t = time.time()
        status = jobs_runner.run_training_job(job_id, "bench", settings)
        with session_scope(settings.resolved_database_url) as session:
            row = tj.get(session, job_id)
            active = registry.active_version(session)
            active_version, active_key = active.version, active.key
            decision = {"job": job_id, "feedback_items": k, "status": status, "candidate": row.candidate_version,
                        "seconds": round(time.time() - t, 1), "metrics": row.metrics, "gate": row.gate,
                        "error": row.error}
        decisions.append(decision)
        gate = row.gate or {}
        log.info("after %d feedback items: job %s %s, candidate %s, gate %s: %s", k, job_id[:8], status,
                 row.candidate_version, "PROMOTE" if gate.get("promote") else "keep", gate.get("reason"))
        s = score(store.fetch(active_key), test, cache)
        cand = score(store.fetch(row.candidate_version), test, cache) if row.candidate_version else {}
        curve.append({"feedback_items": k, "active": active_version, "test_top1": s["top1"], "job": job_id,
                      "candidate": row.candidate_version, "candidate_test_top1": cand.get("top1"),
                      "promoted": bool(gate.get("promote"))})
        log.info("active %s: test top-1 %.4f (candidate %s)", active_version, s["top1"], cand.get("top1"))

    final = curve[-1]["test_top1"]
    result = {
        "command": " ".join(sys.argv),
        "senders": {"A": len(a), "B": len(b)}, "photos": {"A": len(parts["train"]), "B": len(stream)},
        "noise": args.noise, "wrong_feedback": wrong, "every": args.every, "holdout_share": args.holdout,
        "tolerance": args.tolerance, "gate_eval_split": "val", "test_photos": len(test),
        "reference_test_top1": ref_score["top1"], "start_test_top1": start_score["top1"], "final_test_top1": final,
        "gap_to_reference_points": round(100 * (ref_score["top1"] - final), 2),
        "within_2_points": bool(ref_score["top1"] - final <= 0.02),
        "curve": curve, "jobs": decisions, "seconds": round(time.time() - t0, 1),
    }
    (out / "results.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    _plot(result, out / "feedback_loop.png")
    log.info("final %.4f vs reference %.4f (gap %.2f points): %s", final, ref_score["top1"],
             result["gap_to_reference_points"], "within 2 points" if result["within_2_points"] else "NOT within 2 points")


def _plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from services.trainer.evaluation.plots import save_figure

    fig, ax = plt.subplots(figsize=(7, 4.2))
    xs = [c["feedback_items"] for c in result["curve"]]
    ax.plot(xs, [100 * c["test_top1"] for c in result["curve"]], "o-", label="active version (after the gate)")
    cand = [(c["feedback_items"], c["candidate_test_top1"], c["promoted"]) for c in result["curve"][1:]
            if c.get("candidate_test_top1") is not None]
    for x, y, promoted in cand:
        ax.plot(x, 100 * y, "^" if promoted else "x", color="tab:green" if promoted else "tab:red", ms=8)
    ax.plot([], [], "^", color="tab:green", label="candidate, promoted")
    ax.plot([], [], "x", color="tab:red", label="candidate, kept out")
    ref = 100 * result["reference_test_top1"]
    ax.axhline(ref, color="grey", ls="--", label=f"all training photos, same recipe ({ref:.1f} %)")
    ax.axhspan(ref - 2, ref, color="grey", alpha=0.12, label="within 2 points")
    ax.set_xlabel(f"feedback items ({100 * result['noise']:.0f} % wrong), quick retrain every {result['every']}")
    ax.set_ylabel(f"test top-1 (%), {result['test_photos']} photos of unseen senders")
    ax.set_title("Learning from feedback: quick retrains through the job runner and gate")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    save_figure(fig, path, dpi=120)


if __name__ == "__main__":
    main()
