"""The gateway's caches against real processes: the session's gateway (default AUTH_CACHE_S and
JOB_CACHE_SIZE) next to a second gateway on the same database and Redis with both caches off.
Whatever one answers from memory, the other answers from the database, byte for byte; a revoked
key is refused at once without the key cache and once AUTH_CACHE_S has passed with it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services import launcher
from services.gateway.config import GatewaySettings
from shared import api_keys
from shared.auth import Role
from shared.db import session_scope
from tests.factories import jpeg_bytes

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def uncached(system, model_dir: Path) -> Iterator[str]:
    """A second gateway on the system's database, Redis and photos, with both caches off."""
    data_dir = system.photo_dir.parent
    env = launcher.child_env({"REDIS_URL": system.redis_url, "DATABASE_URL": system.database_url,
                              "DATA_DIR": data_dir, "MODEL_DIR": model_dir, "MODEL_STORE": data_dir / "model-store",
                              "REDIS_NAMESPACE": system.namespace, "MIGRATE_ON_STARTUP": "false",
                              "AUTH_CACHE_S": "0", "JOB_CACHE_SIZE": "0"})
    with launcher.ProcessGroup(log_dir=data_dir / "logs-uncached") as group:
        yield launcher.start_gateway(group, env, launcher.free_port())


def _key(system, name: str) -> str:  # noqa: ANN001
    with session_scope(system.database_url) as session:
        return api_keys.create_key(session, name, Role.client).token


def _get(url: str, path: str, token: str, **params) -> httpx.Response:
    return httpx.get(f"{url}{path}", params=params, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def test_answers_from_memory_are_the_answers_from_the_database(system, uncached):
    owner, other = _key(system, "cache-owner"), _key(system, "cache-other")
    r = httpx.post(f"{system.url}/v1/classifications", params={"wait": 20},
                   files={"photo": ("p.jpg", jpeg_bytes(seed=41))}, headers={"Authorization": f"Bearer {owner}"},
                   timeout=30)
    assert r.status_code == 200 and r.json()["status"] == "done", r.text
    path = f"/v1/classifications/{r.json()['id']}"
    for params in ({}, {"accuracy": 0.5}, {"accuracy": 0.95}, {"accuracy": 0.999}):
        from_db = _get(uncached, path, owner, **params)
        first, again = _get(system.url, path, owner, **params), _get(system.url, path, owner, **params)
        assert from_db.status_code == 200 and from_db.json()["rehedged"] is ("accuracy" in params)
        assert first.content == again.content == from_db.content, params
        for url in (system.url, uncached):  # another client's job, remembered or not, is no job
            refused = _get(url, path, other, **params)
            assert refused.status_code == 404 and refused.json()["error"]["code"] == "job_not_found"


def test_a_revoked_key_is_refused_at_once_without_the_cache_and_after_auth_cache_s_with_it(system, uncached):
    token = _key(system, "soon-revoked")
    for url in (system.url, uncached):
        assert _get(url, "/v1/taxonomy", token).status_code == 200  # the system's gateway remembers it now
    with session_scope(system.database_url) as session:
        api_keys.revoke(session, api_keys.resolve(session, token).id)
    assert _get(uncached, "/v1/taxonomy", token).status_code == 401
    time.sleep(GatewaySettings.model_fields["auth_cache_s"].default + 0.1)  # the system runs with the default
    r = _get(system.url, "/v1/taxonomy", token)
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthenticated"
