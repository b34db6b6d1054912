"""``wardrobe migrate`` and ``wardrobe ping``: the commands deployments run before and around the
services (compose, the Dockerfile's HEALTHCHECKs, the Kubernetes Job and probes), run here as the
real command against the real database, Redis and a real Celery worker."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import inspect

from services import launcher
from shared import registry
from shared.config import REPO_ROOT
from shared.db import get_engine, session_scope

pytestmark = pytest.mark.integration


def wardrobe(*args: str, **env: str | Path) -> subprocess.CompletedProcess[str]:
    """``wardrobe ARGS`` as a child process, with only the given Wardrobe variables set."""
    base = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL", "MODEL_DIR",
                                                              "REDIS_NAMESPACE", "DATA_DIR", "DB_WAIT_ATTEMPTS",
                                                              "WARDROBE_BOOTSTRAP_KEY", "WARDROBE_URL",
                                                              "WARDROBE_API_KEY", "LOG_LEVEL")}
    base["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), base.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return subprocess.run([sys.executable, "-m", "services.cli", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=120, env={**base, **{k: str(v) for k, v in env.items()}})


def closed_port() -> int:
    return launcher.free_port()  # nothing listens there once the probe socket is closed


# --- migrate --------------------------------------------------------------------------------------
def test_migrate_creates_the_tables_and_activates_the_bundled_model(database_url: str, model_dir: Path,
                                                                    tmp_path: Path) -> None:
    out = wardrobe("migrate", DATABASE_URL=database_url, MODEL_DIR=model_dir, DATA_DIR=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "active model version: tiny-1" in out.stderr
    assert "classification_jobs" in inspect(get_engine(database_url)).get_table_names()
    with session_scope(database_url) as session:
        assert registry.active_version(session).version == "tiny-1"
    again = wardrobe("migrate", DATABASE_URL=database_url, MODEL_DIR=model_dir, DATA_DIR=tmp_path)
    assert again.returncode == 0, again.stderr  # idempotent: a Job may run it again


def test_migrate_creates_the_operator_key_given_by_wardrobe_bootstrap_key(database_url: str, model_dir: Path,
                                                                          tmp_path: Path) -> None:
    from shared import api_keys

    out = wardrobe("migrate", DATABASE_URL=database_url, MODEL_DIR=model_dir, DATA_DIR=tmp_path,
                   WARDROBE_BOOTSTRAP_KEY="compose-operator-key")
    assert out.returncode == 0, out.stderr
    assert "compose-operator-key" not in out.stderr + out.stdout  # never logged
    with session_scope(database_url) as session:
        assert api_keys.resolve(session, "compose-operator-key").role.value == "operator"
    assert wardrobe("migrate", DATABASE_URL=database_url, MODEL_DIR=model_dir, DATA_DIR=tmp_path,
                    WARDROBE_BOOTSTRAP_KEY="compose-operator-key").returncode == 0  # idempotent


def test_migrate_waits_for_the_database_with_logged_retries_then_fails(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://wardrobe@127.0.0.1:{closed_port()}/wardrobe?connect_timeout=1"
    out = wardrobe("migrate", DATABASE_URL=url, DB_WAIT_ATTEMPTS="2", DATA_DIR=tmp_path)
    assert out.returncode == 1
    assert "database not ready (try 1/2)" in out.stderr
    assert "not reachable after 2 tries" in out.stderr


def test_migrate_without_a_model_still_migrates(database_url: str, tmp_path: Path) -> None:
    out = wardrobe("migrate", DATABASE_URL=database_url, MODEL_DIR=tmp_path / "empty", DATA_DIR=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "no model in" in out.stderr


# --- ping -----------------------------------------------------------------------------------------
def test_ping_redis(redis_url: str) -> None:
    assert wardrobe("ping", "redis", REDIS_URL=redis_url).returncode == 0
    down = wardrobe("ping", "redis", "--timeout", "1", REDIS_URL=f"redis://127.0.0.1:{closed_port()}/0")
    assert down.returncode == 1 and "ping redis:" in down.stderr


def test_ping_redis_needs_redis_url() -> None:
    out = wardrobe("ping", "redis")
    assert out.returncode == 1 and "REDIS_URL is not set" in out.stderr


def test_ping_db(database_url: str, tmp_path: Path) -> None:
    assert wardrobe("ping", "db", DATABASE_URL=database_url, DATA_DIR=tmp_path).returncode == 0
    url = f"postgresql+psycopg://wardrobe@127.0.0.1:{closed_port()}/wardrobe?connect_timeout=1"
    down = wardrobe("ping", "db", DATABASE_URL=url, DATA_DIR=tmp_path)
    assert down.returncode == 1 and "not reachable" in down.stderr


def test_ping_gateway_down() -> None:
    out = wardrobe("ping", "gateway", "--url", f"http://127.0.0.1:{closed_port()}", "--timeout", "1")
    assert out.returncode == 1 and "ping gateway:" in out.stderr


def test_ping_a_worker_answers_only_while_it_runs(redis_url: str, redis_namespace: str, database_url: str,
                                                  model_dir: Path) -> None:
    """The default node is ``<queue>@<hostname>``, as the images start the workers (``-n hedger@%h``)."""
    env = launcher.child_env({"REDIS_URL": redis_url, "REDIS_NAMESPACE": redis_namespace,
                              "DATABASE_URL": database_url, "MODEL_DIR": model_dir})
    node = f"hedger@{socket.gethostname()}"
    with launcher.ProcessGroup() as group:
        launcher.start_worker(group, "hedger", env, node=node)
        launcher.wait_for_workers(redis_url, redis_namespace, [node], group=group)
        up = wardrobe("ping", "hedger", REDIS_URL=redis_url, REDIS_NAMESPACE=redis_namespace)
        assert up.returncode == 0, up.stderr
        assert f"worker {node} answered" in up.stdout
        other = wardrobe("ping", "hedger", "--timeout", "1", REDIS_URL=redis_url,
                         REDIS_NAMESPACE=f"{redis_namespace}-other")
        assert other.returncode == 1, "a worker of another namespace must not count"
        assert wardrobe("ping", "inference", "--timeout", "1", REDIS_URL=redis_url,
                        REDIS_NAMESPACE=redis_namespace).returncode == 1, "no inference worker runs"
        group.stop("hedger")
        gone = wardrobe("ping", "hedger", "--timeout", "1", REDIS_URL=redis_url, REDIS_NAMESPACE=redis_namespace)
        assert gone.returncode == 1 and "did not answer" in gone.stderr


# --- one line per failure, the gateway from WARDROBE_URL ------------------------------------------
def one_line(out: subprocess.CompletedProcess[str]) -> str:
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    return lines[0]


def test_an_unreachable_gateway_is_one_line_naming_the_url_from_wardrobe_url(tmp_path: Path) -> None:
    photo = tmp_path / "p.jpg"
    photo.write_bytes(b"not looked at")
    url = f"http://127.0.0.1:{closed_port()}"
    out = wardrobe("classify", str(photo), WARDROBE_URL=url, WARDROBE_API_KEY="wdr_x_y")
    assert out.returncode == 1 and url in one_line(out) and "cannot reach the gateway" in out.stderr
    flag = f"http://127.0.0.1:{closed_port()}"
    out = wardrobe("jobs", "--url", flag, WARDROBE_URL=url, WARDROBE_API_KEY="wdr_x_y")  # the flag wins
    assert out.returncode == 1 and flag in one_line(out)


def test_a_bad_argument_is_one_line_and_exit_2() -> None:
    out = wardrobe("classify", "--accuracy", "high", "p.jpg")
    assert out.returncode == 2 and "--accuracy" in one_line(out)
    out = wardrobe("keys", "create")  # --name is required
    assert out.returncode == 2 and "--name" in one_line(out)


# --- wardrobe up: one short block, Ctrl-C without a traceback ------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("presses", [1, 2])
def test_up_prints_one_short_block_and_ctrl_c_stops_it_without_a_traceback(tmp_path: Path, presses: int) -> None:
    import signal

    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL", "LOG_LEVEL",
                                                             "WARDROBE_BOOTSTRAP_KEY")}
    env.update(DATA_DIR=str(tmp_path), PYTHONPATH=str(REPO_ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "services.cli", "up", "--port", str(closed_port())], cwd=REPO_ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as in a terminal
    try:
        lines = []
        for line in proc.stdout:  # until the block's last line (or the process ends)
            lines.append(line)
            if line.strip().startswith("Stop: Ctrl-C"):
                break
        output = "".join(lines)
        assert "Wardrobe is up" in output, f"exit {proc.poll()}:\n{output}"  # what it said instead
        block = output[output.index("Wardrobe is up"):].splitlines()
        assert len(block) <= 12 and "/docs" in output and "wdr_" in output, output  # the first start's key
        for _ in range(presses):
            proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, rest
    assert "Traceback" not in output + rest and "stopped" in rest, rest
