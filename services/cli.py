"""``wardrobe``: the command line. Subcommands come from modules listed in ``COMMAND_MODULES``;
each provides ``add_parsers(subparsers)`` and sets ``func`` (returning the exit code) on its parser.
A module that cannot be imported (e.g. the trainer without its extra) is skipped.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
import time
from pathlib import Path

__all__ = ["main", "COMMAND_MODULES"]

# Where subcommands live; services/trainer/cli.py adds `train` and `evaluate`.
COMMAND_MODULES = ["services.cli", "services.keys_cli", "services.data_cli", "services.training_cli",
                   "services.trainer.cli"]

log = logging.getLogger("wardrobe")


# --- wardrobe up ------------------------------------------------------------------------------
def up_banner(url: str, new_key: str | None) -> str:
    """What ``wardrobe up`` prints once everything answers: one short block."""
    lines = ["", f"Wardrobe is up at {url}", f"  Web page:  {url}/  (open it in a browser)", f"  API docs:  {url}/docs"]
    if new_key:
        lines += ["  First start: an operator API key was made; it is shown this once, keep it:",
                  f"    {new_key}",
                  "  Send it as 'Authorization: Bearer <key>' (or export WARDROBE_API_KEY=<key> for the wardrobe",
                  "  commands); make a key per client app with `wardrobe keys create --name NAME`."]
    lines += ["  Stop: Ctrl-C (twice: at once). Routine work logs at DEBUG: LOG_LEVEL=DEBUG shows it.", ""]
    return "\n".join(lines)


def cmd_up(args: argparse.Namespace) -> int:
    from services import launcher
    from shared.config import CommonSettings

    settings = CommonSettings()
    group = launcher.ProcessGroup(log_dir=Path(args.log_dir) if args.log_dir else None)
    stopping = False

    def _on_signal(signum, _frame) -> None:  # noqa: ANN001 - Ctrl-C or SIGTERM
        """The first stops gracefully (KeyboardInterrupt unwinds to the stop below); any later one,
        while the children are stopping, kills them at once. Never a traceback."""
        nonlocal stopping
        if stopping:
            group.kill_all()
            return
        stopping = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    try:
        stack = launcher.start_stack(
            group, data_dir=settings.data_dir, model_dir=settings.model_dir, redis_url=settings.redis_url,
            database_url=settings.resolved_database_url, namespace=settings.redis_namespace, port=args.port,
            host=args.host, model_store=settings.model_store, bootstrap_key=settings.wardrobe_bootstrap_key,
            log_level=settings.log_level,
        )
        print(up_banner(stack.url, stack.new_operator_key), flush=True)
        while True:  # a child that dies is started again, with backoff; the others keep serving
            group.supervise()
            time.sleep(0.5)
    except KeyboardInterrupt:
        return 0
    finally:
        stopping = True  # also when start-up failed: a Ctrl-C from here on kills at once
        print("\nstopping... (Ctrl-C again to stop at once)", flush=True)
        group.stop_all()
        print("stopped", flush=True)


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
    from services.api_client import ApiError, api_from_args, error_line

    api = api_from_args(args, timeout=args.wait + 10)
    if "Authorization" not in api.http.headers:
        print("wardrobe classify: an API key is needed: --key KEY or WARDROBE_API_KEY (`wardrobe keys create`)",
              file=sys.stderr)
        return 2
    failures = 0
    for photo in args.photos:
        path = Path(photo)
        try:
            data = path.read_bytes()
        except OSError as exc:
            print(f"{photo}: {exc.strerror or exc}", file=sys.stderr)
            failures += 1
            continue
        params = {"wait": args.wait}
        if args.accuracy is not None:
            params["accuracy"] = args.accuracy
        try:
            r = api.request("POST", "/v1/classifications", params=params, files={"photo": (path.name, data)})
            if r.status_code == 202:  # not ready within --wait: one more bounded wait
                r = api.request("GET", r.headers["location"], params={"wait": args.wait})
        except ApiError as exc:  # the gateway is down: no use trying the other photos
            print(f"wardrobe classify: {exc}", file=sys.stderr)
            return 1
        if r.status_code in (401, 403):  # the key, not the photo: the same for every photo
            print(f"wardrobe classify: {error_line(r)}", file=sys.stderr)
            return 1
        if r.status_code >= 400:
            print(f"{photo}: {error_line(r)}", file=sys.stderr)
            failures += 1
            continue
        body = r.json()
        print(format_answer(photo, body))
        failures += body.get("status") != "done"
    return 1 if failures else 0


# --- wardrobe migrate ---------------------------------------------------------------------------
def cmd_migrate(args: argparse.Namespace) -> int:
    """What a deployment runs once before the services start (compose `migrate`, the Kubernetes
    Job): the same ``prepare_database`` as ``wardrobe up`` and the gateway's own start-up."""
    from shared.bootstrap import prepare_database
    from shared.config import CommonSettings

    settings = CommonSettings()
    try:
        version = prepare_database(settings.resolved_database_url, settings.model_dir,
                                   attempts=settings.db_wait_attempts, model_store=settings.resolved_model_store)
    except RuntimeError as exc:  # the database never answered (each try was logged)
        log.error("%s", exc)
        return 1
    if version is None:
        log.warning("migrated, but no model in %s: classifications answer 503 until one is registered",
                    settings.model_dir)
    if settings.wardrobe_bootstrap_key:  # a known operator key for scripts (never drawn here: no log holds it)
        from shared.api_keys import ensure_bootstrap_key
        from shared.db import session_scope

        with session_scope(settings.resolved_database_url) as session:
            if ensure_bootstrap_key(session, settings.wardrobe_bootstrap_key) is not None:
                log.info("created the operator key given by WARDROBE_BOOTSTRAP_KEY")
    return 0


# --- wardrobe ping ------------------------------------------------------------------------------
def ping_gateway(url: str, ready: bool, timeout: float) -> str:
    import httpx

    path = "/readyz" if ready else "/healthz"
    response = httpx.get(url.rstrip("/") + path, timeout=timeout)
    if response.status_code != 200:
        raise ConnectionError(f"{url}{path} answered {response.status_code}: {response.text[:200]}")
    return f"{url}{path} answered 200"


def ping_redis(redis_url: str, timeout: float) -> str:
    import redis

    try:
        redis.Redis.from_url(redis_url, socket_timeout=timeout, socket_connect_timeout=timeout).ping()
    except redis.RedisError as exc:
        raise ConnectionError(f"Redis: {exc}") from None
    return "Redis answered PING"


def ping_db(database_url: str) -> str:
    from shared.db import wait_for_database

    wait_for_database(database_url, attempts=1)  # RuntimeError when it does not answer
    return "database answered SELECT 1"


def ping_worker(redis_url: str, namespace: str, node: str, timeout: float) -> str:
    """One Celery node answers a broker ``ping``: its consumer is alive. Builds the shared Celery
    app (right broker, REDIS_NAMESPACE key prefix) without importing any worker's tasks or
    onnxruntime, so a liveness probe stays cheap."""
    from shared.celery_app import create_celery_app

    app = create_celery_app(redis_url, namespace, main="probe")
    try:
        replies = app.control.ping(destination=[node], timeout=timeout)
    finally:
        app.close()
    if not any(node in reply for reply in replies):
        raise ConnectionError(f"worker {node} did not answer a ping within {timeout:g} s")
    return f"worker {node} answered"


def cmd_ping(args: argparse.Namespace) -> int:
    """Exit 0 when ``target`` answers, 1 (with the reason on stderr) when it does not: the health
    checks of compose, the Dockerfile and Kubernetes."""
    import socket

    from shared.config import CommonSettings

    try:
        if args.target == "gateway":
            message = ping_gateway(args.url, args.ready, args.timeout)
        else:
            settings = CommonSettings()
            if args.target == "db":
                message = ping_db(settings.resolved_database_url)
            elif not settings.redis_url:
                raise ConnectionError("REDIS_URL is not set")
            elif args.target == "redis":
                message = ping_redis(settings.redis_url, args.timeout)
            else:  # a worker: by default this host's node of that queue (`-n <queue>@%h`)
                node = args.node or f"{args.target}@{socket.gethostname()}"
                message = ping_worker(settings.redis_url, settings.redis_namespace, node, args.timeout)
    except Exception as exc:  # noqa: BLE001 - any failure means "not healthy"; say why
        print(f"ping {args.target}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"ping {args.target}: {message}")
    return 0


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    from services.api_client import add_client_args

    up = subparsers.add_parser("up", help="start Redis (if REDIS_URL is unset), the gateway and the workers")
    up.add_argument("--port", type=int, default=8000)
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--log-dir", default=None, help="write each process's log here instead of the terminal")
    up.set_defaults(func=cmd_up)

    classify = subparsers.add_parser("classify", help="classify photos with a running gateway")
    classify.add_argument("photos", nargs="+", metavar="PHOTO")
    add_client_args(classify, json_flag=False)
    classify.add_argument("--accuracy", type=float, default=None, help="accuracy target in [0.5, 0.999]")
    classify.add_argument("--wait", type=float, default=30.0, help="seconds to wait for each answer (max 30)")
    classify.set_defaults(func=cmd_classify)

    migrate = subparsers.add_parser(
        "migrate", help="wait for the database (DB_WAIT_ATTEMPTS logged tries), run the Alembic migrations, "
                        "register and activate the newest model in MODEL_DIR if none is active")
    migrate.set_defaults(func=cmd_migrate)

    ping = subparsers.add_parser("ping", help="exit 0 if a part of the system answers, else 1 (health checks)")
    from shared.celery_app import QUEUES

    ping.add_argument("target", choices=("gateway", "redis", "db", *QUEUES),
                      help="gateway (HTTP), redis (REDIS_URL), db (DATABASE_URL), or a worker's queue: "
                           "that worker's Celery node on this host answers through the broker")
    ping.add_argument("--url", default="http://127.0.0.1:8000", help="gateway: its base URL")
    ping.add_argument("--ready", action="store_true", help="gateway: /readyz (Redis, DB, model) instead of /healthz")
    ping.add_argument("--node", default=None, help="worker: the Celery node name (default: <queue>@<hostname>)")
    ping.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the answer")
    ping.set_defaults(func=cmd_ping)


class OneLineParser(argparse.ArgumentParser):
    """A bad argument is one line on stderr (and exit 2), not the usage block: the subcommands'
    parsers are of this class too (argparse makes them of their parent's)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: {message} (`{self.prog} --help` for usage)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="wardrobe", description="Wardrobe: tells what garment is in a photo.")
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
    from shared.config import CommonSettings, SettingsError
    from shared.log_levels import quiet_libraries

    args = build_parser().parse_args(argv)
    try:
        level = "DEBUG" if args.verbose else CommonSettings().log_level
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        quiet_libraries(level)  # e.g. httpx's line per request through `retrain --wait`'s progress bar
        return args.func(args)
    except SettingsError as exc:  # a bad environment variable: say which, no traceback
        print(f"wardrobe {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C in any command: stop, no traceback
        print(f"\nwardrobe {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the output was piped into e.g. `head`, which has stopped reading
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 141


if __name__ == "__main__":
    sys.exit(main())
