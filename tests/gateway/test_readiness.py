"""Readiness per process: the gateway is ready when it can accept and answer; a stage without a live
worker is reported, and refuses uploads only when the operator asks for that (REFUSE_WITHOUT_WORKERS).

Heartbeats are written with explicit times (an hour ahead: live whatever the clock says; none: dead),
so nothing here depends on how quickly the test runs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
import redis
import redis.asyncio as aioredis
from fastapi.testclient import TestClient

from services.gateway import liveness
from services.gateway.api.deps import get_queue
from services.gateway.config import GatewaySettings
from services.gateway.errors import NoLiveWorker
from services.gateway.main import create_app
from shared import api_keys, heartbeat
from shared.auth import Role
from shared.db import session_scope
from tests.factories import jpeg_bytes

FUTURE = time.time() + 3600


def beat(settings: GatewaySettings, stage: str, at: float = FUTURE) -> None:
    client = redis.Redis.from_url(settings.redis_url)
    heartbeat.beat(client, settings.redis_namespace, stage, f"{stage}-1@host", now=at)
    client.close()


@pytest.fixture
def gateway(gateway_settings, fake_queue) -> Iterator:
    """``start(**settings)`` -> (client with a client-role key, settings)."""
    clients = []

    def start(**update) -> tuple[TestClient, GatewaySettings]:
        settings = gateway_settings.model_copy(update=update)
        app = create_app(settings)
        app.dependency_overrides[get_queue] = lambda: fake_queue
        client = TestClient(app).__enter__()
        clients.append(client)
        with session_scope(settings.resolved_database_url) as session:
            client.headers["Authorization"] = f"Bearer {api_keys.create_key(session, 'c', Role.client).token}"
        return client, settings

    yield start
    for client in clients:
        client.__exit__(None, None, None)
    r = redis.Redis.from_url(gateway_settings.redis_url)
    r.delete(*(heartbeat.heartbeat_key(gateway_settings.redis_namespace, s) for s in heartbeat.STAGES))
    r.close()


def upload(client: TestClient):
    return client.post("/v1/classifications", files={"photo": ("a.jpg", jpeg_bytes(seed=5), "image/jpeg")})


def test_ready_with_no_worker_at_all_and_an_upload_is_accepted_and_waits(gateway, fake_queue):
    client, _ = gateway()
    r = client.get("/readyz")
    assert r.status_code == 200 and r.json()["status"] == "ready", r.text
    assert r.json()["checks"]["stage:inference"] == "no live worker"  # still reported
    r = upload(client)
    assert r.status_code == 202 and r.json()["status"] == "pending", r.text
    assert fake_queue.enqueued == [r.json()["id"]]  # queued for whichever worker comes


def test_ready_stages_make_a_stage_required_again(gateway):
    client, settings = gateway(ready_stages=["inference", "hedger"])
    beat(settings, "inference")
    r = client.get("/readyz")
    assert r.status_code == 503 and r.json()["checks"]["stage:hedger"] == "no live worker"
    beat(settings, "hedger")
    assert client.get("/readyz").status_code == 200


def test_refuse_without_workers_answers_503_and_stores_nothing(gateway, fake_queue):
    client, settings = gateway(refuse_without_workers=True)
    beat(settings, "inference")  # the hedger is missing
    r = upload(client)
    assert r.status_code == 503 and r.headers["retry-after"] == "10"
    assert r.json()["error"]["code"] == "no_live_worker" and "hedger" in r.json()["error"]["message"]
    assert fake_queue.enqueued == []
    assert client.post("/v1/classifications", headers={"Authorization": ""}).status_code == 401  # key first
    beat(settings, "hedger")
    r = upload(client)
    assert r.status_code == 202, r.text
    assert fake_queue.enqueued == [r.json()["id"]]


def test_live_counts_follow_an_injected_clock(gateway_settings):
    t = 1_000_000.0
    beat(gateway_settings, "inference", at=t)

    async def counts(now: float) -> dict[str, int]:
        client = aioredis.Redis.from_url(gateway_settings.redis_url)
        try:
            return await liveness.live_counts(client, gateway_settings.redis_namespace, now=now)
        finally:
            await client.aclose()

    assert asyncio.run(counts(t + heartbeat.HEARTBEAT_TTL_S - 1))["inference"] == 1
    assert asyncio.run(counts(t + heartbeat.HEARTBEAT_TTL_S + 1))["inference"] == 0

    async def require(now: float) -> None:
        client = aioredis.Redis.from_url(gateway_settings.redis_url)
        try:
            await liveness.require_pipeline(client, gateway_settings.redis_namespace, now=now)
        finally:
            await client.aclose()

    with pytest.raises(NoLiveWorker, match="hedger"):
        asyncio.run(require(t))
    r = redis.Redis.from_url(gateway_settings.redis_url)
    r.delete(*(heartbeat.heartbeat_key(gateway_settings.redis_namespace, s) for s in heartbeat.STAGES))
    r.close()
