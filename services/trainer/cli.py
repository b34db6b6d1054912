"""``wardrobe train`` and ``wardrobe evaluate``: the trainer's command-line entry points."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from services.trainer.config import get_settings
from shared.recipe import PRESETS
from shared.hedging.calibration import CRC_UNITS
from services.trainer.model.quantize import CALIBRATION_METHODS

__all__ = ["add_parsers"]


SMALL_HELP = ("a sender with at most N photos is a small sender in the report's audiences "
              "(default: evaluation.audience.SMALL_SENDER_MAX_PHOTOS, 150)")


def _small(args: argparse.Namespace) -> dict:
    """cv_report's ``small_max`` when the command names one (else the report's default)."""
    return {"small_max": args.small_sender_max} if args.small_sender_max is not None else {}


def _data_dir(arg: str | None) -> Path:
    path = Path(arg) if arg else get_settings().dataset_dir
    if path is None:
        sys.exit("error: no dataset directory: pass --data DIR or set DATASET_DIR")
    return path


def _new_versions_dir() -> Path:
    """Where a new version goes by default: ``DATA_DIR/models``, never the checkout's bundled
    ``models/`` (shipping a version in the release is a deliberate ``--out models`` / ``--models-dir``)."""
    return get_settings().data_dir / "models"


def _train(args: argparse.Namespace) -> int:
    from shared.recipe import Recipe
    from services.trainer.pipelines.train import train
    from shared.taxonomy import load_taxonomy

    overrides = dict(kv.split("=", 1) for kv in args.set or [])
    recipe = Recipe.from_overrides(overrides, preset=args.recipe)
    out = Path(args.out) if args.out else _new_versions_dir()
    exclude = None
    if args.exclude:
        from services.trainer.research.label_issues import read_exclusions

        exclude = read_exclusions(Path(args.exclude))
    result = train(_data_dir(args.data), out, load_taxonomy(args.taxonomy), recipe,
                   split_file=Path(args.split_file) if args.split_file else None,
                   on_error=args.on_error, version=args.version, max_photos=args.max_photos,
                   exclude=exclude)
    print(f"model {result.card.version} written to {result.model_dir} in {result.seconds / 60:.1f} min")
    if args.evaluate:
        summary = _run_evaluate(_data_dir(args.data), result.model_dir, result.model_dir / "eval" / "test.json",
                                split="test", split_file=None, rotation=True)
        print(json.dumps({k: summary[k] for k in ("n", "top1", "top3", "top1_top10", "top1_10way", "ece")}, indent=1))
    return 0


def _run_evaluate(data: Path, model: Path, json_out: Path, split: str | None, split_file: Path | None,
                  rotation: bool) -> dict:
    from services.trainer.evaluation.evaluate import evaluate

    return evaluate(data, model, json_out, split=split, split_file=split_file, rotation=rotation)


def _find_label_issues(args: argparse.Namespace) -> int:
    from services.trainer.research.label_issues import find_label_issues
    from shared.recipe import Recipe
    from shared.taxonomy import load_taxonomy

    recipe = Recipe.from_overrides(dict(kv.split("=", 1) for kv in args.set or []))
    split_file = Path(args.split_file) if args.split_file else get_settings().model_dir / "split.json"
    found = find_label_issues(_data_dir(args.data), load_taxonomy(args.taxonomy), Path(args.out), split_file,
                              recipe, folds=args.folds, max_photos=args.max_photos,
                              min_suggested_prob=args.min_suggested_prob)
    print(f"{found.flagged} of {found.n} training photos flagged (out-of-fold top-1 {found.oof_top1:.3f}): "
          f"{found.csv_path}; train without them with `wardrobe train --exclude {found.csv_path}`")
    return 0


def _cv(args: argparse.Namespace) -> int:
    import shlex

    from services.trainer.pipelines.cv import cross_validate, load_oof, ship, with_kids
    from services.trainer.evaluation.crossval import cv_report
    from shared.recipe import Recipe
    from shared.taxonomy import load_taxonomy

    recipe = Recipe.from_overrides(dict(kv.split("=", 1) for kv in args.set or []), preset=args.recipe)
    taxonomy = load_taxonomy(args.taxonomy)
    out = Path(args.out)
    run = cross_validate(_data_dir(args.data), taxonomy, out, recipe, folds=args.folds,
                         final=not args.no_final, max_photos=args.max_photos,
                         train_on_served=args.train_on_served, cache_dir=Path(args.cache) if args.cache else None)
    command = "wardrobe " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    report = cv_report(with_kids(load_oof(out), _data_dir(args.data), taxonomy), taxonomy, out / "report",
                       command=command, **_small(args))
    keys = ("top1", "top3", "top1_top10", "top1_10way", "ece")
    print(json.dumps({"n": report["n"], "senders": report["senders"], "oof_ece": report["oof_ece"],
                      **{k: report["spread"][k] for k in keys}}, indent=1))
    print(f"report: {out / 'report' / 'cv.md'} ({run.seconds / 60:.1f} min)")
    if args.version:
        if run.final_checkpoint is None:
            sys.exit("error: --version needs the network on all photos (drop --no-final)")
        model_dir = ship(out, taxonomy, Path(args.models_dir) if args.models_dir else _new_versions_dir(),
                         args.version, crc_unit=args.crc_unit, data_dir=_data_dir(args.data))
        cv_report(with_kids(load_oof(out), _data_dir(args.data), taxonomy), taxonomy, model_dir / "eval",
                  command=command, **_small(args))  # the CV next to the model
        print(f"model {args.version} written to {model_dir} (calibration cross-fitted, crc per {args.crc_unit})")
    return 0


def _ensemble(args: argparse.Namespace) -> int:
    import shlex

    from services.trainer.pipelines.cv import with_kids
    from services.trainer.pipelines.ensemble import combine_oof, ship_ensemble
    from services.trainer.evaluation.crossval import cv_report
    from shared.taxonomy import load_taxonomy

    taxonomy = load_taxonomy(args.taxonomy)
    runs = [Path(r) for r in args.runs]
    command = "wardrobe " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    data = Path(args.data) if args.data else get_settings().dataset_dir
    oof = with_kids(combine_oof(runs), data, taxonomy)
    report = cv_report(oof, taxonomy, Path(args.out), command=command, **_small(args))
    keys = ("top1", "top3", "top1_top10", "top1_10way", "ece")
    print(json.dumps({"n": report["n"], "senders": report["senders"], "oof_ece": report["oof_ece"],
                      **{k: report["spread"][k] for k in keys}}, indent=1))
    print(f"report: {Path(args.out) / 'cv.md'}")
    if args.version:
        model_dir = ship_ensemble(runs, taxonomy, Path(args.models_dir) if args.models_dir else _new_versions_dir(),
                                  args.version, crc_unit=args.crc_unit, data_dir=_data_dir(args.data))
        cv_report(oof, taxonomy, model_dir / "eval", command=command, **_small(args))
        print(f"model {args.version} written to {model_dir} (one ONNX graph, calibration cross-fitted, "
              f"crc per {args.crc_unit})")
    return 0


def _cv_report(args: argparse.Namespace) -> int:
    """Rewrite a CV report (cv.json, cv.md, PNGs) from stored out-of-fold predictions, with the
    report's current figures (the audiences among them), without training anything."""
    import shlex

    from services.trainer.evaluation.crossval import cv_report
    from services.trainer.pipelines.cv import load_oof, with_kids
    from services.trainer.pipelines.ensemble import combine_oof
    from shared.taxonomy import load_taxonomy

    taxonomy = load_taxonomy(args.taxonomy)
    out = Path(args.report)
    runs = [Path(r) for r in args.runs] if args.runs else [out]
    oof = combine_oof(runs) if len(runs) > 1 else load_oof(runs[0])
    data = Path(args.data) if args.data else get_settings().dataset_dir
    oof = with_kids(oof, data, taxonomy)
    before = out / "cv.json"
    command = json.loads(before.read_text()).get("command", "") if before.is_file() else ""
    words = ["cv-report", args.report, *(["--runs", *args.runs] if args.runs else []),
             *(["--data", args.data] if args.data else []), *(["--taxonomy", args.taxonomy] if args.taxonomy else []),
             *(["--small-sender-max", str(args.small_sender_max)] if args.small_sender_max is not None else [])]
    recomputed = "wardrobe " + " ".join(shlex.quote(w) for w in words)  # what was asked, however it was called
    report = cv_report(oof, taxonomy, out, command=command or recomputed, **_small(args),
                       recomputed_by=recomputed if command else "")
    small = report["audience"]["audiences"].get("small", {})
    print(json.dumps({"n": report["n"], "senders": report["senders"], "top1": report["mean"]["top1"],
                      "small_top1": {w: small[w]["folds"]["top1"]["mean"] for w in ("photos", "people") if small},
                      "audience_checks": {k: v["met"] for k, v in report["audience"]["must_reach"].items()}}, indent=1))
    print(f"report: {out / 'cv.md'}")
    return 0


def _active_model_dir() -> Path:
    """The registry's active version if a database is reachable, else the bundled release (else the
    newest bundled model)."""
    settings = get_settings()
    try:
        from shared.registry import active_model_dir

        found = active_model_dir(settings)
        if found:
            return Path(found)
    except Exception as exc:  # noqa: BLE001 - no database is fine for offline evaluation
        logging.getLogger(__name__).info("no registry (%s); using the bundled release", exc)
    from shared.registry import release_version

    released = release_version(settings.model_dir)  # not merely the newest: an INT8 copy may be bundled beside it
    if released and (Path(settings.model_dir) / released / "card.json").is_file():
        return Path(settings.model_dir) / released
    cards = sorted(Path(settings.model_dir).glob("*/card.json"))
    if not cards:
        sys.exit(f"error: no model in {settings.model_dir}; pass --model PATH")
    return cards[-1].parent


def _evaluate(args: argparse.Namespace) -> int:
    model = Path(args.model) if args.model else _active_model_dir()
    summary = _run_evaluate(_data_dir(args.data), model, Path(args.json), split=args.split,
                            split_file=Path(args.split_file) if args.split_file else None,
                            rotation=not args.no_rotation)
    keys = ("n", "top1", "top3", "top1_top10", "top1_10way", "ece", "rotation")
    print(json.dumps({k: summary.get(k) for k in keys}, indent=1))
    print(f"report: {Path(args.json).with_suffix('.md')}")
    return 0


def _quantize(args: argparse.Namespace) -> int:
    from services.trainer.errors import RefitError
    from services.trainer.pipelines.quantize import quantize_version

    source = Path(args.source)
    if not (source / "card.json").is_file():
        source = get_settings().model_dir / args.source  # a bundled version by name
    out = Path(args.out) if args.out else _new_versions_dir()
    try:
        result = quantize_version(source, _data_dir(args.data), out, args.version, photos=args.photos,
                                  method=args.method, seed=args.seed, check_photos=args.check_photos,
                                  min_top1_agreement=args.min_agreement)
    except RefitError as exc:
        sys.exit(f"error: {exc}")
    a = result.card.quantization.agreement  # type: ignore[union-attr]
    m = result.card.metrics
    print(f"model {result.card.version} written to {result.model_dir}: INT8 ({args.method}, {args.photos} photos); "
          f"top-1 agrees with float on {a['top1_agreement']:.3f} of {a['photos']} photos, max |Δp| "
          f"{a['max_abs_dp']:.3f}; ONNX Runtime CPU {m['ort_cpu_latency_ms_batch1']:.1f} ms at batch 1")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="fine-tune the garment model and export a new model version")
    p.add_argument("--data", help="dataset directory (images.csv + images/); default $DATASET_DIR")
    p.add_argument("--out", help="where the version goes (default: DATA_DIR/models)")
    p.add_argument("--version", help="version name (default: a UTC timestamp)")
    p.add_argument("--split-file", help="split JSON to reuse (default models/split.json if present)")
    p.add_argument("--taxonomy", help="taxonomy YAML (default: the bundled one)")
    p.add_argument("--on-error", choices=["skip", "stop"], default="skip",
                   help="bad rows (missing/unreadable image, unknown label): skip and report, or stop")
    p.add_argument("--recipe", default="default", choices=sorted(PRESETS),
                   help="recipe preset: 'default' (about 30 min on a 2-core CPU) or 'gpu' (whole network, minutes on a GPU)")
    p.add_argument("--set", action="append", metavar="FIELD=VALUE", help="override a recipe field")
    p.add_argument("--max-photos", type=int, help=argparse.SUPPRESS)
    p.add_argument("--evaluate", action="store_true", help="evaluate on the test split afterwards")
    p.add_argument("--exclude", help="label_issues.csv (or one image id per line): leave these out of training")
    p.set_defaults(func=_train)

    c = sub.add_parser("find-label-issues",
                       help="flag mislabelled training photos with out-of-fold predictions (cleanlab)")
    c.add_argument("--data", help="dataset directory (images.csv + images/); default $DATASET_DIR")
    c.add_argument("--out", required=True, help="directory for label_issues.csv/.json/.png and oof_probs.npz")
    c.add_argument("--split-file", help="split JSON (default: the bundled models/split.json)")
    c.add_argument("--taxonomy", help="taxonomy YAML (default: the bundled one)")
    c.add_argument("--folds", type=int, default=2, help="sender-disjoint folds of the training split")
    c.add_argument("--min-suggested-prob", type=float, default=0.5,
                   help="list a flagged photo only if the network gives another class at least this")
    c.add_argument("--set", action="append", metavar="FIELD=VALUE", help="override a recipe field of the fold models")
    c.add_argument("--max-photos", type=int, help=argparse.SUPPRESS)
    c.set_defaults(func=_find_label_issues)

    v = sub.add_parser("cv", help="K-fold cross-validation grouped by sender over all labelled photos, "
                                  "and the network trained on all of them (frozen front cached once)")
    v.add_argument("--data", help="dataset directory (images.csv + images/); default $DATASET_DIR")
    v.add_argument("--out", required=True, help="run directory (cache, folds, oof.npz, final network, report)")
    v.add_argument("--folds", type=int, default=5, help="sender-disjoint folds")
    v.add_argument("--taxonomy", help="taxonomy YAML (default: the bundled one)")
    v.add_argument("--recipe", default="default", choices=sorted(PRESETS), help="recipe preset (fine_tune=back only)")
    v.add_argument("--set", action="append", metavar="FIELD=VALUE", help="override a recipe field")
    v.add_argument("--train-on-served", action="store_true",
                   help="the served crops (upright, ±30°), cached for evaluation anyway, are training views too")
    v.add_argument("--cache", help="front-activation cache directory (default OUT/cache; share it between "
                                   "runs that differ only in fine-tuning fields)")
    v.add_argument("--version", help="also export the network on all photos as this model version, its temperature "
                                     "and λ tables fitted on the out-of-fold predictions (cross-fitting)")
    v.add_argument("--models-dir", help="where --version goes (default: DATA_DIR/models)")
    v.add_argument("--crc-unit", choices=list(CRC_UNITS), default="group",
                   help="what the shipped crc table promises: 'group' (every group of ~50 new people within "
                        "1 point of the target in 98 %% of groups; the default), 'sender' (a new person on "
                        "average) or 'photo' (a new photo of the people seen)")
    v.add_argument("--no-final", action="store_true", help="folds only: no network on all photos")
    v.add_argument("--small-sender-max", type=int, metavar="N",
                   help=SMALL_HELP)
    v.add_argument("--max-photos", type=int, help=argparse.SUPPRESS)
    v.set_defaults(func=_cv)

    n = sub.add_parser("ensemble", help="the averaged out-of-fold predictions of several wardrobe cv runs "
                                        "(same folds) as one CV report; --version ships them as one model")
    n.add_argument("runs", nargs="+", help="wardrobe cv run directories (same photos and seed, same served crop)")
    n.add_argument("--out", required=True, help="report directory")
    n.add_argument("--data", help="dataset directory, for the export's parity photos; default $DATASET_DIR")
    n.add_argument("--taxonomy", help="taxonomy YAML (default: the bundled one)")
    n.add_argument("--version", help="export the members' networks on all photos as this model version (one ONNX "
                                     "graph), temperature and λ tables fitted on the averaged out-of-fold predictions")
    n.add_argument("--models-dir", help="where --version goes (default: DATA_DIR/models)")
    n.add_argument("--crc-unit", choices=list(CRC_UNITS), default="group",
                   help="what the shipped crc table promises (as for wardrobe cv; default: group)")
    n.add_argument("--small-sender-max", type=int, metavar="N",
                   help=SMALL_HELP)
    n.set_defaults(func=_ensemble)

    r = sub.add_parser("cv-report", help="rewrite a CV report (cv.json, cv.md, PNGs) from stored out-of-fold "
                                         "predictions (oof.npz), e.g. after the report gained figures; trains nothing")
    r.add_argument("report", help="report directory (cv.json is rewritten there; its oof.npz is read unless --runs)")
    r.add_argument("--runs", nargs="+", help="read oof.npz from these run or report directories instead; several: "
                                              "their averaged predictions, as wardrobe ensemble reports them")
    r.add_argument("--data", help="dataset directory, for the kids flag of runs that did not save it; "
                                  "default $DATASET_DIR")
    r.add_argument("--taxonomy", help="taxonomy YAML (default: the bundled one)")
    r.add_argument("--small-sender-max", type=int, metavar="N",
                   help=SMALL_HELP)
    r.set_defaults(func=_cv_report)

    q = sub.add_parser("quantize", help="a model version's network as static INT8 (QDQ, per-channel weights), "
                                        "calibrated on its training photos: a new version for CPU serving")
    q.add_argument("source", help="model version directory, or the name of a bundled version")
    q.add_argument("--data", help="dataset directory (images.csv + images/); default $DATASET_DIR")
    q.add_argument("--out", help="where the new version goes (default: DATA_DIR/models)")
    q.add_argument("--version", help="its name (default: <source>-int8)")
    q.add_argument("--photos", type=int, default=300, help="calibration photos (a seeded sample of the training photos)")
    q.add_argument("--method", choices=list(CALIBRATION_METHODS), default="minmax",
                   help="how activation ranges are fixed from them (docs/model.md#cheaper-serving)")
    q.add_argument("--seed", type=int, default=0, help="the sample's seed")
    q.add_argument("--check-photos", type=int, default=200,
                   help="further photos on which INT8 is compared with float (recorded on the card)")
    q.add_argument("--min-agreement", type=float, default=0.97,
                   help="refuse when INT8 and float pick the same class on fewer of the check photos than this")
    q.set_defaults(func=_quantize)

    e = sub.add_parser("evaluate", help="evaluate a model version on a dataset directory")
    e.add_argument("--data", help="dataset directory (images.csv + images/); default $DATASET_DIR")
    e.add_argument("--model", help="model version directory (default: the active model)")
    e.add_argument("--json", required=True, help="where to write the JSON summary (report beside it)")
    e.add_argument("--split", help="evaluate only this split of the model's split file (e.g. test)")
    e.add_argument("--split-file", help="split JSON (default: the model's own split.json)")
    e.add_argument("--no-rotation", action="store_true", help="skip the rotation check")
    e.set_defaults(func=_evaluate)
