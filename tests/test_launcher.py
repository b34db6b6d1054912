"""The launcher's supervision (what ``wardrobe up`` runs twice a second) with real child processes,
and the embedded Redis's persistence across a kill -9."""

from __future__ import annotations

import logging
import os
import signal
import sys
import time

import pytest
import redis

from services import launcher

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]
CRASHER = [sys.executable, "-c", "raise SystemExit(3)"]


def wait_dead(child: launcher.Child, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while child.alive():
        assert time.monotonic() < deadline, f"{child.name} still alive"
        time.sleep(0.02)


def test_a_killed_child_is_restarted_after_a_backoff_and_the_others_keep_running(tmp_path, caplog):
    with launcher.ProcessGroup(log_dir=tmp_path, backoff_s=0.3) as group:
        worker, other = group.start("worker", SLEEPER, launcher.child_env({})), group.start("other", SLEEPER,
                                                                                               launcher.child_env({}))
        first_pid = worker.popen.pid
        os.kill(first_pid, signal.SIGKILL)
        wait_dead(worker)
        with caplog.at_level(logging.WARNING, logger="services.launcher"):
            assert group.supervise() == []  # noted, due after the backoff
            assert "worker (pid %d) exited with code -9" % first_pid in caplog.text
            assert "restarting it in 0.3 s (restart 1)" in caplog.text
            time.sleep(0.35)
            assert group.supervise() == ["worker"]
        assert worker.alive() and worker.popen.pid != first_pid and worker.restarts == 1
        assert other.alive() and other.restarts == 0


def test_a_crash_loop_backs_off_exponentially_up_to_the_cap():
    with launcher.ProcessGroup(backoff_s=1.0, max_backoff_s=4.0, stable_s=60.0) as group:
        child = group.start("crasher", CRASHER, launcher.child_env({}))
        delays, now = [], time.monotonic()
        for _ in range(5):
            wait_dead(child)
            group.supervise(now)
            delays.append(round(child.restart_at - now, 3))
            now = child.restart_at
            assert group.supervise(now) == ["crasher"]  # due: started again (and crashes again)
        assert delays == [1.0, 2.0, 4.0, 4.0, 4.0]
        assert child.restarts == 5


def test_a_child_that_ran_long_enough_starts_again_from_the_first_backoff():
    with launcher.ProcessGroup(backoff_s=1.0, stable_s=60.0) as group:
        child = group.start("crasher", CRASHER, launcher.child_env({}))
        child.crashes = 4  # it had been crash-looping ...
        wait_dead(child)
        group.supervise(child.started_at + 61.0)  # ... but this run lasted over stable_s
        assert child.restart_at - (child.started_at + 61.0) == pytest.approx(1.0)


def test_embedded_redis_keeps_its_data_across_kill_and_restart(tmp_path):
    with launcher.ProcessGroup(log_dir=tmp_path / "logs") as group:
        url = launcher.start_redis(group, tmp_path / "redis")
        client = redis.Redis.from_url(url)
        client.rpush("queue", *[f"job-{i}" for i in range(100)])
        child = group.get("redis")
        os.kill(child.popen.pid, signal.SIGKILL)  # no time to fsync: the data was written before the reply
        wait_dead(child)
        group.restart("redis")
        launcher.wait_for_redis(url)
        assert client.lrange("queue", 0, -1) == [f"job-{i}".encode() for i in range(100)]
        client.close()


def test_embedded_redis_needs_its_password_which_is_kept_private(tmp_path):
    """Drawn once, kept 0600 under the data dir, given to Redis in a 0600 config file (not on its
    command line, which every local user can read), and needed by every client."""
    import psutil

    with launcher.ProcessGroup(log_dir=tmp_path / "logs") as group:
        url = launcher.start_redis(group, tmp_path / "redis")
        password = (tmp_path / "redis" / "password").read_text().strip()
        assert len(password) >= 40 and f":{password}@127.0.0.1:" in url
        assert (tmp_path / "redis" / "password").stat().st_mode & 0o777 == 0o600
        assert (tmp_path / "redis" / "redis.conf").stat().st_mode & 0o777 == 0o600
        assert password not in " ".join(psutil.Process(group.get("redis").popen.pid).cmdline())
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(host="127.0.0.1", port=port).ping()
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(host="127.0.0.1", port=port, password="guess").ping()
        assert redis.Redis.from_url(url).ping()
        assert password not in launcher.redacted(url)
    with launcher.ProcessGroup(log_dir=tmp_path / "logs") as group:  # a restart keeps the password
        assert launcher.start_redis(group, tmp_path / "redis").startswith(f"redis://:{password}@")


@pytest.mark.integration
def test_no_process_outlives_a_sigkilled_wardrobe_up_by_more_than_5_s(tmp_path, model_dir):
    """`wardrobe up` killed outright (no chance to stop its children): Redis, the gateway, every
    worker and the workers' embedded beat processes are gone within 5 s (issue [G2]: a gateway and
    an inference worker were still running ten minutes later)."""
    import socket
    import subprocess

    import psutil

    env = launcher.child_env({"DATA_DIR": tmp_path / "data", "MODEL_DIR": model_dir, "REDIS_URL": None,
                              "DATABASE_URL": None, "WARDROBE_BOOTSTRAP_KEY": "wdr-test-orphans"})
    wardrobe = [sys.executable, "-m", "services.cli", "up", "--port", str(launcher.free_port()),
                "--log-dir", str(tmp_path / "logs")]
    up = subprocess.Popen(wardrobe, env=env, cwd=launcher.REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
    family: list = []
    try:
        lines = []
        for line in up.stdout:  # until every child answers
            lines.append(line)
            if "Wardrobe is up" in line:
                break
        assert up.poll() is None, "".join(lines)
        family = psutil.Process(up.pid).children(recursive=True)
        names = " ".join(" ".join(p.cmdline()[:6]) for p in family)
        assert len(family) >= 6 and "redis-server" in names and "uvicorn" in names, names
        assert [p for p in family if p.ppid() != up.pid], "no grandchild (the workers' embedded beat processes)"
        # a request in flight (its body still coming): a gateway told to stop gracefully would wait for it
        port = int(wardrobe[wardrobe.index("--port") + 1])
        in_flight = socket.create_connection(("127.0.0.1", port), timeout=30)
        in_flight.sendall(b"POST /v1/classifications/x/feedback HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n"
                          b"Authorization: Bearer wdr-test-orphans\r\nContent-Type: application/json\r\n\r\n{")
        time.sleep(0.5)
        up.kill()
        up.wait(10)
        deadline = time.monotonic() + 5.0
        while (alive := [p for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]) \
                and time.monotonic() < deadline:
            time.sleep(0.1)
        assert alive == [], f"still running 5 s after the launcher died: {[p.cmdline()[:6] for p in alive]}"
    finally:  # whatever this test started, by pid, if it failed half way
        for p in [psutil.Process(up.pid), *family] if up.poll() is None else family:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
