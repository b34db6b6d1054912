"""Route logic of /v1/models: list, activate, roll back, history."""

from __future__ import annotations

import shutil

import pytest

from shared import registry
from shared.db import session_scope
from shared.model_store import LocalModelStore
from tests.factories import make_tiny_model


def _publish(settings, tmp_path, version: str, seed: int):  # noqa: ANN001
    src = make_tiny_model(tmp_path / "src", version, seed=seed)
    with session_scope(settings.resolved_database_url) as session:
        registry.publish(session, LocalModelStore(settings.resolved_model_store), src)



@pytest.fixture
def client(anonymous, keys):  # noqa: ANN001 - these routes need the operator role
    anonymous.headers.update(keys.headers("operator"))
    return anonymous


def test_activate_and_rollback_walk_the_history_back(client, gateway_settings, tmp_path):
    _publish(gateway_settings, tmp_path, "m-2", 2)
    _publish(gateway_settings, tmp_path, "m-3", 3)
    assert client.get("/v1/models/history").json()[0]["kind"] == "bootstrap"
    for version in ("m-2", "m-3"):
        r = client.post(f"/v1/models/{version}/activate")
        assert r.status_code == 200 and r.json()["active"] and r.json()["version"] == version
    active = lambda: [m["version"] for m in client.get("/v1/models").json() if m["active"]]  # noqa: E731
    assert active() == ["m-3"]
    assert client.post("/v1/models/rollback").json()["version"] == "m-2"
    assert client.post("/v1/models/rollback").json()["version"] == "tiny-1"  # back again, not a toggle
    r = client.post("/v1/models/rollback")
    assert r.status_code == 409 and r.json()["error"]["code"] == "nothing_to_roll_back"
    assert active() == ["tiny-1"]
    history = client.get("/v1/models/history").json()
    assert [(h["kind"], h["version"], h["previous_version"]) for h in history] == [
        ("rollback", "tiny-1", "m-2"), ("rollback", "m-2", "m-3"), ("activate", "m-3", "m-2"),
        ("activate", "m-2", "tiny-1"), ("bootstrap", "tiny-1", None)]


def test_activating_an_unknown_version_is_404_naming_it(client):
    r = client.post("/v1/models/no-such-version/activate")
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    assert "'no-such-version'" in r.json()["error"]["message"]


def test_activating_a_version_missing_from_the_store_is_409(client, gateway_settings, tmp_path):
    _publish(gateway_settings, tmp_path, "m-gone", 4)
    store = LocalModelStore(gateway_settings.resolved_model_store)
    shutil.rmtree(store.fetch("m-gone"))
    r = client.post("/v1/models/m-gone/activate")
    assert r.status_code == 409 and r.json()["error"]["code"] == "model_unavailable"


def test_models_carry_their_store_key(client):
    (model,) = client.get("/v1/models").json()
    assert model["key"] == "tiny-1" and model["active"]


def test_model_management_needs_the_operator_role(anonymous, keys):
    for path in ("/v1/models/tiny-1/activate", "/v1/models/rollback"):
        r = anonymous.post(path, headers=keys.headers("trainer"))
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
