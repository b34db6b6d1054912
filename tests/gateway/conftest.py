"""The gateway app under TestClient, with a real Redis and database but a fake job queue:
route logic only (the real queue and workers are exercised in tests/e2e)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from services.gateway.api.deps import get_queue
from services.gateway.config import GatewaySettings
from services.gateway.errors import QueueUnavailable
from services.gateway.main import create_app
from shared import api_keys
from shared.auth import Role
from shared.db import session_scope


class FakeQueue:
    def __init__(self) -> None:
        self.enqueued: list[str] = []
        self.training_jobs: list[str] = []
        self.down = False

    async def enqueue_classification(self, job_id: str) -> None:
        if self.down:
            raise QueueUnavailable("the job queue is unavailable: connection refused")
        self.enqueued.append(job_id)

    async def enqueue_training_job(self, job_id: str) -> None:
        if self.down:
            raise QueueUnavailable("the job queue is unavailable: connection refused")
        self.training_jobs.append(job_id)


@pytest.fixture
def gateway_settings(tmp_path: Path, redis_url: str, redis_namespace: str, database_url: str,
                     model_dir: Path) -> GatewaySettings:
    # a namespace per test: the session's real workers (tests/e2e) write heartbeats into the shared
    # one, and /readyz here must see no worker unless the test writes a heartbeat itself
    return GatewaySettings(
        redis_url=redis_url, redis_namespace=f"{redis_namespace}-gw-{uuid.uuid4().hex[:8]}", database_url=database_url,
        data_dir=tmp_path / "data", model_dir=model_dir, model_store=str(tmp_path / "model-store"),
        max_photo_bytes=300_000,
    )


@pytest.fixture
def fake_queue() -> FakeQueue:
    return FakeQueue()


@dataclass
class Keys:
    """One API key per role, plus a second client's: ``headers(role)`` to send one."""

    tokens: dict[str, str]

    def headers(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}


@pytest.fixture
def app(gateway_settings: GatewaySettings, fake_queue: FakeQueue) -> FastAPI:
    app = create_app(gateway_settings)
    app.dependency_overrides[get_queue] = lambda: fake_queue
    return app


@pytest.fixture
def anonymous(app: FastAPI) -> Iterator[TestClient]:
    """The gateway (started: migrated, a model active), sending no key."""
    with TestClient(app) as c:
        yield c


@pytest.fixture
def keys(anonymous: TestClient, gateway_settings: GatewaySettings) -> Keys:
    with session_scope(gateway_settings.resolved_database_url) as session:
        return Keys({who: api_keys.create_key(session, who, Role(who.rstrip("2"))).token
                     for who in ("client", "client2", "trainer", "operator")})


@pytest.fixture
def client(anonymous: TestClient, keys: Keys) -> TestClient:
    """The gateway as a client-role key sees it (its key sent with every request)."""
    anonymous.headers.update(keys.headers("client"))
    return anonymous
