"""``wardrobe``: the command line. Subcommands come from modules listed in ``COMMAND_MODULES``;
each provides ``add_parsers(subparsers)`` and sets ``func`` (returning the exit code) on its parser.
A module that cannot be imported (e.g. the trainer without its extra) is skipped.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import time
from pathlib import Path

__all__ = ["main", "COMMAND_MODULES"]

# Where subcommands live; services/trainer/cli.py adds `train` and `evaluate`.
COMMAND_MODULES = ["services.cli", "services.keys_cli", "services.trainer.cli"]

log = logging.getLogger("wardrobe")


# --- wardrobe up ------------------------------------------------------------------------------
def cmd_up(args: argparse.Namespace) -> int:
    from services import launcher
    from shared.config import CommonSettings

    settings = CommonSettings()

    def _on_sigterm(signum, _frame) -> None:  # noqa: ANN001 - stop like Ctrl-C
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _on_sigterm)
    group = launcher.ProcessGroup(log_dir=Path(args.log_dir) if args.log_dir else None)
    try:
        stack = launcher.start_stack(
            group, data_dir=settings.data_dir, model_dir=settings.model_dir, redis_url=settings.redis_url,
            database_url=settings.resolved_database_url, namespace=settings.redis_namespace, port=args.port,
            host=args.host, model_store=settings.model_store, bootstrap_key=settings.wardrobe_bootstrap_key,
        )
        url = stack.url
        print(f"Wardrobe is up at {url}  (API docs: {url}/docs) — Ctrl-C to stop", flush=True)
        if stack.new_operator_key:
            print(f"First start: created an operator API key (shown once, keep it):\n    {stack.new_operator_key}\n"
                  "Send it as 'Authorization: Bearer <key>'; make client keys with `wardrobe keys create`.",
                  flush=True)
        while True:
            if dead := group.dead():
                log.error("%s exited (code %s); stopping", dead[0].name, dead[0].popen.returncode)
                return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        return 0
    finally:
        print("stopping...", flush=True)
        group.stop_all()


# --- wardrobe classify ------------------------------------------------------------------------
def format_answer(path: str, body: dict) -> str:
    if body.get("status") == "failed":
        return f"{path}: failed: {body['error']['message']}"
    if body.get("status") != "done":
        return f"{path}: {body.get('status')} (job {body.get('id')})"
    node = body["answer"]["node"]
    top = ", ".join(f"{p['display']} {p['probability']:.0%}" for p in body["top_predictions"][:3])
    return (f"{path}: {node['icon']} {node['display']} ({node['probability']:.0%} sure, target "
            f"{body['accuracy_target']:.1%}; top: {top})")


def cmd_classify(args: argparse.Namespace) -> int:
    import httpx

    from shared.config import CommonSettings

    key = args.key or CommonSettings().wardrobe_api_key
    if not key:
        print("an API key is needed: --key KEY or WARDROBE_API_KEY (`wardrobe keys create`)", file=sys.stderr)
        return 2
    failures = 0
    with httpx.Client(base_url=args.url, timeout=args.wait + 10, headers={"Authorization": f"Bearer {key}"}) as client:
        for photo in args.photos:
            path = Path(photo)
            try:
                data = path.read_bytes()
            except OSError as exc:
                print(f"{photo}: {exc}", file=sys.stderr)
                failures += 1
                continue
            params = {"wait": args.wait}
            if args.accuracy is not None:
                params["accuracy"] = args.accuracy
            r = client.post("/v1/classifications", params=params, files={"photo": (path.name, data)})
            if r.status_code == 202:  # not ready within --wait: one more bounded wait
                r = client.get(r.headers["location"], params={"wait": args.wait})
            body = r.json()
            if r.status_code >= 400:
                print(f"{photo}: error {r.status_code}: {body.get('error', {}).get('message', body)}",
                      file=sys.stderr)
                failures += 1
                continue
            print(format_answer(photo, body))
            failures += body.get("status") != "done"
    return 1 if failures else 0


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    up = subparsers.add_parser("up", help="start Redis (if REDIS_URL is unset), the gateway and the workers")
    up.add_argument("--port", type=int, default=8000)
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--log-dir", default=None, help="write each process's log here instead of the terminal")
    up.set_defaults(func=cmd_up)

    classify = subparsers.add_parser("classify", help="classify photos with a running gateway")
    classify.add_argument("photos", nargs="+", metavar="PHOTO")
    classify.add_argument("--url", default="http://127.0.0.1:8000")
    classify.add_argument("--key", default=None, help="API key (default: WARDROBE_API_KEY)")
    classify.add_argument("--accuracy", type=float, default=None, help="accuracy target in [0.5, 0.999]")
    classify.add_argument("--wait", type=float, default=30.0, help="seconds to wait for each answer (max 30)")
    classify.set_defaults(func=cmd_classify)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wardrobe", description="Wardrobe: tells what garment is in a photo.")
    parser.add_argument("-v", "--verbose", action="store_true")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            if exc.name is None or not name.startswith(exc.name):  # a broken module, not a missing one
                raise
            continue
        module.add_parsers(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
