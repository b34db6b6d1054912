from __future__ import annotations

import pytest
import redis
from fastapi.testclient import TestClient

from services.gateway.api.deps import get_queue
from services.gateway.main import create_app
from shared import api_keys, heartbeat
from shared.auth import Role
from shared.db import session_scope
from shared.taxonomy import load_taxonomy


def test_healthz_is_ok(client):
    assert client.get("/healthz").json() == {"status": "ok"}


@pytest.fixture(autouse=True)
def _forget_heartbeats(gateway_settings):
    """The heartbeats written here (in this test's own namespace, see conftest) go afterwards."""
    yield
    client = redis.Redis.from_url(gateway_settings.redis_url)
    client.delete(*(heartbeat.heartbeat_key(gateway_settings.redis_namespace, s) for s in heartbeat.STAGES))
    client.close()


NOW = 1_800_000_000.0  # the gateway's clock in these tests: a heartbeat's age is exact, whatever the machine's speed


@pytest.fixture(autouse=True)
def _fixed_clock(app):
    app.state.clock = lambda: NOW


def _beat(settings, stage: str, node: str, age_s: float = 0.0) -> None:
    client = redis.Redis.from_url(settings.redis_url)
    heartbeat.beat(client, settings.redis_namespace, stage, node, now=NOW - age_s)
    client.close()


def test_readyz_is_ready_with_redis_database_model_and_a_worker_per_stage(client, gateway_settings):
    _beat(gateway_settings, "inference", "inference-1@host")
    _beat(gateway_settings, "hedger", "hedger-1@host")
    r = client.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json()["checks"] == {"redis": "ok", "database": "ok", "model": "ok (tiny-1)",
                                  "stage:inference": "ok (1 worker)", "stage:hedger": "ok (1 worker)",
                                  "stage:sweeper": "no live worker", "stage:trainer": "no live worker"}


def test_readyz_stays_ready_while_a_stage_has_no_live_worker(client, gateway_settings):
    """Stage liveness is reported, not required (READY_STAGES empty: tests/gateway/test_readiness.py)."""
    _beat(gateway_settings, "inference", "inference-1@host")
    _beat(gateway_settings, "hedger", "hedger-1@host", age_s=heartbeat.HEARTBEAT_TTL_S + 1)  # killed: aged out
    r = client.get("/readyz")
    assert r.status_code == 200 and r.json()["status"] == "ready"
    assert r.json()["checks"]["stage:hedger"] == "no live worker"
    _beat(gateway_settings, "hedger", "hedger-2@host")  # its replacement beats
    assert client.get("/readyz").status_code == 200


def test_readyz_is_503_without_a_model_and_post_is_refused(gateway_settings, fake_queue, tmp_path):
    settings = gateway_settings.model_copy(update={"model_dir": tmp_path / "empty"})
    app = create_app(settings)
    app.dependency_overrides[get_queue] = lambda: fake_queue
    with TestClient(app) as client:
        r = client.get("/readyz")
        assert r.status_code == 503 and r.json()["checks"]["model"] == "no active model version"
        from tests.factories import jpeg_bytes

        with session_scope(settings.resolved_database_url) as session:
            key = api_keys.create_key(session, "c", Role.client).token
        r = client.post("/v1/classifications", files={"photo": ("a.jpg", jpeg_bytes())},
                        headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 503 and r.json()["error"]["code"] == "no_active_model"
    assert fake_queue.enqueued == []


def test_taxonomy_lists_every_node_with_display_and_icon(client):
    body = client.get("/v1/taxonomy").json()
    tax = load_taxonomy()
    assert body["leaves"] == tax.leaves and len(body["nodes"]) == len(tax.node_names)
    assert all(n["display"] and n["icon"] for n in body["nodes"])


def test_models_lists_the_active_version(client, keys):
    r = client.get("/v1/models", headers=keys.headers("operator"))
    assert [(m["version"], m["active"]) for m in r.json()] == [("tiny-1", True)]


def test_openapi_documents_the_classification_routes(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/classifications", "/v1/classifications/{job_id}", "/v1/taxonomy", "/readyz"} <= set(paths)


def test_metrics_are_exposed_to_operators_only(client, keys):
    assert client.get("/metrics").status_code == 403  # the client key
    assert client.get("/metrics", headers={"Authorization": ""}).status_code == 401
    r = client.get("/metrics", headers=keys.headers("operator"))
    assert r.status_code == 200 and "wardrobe_classifications_total" in r.text
    assert 'wardrobe_auth_refusals_total{reason="forbidden"}' in r.text
    assert 'wardrobe_auth_refusals_total{reason="no_key"}' in r.text


def test_a_database_that_refuses_connections_is_503_not_500(gateway_settings, fake_queue, keys):
    """E.g. PostgreSQL's "too many clients": the caller is told to retry, the gateway lives on."""
    from sqlalchemy.exc import OperationalError

    class Refusing:
        async def run(self, fn, *args):  # noqa: ANN001, ANN002, ANN202
            raise OperationalError("SELECT 1", {}, Exception("FATAL: sorry, too many clients already"))

    app = create_app(gateway_settings)
    app.dependency_overrides[get_queue] = lambda: fake_queue
    with TestClient(app) as client:
        app.state.database = Refusing()  # what the lifespan built, swapped once started
        r = client.get("/v1/taxonomy", headers=keys.headers("client"))
        assert r.status_code == 503 and r.json()["error"]["code"] == "database_unavailable"
        assert r.headers["retry-after"] == "1"
