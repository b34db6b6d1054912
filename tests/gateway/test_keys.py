"""Keys through the API (operators): create, use, list, revoke; errors from the error table."""

from __future__ import annotations


def test_an_operator_creates_a_key_that_works_and_is_listed_without_its_secret(anonymous, keys):
    r = anonymous.post("/v1/keys", json={"name": "shop", "role": "client", "rate_limit_per_minute": 600},
                       headers=keys.headers("operator"))
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["name"] == "shop" and created["role"] == "client" and created["revoked_at"] is None
    assert created["key"].startswith(f"wdr_{created['id']}_")
    assert anonymous.get("/v1/taxonomy", headers={"Authorization": f"Bearer {created['key']}"}).status_code == 200
    listed = anonymous.get("/v1/keys", headers=keys.headers("operator")).json()
    mine = [k for k in listed if k["id"] == created["id"]]
    assert mine == [{k: v for k, v in created.items() if k != "key"}]
    assert all("key" not in k and "key_hash" not in k for k in listed)


def test_a_revoked_key_is_refused_by_this_gateway_at_once_and_listed_only_on_request(anonymous, keys):
    created = anonymous.post("/v1/keys", json={"name": "gone"}, headers=keys.headers("operator")).json()
    bearer = {"Authorization": f"Bearer {created['key']}"}
    assert anonymous.get("/v1/taxonomy", headers=bearer).status_code == 200  # resolved, now in the key cache
    r = anonymous.delete(f"/v1/keys/{created['id']}", headers=keys.headers("operator"))
    assert r.status_code == 200 and r.json()["revoked_at"] is not None
    assert anonymous.get("/v1/taxonomy", headers=bearer).status_code == 401  # not after AUTH_CACHE_S: now
    again = anonymous.delete(f"/v1/keys/{created['id']}", headers=keys.headers("operator"))
    assert again.status_code == 200 and again.json()["revoked_at"] == r.json()["revoked_at"]  # idempotent
    ids = {k["id"] for k in anonymous.get("/v1/keys", headers=keys.headers("operator")).json()}
    assert created["id"] not in ids
    ids = {k["id"] for k in anonymous.get("/v1/keys", params={"include_revoked": True},
                                          headers=keys.headers("operator")).json()}
    assert created["id"] in ids


def test_revoking_an_unknown_key_is_404(anonymous, keys):
    r = anonymous.delete("/v1/keys/000000000000", headers=keys.headers("operator"))
    assert r.status_code == 404 and r.json()["error"]["code"] == "key_not_found"


def test_a_bad_key_request_is_422_naming_the_field(anonymous, keys):
    # a NUL in the name: PostgreSQL's text refuses it (a 500 found by the schema fuzz)
    for body, field in (({"name": "x", "role": "admin"}, "role"), ({"name": ""}, "name"), ({"name": "\x00"}, "name"),
                        ({"name": "x", "secret": "mine"}, "secret"),
                        ({"name": "x", "rate_limit_per_minute": -1}, "rate_limit_per_minute")):
        r = anonymous.post("/v1/keys", json=body, headers=keys.headers("operator"))
        assert r.status_code == 422 and field in r.json()["error"]["message"], (body, r.text)
