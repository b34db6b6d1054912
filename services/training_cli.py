"""``wardrobe retrain``, ``wardrobe jobs`` and ``wardrobe models``: training jobs and model versions
through a running gateway (so they pass the same authentication and validation as any client).

    wardrobe retrain --mode quick --wait       # enqueue, then a progress bar until the job ends
    wardrobe jobs                              # recent jobs;  wardrobe jobs ID: one job in full
    wardrobe jobs cancel ID
    wardrobe models list | activate VERSION | rollback
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from services.api_client import Api, ApiError, add_client_args, api_from_args

__all__ = ["add_parsers"]

FINISHED = ("done", "failed", "cancelled")


def _api(args: argparse.Namespace) -> Api:
    return api_from_args(args)


def _run(fn):  # noqa: ANN001, ANN202 - wraps a command so API errors print one line and exit 1
    def wrapper(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except ApiError as exc:
            print(f"wardrobe {args.command}: {exc}", file=sys.stderr)
            return 1
    return wrapper


# --- formatting --------------------------------------------------------------------------------
def job_line(job: dict) -> str:
    extra = job.get("candidate_version") or ""
    if job.get("gate"):
        extra += f" ({'promoted' if job.get('promoted') else 'kept'}: {job['gate']['reason']})"
    if job.get("error"):
        extra = f"{job['error']['code']}: {job['error']['message']}"
    return (f"{job['id']}  {job['mode']:<11} {job['status']:<9} {job.get('stage') or '':<12} "
            f"{job['progress']:>4.0%}  {job['created_at'][:19]}  {extra}")


def job_detail(job: dict) -> str:
    lines = [job_line(job)]
    for key in ("options", "metrics", "gate"):
        if job.get(key):
            lines.append(f"{key}: {json.dumps(job[key], indent=1, sort_keys=True)}")
    if job.get("eta_s") is not None:
        lines.append(f"eta: {job['eta_s']:.0f} s")
    if job.get("log_tail"):
        lines.append("log tail:\n  " + "\n  ".join(job["log_tail"][-15:]))
    return "\n".join(lines)


def follow(api: Api, job_id: str, poll_s: float = 1.0) -> dict:
    """A tqdm bar (percent of the job; stage and ETA alongside) until the job finishes."""
    from tqdm import tqdm

    with tqdm(total=100, unit="%", desc="queued", bar_format="{desc:<14} {bar} {n:.0f}% [{elapsed}{postfix}]") as bar:
        while True:
            job = api.call("GET", f"/v1/training-jobs/{job_id}")
            bar.set_description_str(job.get("stage") or job["status"])
            bar.update(round(100 * job["progress"], 1) - bar.n)
            if job.get("eta_s") is not None:
                bar.set_postfix_str(f"eta {job['eta_s']:.0f} s")
            if job["status"] in FINISHED:
                return job
            time.sleep(poll_s)


# --- commands ----------------------------------------------------------------------------------
@_run
def cmd_retrain(args: argparse.Namespace) -> int:
    body: dict = {"mode": args.mode}
    for name in ("version", "promote", "tolerance"):
        if getattr(args, name) is not None:
            body[name] = getattr(args, name)
    if args.recipe:
        body["recipe_preset"] = args.recipe
    if args.set:
        body["recipe"] = dict(kv.split("=", 1) for kv in args.set)
    api = _api(args)
    job = api.call("POST", "/v1/training-jobs", json=body)
    print(f"training job {job['id']} queued ({args.mode})", file=sys.stderr)
    if not args.wait:
        print(job["id"])
        return 0
    try:
        job = follow(api, job["id"], args.poll)
    except KeyboardInterrupt:
        print(f"\nstopped watching; the job goes on (wardrobe jobs {job['id']}; "
              f"wardrobe jobs cancel {job['id']})", file=sys.stderr)
        return 130
    print(job_detail(job))
    return 0 if job["status"] == "done" else 1


@_run
def cmd_jobs(args: argparse.Namespace) -> int:
    api, words = _api(args), list(args.words)
    if words[:1] == ["cancel"]:
        if len(words) != 2:
            print("usage: wardrobe jobs cancel ID", file=sys.stderr)
            return 2
        job = api.call("POST", f"/v1/training-jobs/{words[1]}/cancel")
        print(job_line(job) + ("  (cancel requested)" if job["status"] == "running" else ""))
        return 0
    if len(words) > 1:
        print("usage: wardrobe jobs [ID] | wardrobe jobs cancel ID", file=sys.stderr)
        return 2
    if words:
        job = api.call("GET", f"/v1/training-jobs/{words[0]}")
        print(json.dumps(job, indent=2) if args.json else job_detail(job))
        return 0
    params = {"limit": args.limit, **({"status": args.status} if args.status else {})}
    jobs = api.call("GET", "/v1/training-jobs", params=params)
    print(json.dumps(jobs, indent=2) if args.json else "\n".join(job_line(j) for j in jobs) or "no training jobs")
    return 0


@_run
def cmd_models(args: argparse.Namespace) -> int:
    api = _api(args)
    if args.action == "activate":
        if not args.version:
            print("usage: wardrobe models activate VERSION", file=sys.stderr)
            return 2
        model = api.call("POST", f"/v1/models/{args.version}/activate")
        print(f"active: {model['version']}")
        return 0
    if args.action == "rollback":
        model = api.call("POST", "/v1/models/rollback")
        print(f"rolled back; active: {model['version']}")
        return 0
    models = api.call("GET", "/v1/models")
    if args.json:
        print(json.dumps(models, indent=2))
        return 0
    for m in models:
        print(f"{'*' if m['active'] else ' '} {m['version']:<32} {m['architecture']:<20} {m['classes']:>3} classes  "
              f"{m['created_at'][:19]}")
    return 0


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    retrain = subparsers.add_parser("retrain", help="start a training job (trainer role); --wait shows its progress")
    retrain.add_argument("--mode", choices=("quick", "full", "recalibrate"), default="quick")
    retrain.add_argument("--version", default=None, help="name of the candidate version")
    retrain.add_argument("--promote", choices=("gate", "always", "never"), default=None,
                         help="gate (default): promote only if the gate passes it")
    retrain.add_argument("--tolerance", type=float, default=None, help="gate tolerance (top-1 it may lose)")
    retrain.add_argument("--recipe", default=None, help="full only: recipe preset (default, gpu)")
    retrain.add_argument("--set", action="append", metavar="FIELD=VALUE", help="full only: recipe override")
    retrain.add_argument("--wait", action="store_true", help="follow the job with a progress bar until it ends")
    retrain.add_argument("--poll", type=float, default=1.0, help="seconds between progress checks")
    add_client_args(retrain)
    retrain.set_defaults(func=cmd_retrain)

    jobs = subparsers.add_parser("jobs", help="training jobs: list, show one (ID), or cancel one (cancel ID)")
    jobs.add_argument("words", nargs="*", metavar="[cancel] ID")
    jobs.add_argument("--status", choices=("queued", "running", "done", "failed", "cancelled"), default=None)
    jobs.add_argument("--limit", type=int, default=20)
    add_client_args(jobs)
    jobs.set_defaults(func=cmd_jobs)

    models = subparsers.add_parser("models", help="model versions (operator role): list, activate, rollback")
    models.add_argument("action", choices=("list", "activate", "rollback"), nargs="?", default="list")
    models.add_argument("version", nargs="?", default=None)
    add_client_args(models)
    models.set_defaults(func=cmd_models)
