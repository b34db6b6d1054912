"""The gateway's in-process caches (services.gateway.keycache, services.gateway.jobcache): what
they remember, for how long, and that an answer from memory is the answer from the database.
Time is moved on a fake clock, never slept; the revocation delay against real processes is in
tests/e2e/test_caches.py."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient

from services.gateway.api.deps import get_queue
from services.gateway.lru import LRU
from services.gateway.main import create_app
from shared import api_keys
from shared.auth import Role
from shared.db import session_scope
from shared.model_card import ModelCard
from tests.factories import jpeg_bytes
from tests.gateway.test_classifications import _done_job


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _revoke(settings, token: str) -> None:  # noqa: ANN001
    with session_scope(settings.resolved_database_url) as session:
        caller = api_keys.resolve(session, token)
        api_keys.revoke(session, caller.id)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def gateway(gateway_settings, fake_queue, request):  # noqa: ANN001
    """A started gateway with the settings overridden by ``@pytest.mark.parametrize('gateway', [{...}],
    indirect=True)``; its key cache runs on a fake clock (``client.clock``)."""
    overrides = getattr(request, "param", {})
    app = create_app(gateway_settings.model_copy(update=overrides))
    app.dependency_overrides[get_queue] = lambda: fake_queue
    with TestClient(app) as client:
        client.clock = app.state.keys.cache.clock = Clock()
        yield client


# --- LRU -----------------------------------------------------------------------------------------
def test_lru_keeps_at_most_its_size_least_recently_used_out_first():
    lru: LRU[str, int] = LRU(2)
    lru.put("a", 1)
    lru.put("b", 2)
    assert lru.get("a") == 1  # now "b" is the least recently used
    lru.put("c", 3)
    assert (lru.get("a"), lru.get("b"), lru.get("c"), len(lru)) == (1, None, 3, 2)


def test_lru_entries_expire_ttl_after_they_were_stored_whatever_the_reads():
    clock = Clock()
    lru: LRU[str, int] = LRU(10, ttl_s=5.0, clock=clock)
    lru.put("a", 1)
    clock.now += 4.9
    assert lru.get("a") == 1  # a read does not extend it
    clock.now += 0.1
    assert lru.get("a") is None and len(lru) == 0


@pytest.mark.parametrize("size, ttl", [(0, None), (10, 0.0)])
def test_an_lru_of_size_0_or_ttl_0_keeps_nothing(size, ttl):
    lru: LRU[str, int] = LRU(size, ttl_s=ttl)
    lru.put("a", 1)
    assert lru.get("a") is None and len(lru) == 0


# --- API keys ------------------------------------------------------------------------------------
def test_a_revoked_key_works_until_the_cache_time_has_passed_then_is_refused(gateway, keys, gateway_settings):
    token = keys.tokens["client"]
    assert gateway.get("/v1/taxonomy", headers=_bearer(token)).status_code == 200
    _revoke(gateway_settings, token)
    gateway.clock.now += gateway_settings.auth_cache_s - 0.01
    assert gateway.get("/v1/taxonomy", headers=_bearer(token)).status_code == 200  # the documented delay
    gateway.clock.now += 0.01
    r = gateway.get("/v1/taxonomy", headers=_bearer(token))
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthenticated"


@pytest.mark.parametrize("gateway", [{"auth_cache_s": 0.0}], indirect=True)
def test_with_auth_cache_0_a_revoked_key_is_refused_from_the_next_request_on(gateway, keys, gateway_settings):
    token = keys.tokens["client"]
    assert gateway.get("/v1/taxonomy", headers=_bearer(token)).status_code == 200
    _revoke(gateway_settings, token)
    assert gateway.get("/v1/taxonomy", headers=_bearer(token)).status_code == 401
    assert len(gateway.app.state.keys.cache) == 0


def test_unknown_and_revoked_keys_are_not_remembered(gateway, keys, gateway_settings):
    with session_scope(gateway_settings.resolved_database_url) as session:
        gone = api_keys.create_key(session, "gone", Role.client)
        api_keys.revoke(session, gone.row.id)
    for token in [f"wdr_forged_{i:04d}" for i in range(50)] + [gone.token] * 3:
        assert gateway.get("/v1/taxonomy", headers=_bearer(token)).status_code == 401
    assert len(gateway.app.state.keys.cache) == 0
    assert gateway.get("/v1/taxonomy", headers=keys.headers("client")).status_code == 200
    assert len(gateway.app.state.keys.cache) == 1


# --- finished jobs -------------------------------------------------------------------------------
def _finished_job(gateway, keys, settings, who: str = "client") -> str:  # noqa: ANN001
    r = gateway.post("/v1/classifications", files={"photo": ("a.jpg", jpeg_bytes())}, headers=keys.headers(who))
    job_id = r.json()["id"]
    classes = ModelCard.load(settings.model_dir / "tiny-1").classes
    probs = [0.0] * len(classes)
    probs[0], probs[1] = 0.55, 0.45
    _done_job(settings, job_id, probs)
    return job_id


@pytest.mark.parametrize("first", ["client", "operator", "client2"])
def test_a_cached_job_is_never_served_to_another_client(gateway, keys, gateway_settings, first):
    job_id = _finished_job(gateway, keys, gateway_settings)
    url = f"/v1/classifications/{job_id}"
    gateway.get(url, headers=keys.headers(first))  # whoever asks first, the job is in memory afterwards
    assert len(gateway.app.state.jobs.cache) == 1
    for params in ({}, {"accuracy": 0.95}):
        other = gateway.get(url, params=params, headers=keys.headers("client2"))
        assert other.status_code == 404 and other.json()["error"]["code"] == "job_not_found"
        assert gateway.get(url, params=params, headers=keys.headers("trainer")).status_code == 404
        assert gateway.get(url, params=params, headers=keys.headers("client")).status_code == 200
        assert gateway.get(url, params=params, headers=keys.headers("operator")).status_code == 200


class Refusing:
    """A database that answers nothing: what is served meanwhile came from memory."""

    async def run(self, fn, *args):  # noqa: ANN001, ANN002, ANN202
        raise AssertionError(f"the database was asked: {fn.__name__}")


def test_a_rehedge_from_memory_is_exactly_the_rehedge_from_the_database(gateway, keys, gateway_settings):
    job_id = _finished_job(gateway, keys, gateway_settings)
    url = f"/v1/classifications/{job_id}"
    targets = ({}, {"accuracy": 0.5}, {"accuracy": 0.95}, {"accuracy": 0.999}, {"wait": 5, "accuracy": 0.8})
    first = {}
    for params in targets:  # the first read fills the cache from the database
        gateway.app.state.jobs.cache.pop(uuid.UUID(job_id))
        r = gateway.get(url, params=params, headers=keys.headers("client"))
        assert r.status_code == 200
        first[str(params)] = r.content
    gateway.app.state.database = Refusing()  # from here on, nothing can come from the database
    for params in targets:
        r = gateway.get(url, params=params, headers=keys.headers("client"))
        assert r.status_code == 200 and r.content == first[str(params)], params
    assert r.json()["rehedged"] is True and r.json()["accuracy_target"] == 0.8


def test_an_unfinished_job_is_read_from_the_database_every_time(gateway, keys, gateway_settings):
    r = gateway.post("/v1/classifications", files={"photo": ("a.jpg", jpeg_bytes())}, headers=keys.headers("client"))
    url = f"/v1/classifications/{r.json()['id']}"
    assert gateway.get(url, headers=keys.headers("client")).json()["status"] == "pending"
    assert len(gateway.app.state.jobs.cache) == 0
    classes = ModelCard.load(gateway_settings.model_dir / "tiny-1").classes
    _done_job(gateway_settings, r.json()["id"], [1.0 / len(classes)] * len(classes))
    assert gateway.get(url, headers=keys.headers("client")).json()["status"] == "done"
    assert len(gateway.app.state.jobs.cache) == 1


@pytest.mark.parametrize("gateway", [{"job_cache_size": 0}], indirect=True)
def test_with_job_cache_size_0_every_read_asks_the_database(gateway, keys, gateway_settings):
    job_id = _finished_job(gateway, keys, gateway_settings)
    for _ in range(2):
        r = gateway.get(f"/v1/classifications/{job_id}", params={"accuracy": 0.95}, headers=keys.headers("client"))
        assert r.status_code == 200 and r.json()["rehedged"] is True
    assert len(gateway.app.state.jobs.cache) == 0
    gateway.app.state.database = Refusing()
    with pytest.raises(AssertionError, match="the database was asked"):
        gateway.get(f"/v1/classifications/{job_id}", headers=keys.headers("client"))
