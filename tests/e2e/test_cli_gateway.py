"""The `wardrobe` commands against a running gateway: keys through /v1/keys, a refused key in one
line, the gateway and key taken from WARDROBE_URL and WARDROBE_API_KEY."""

from __future__ import annotations

import json

import pytest

from tests.e2e.conftest import OPERATOR_KEY
from tests.test_cli import one_line, wardrobe

pytestmark = pytest.mark.integration


def test_an_operator_creates_lists_and_revokes_a_key_through_the_gateway(system, tmp_path):
    env = {"WARDROBE_URL": system.url, "WARDROBE_API_KEY": OPERATOR_KEY, "DATA_DIR": tmp_path / "not-the-system"}
    out = wardrobe("keys", "create", "--name", "shop", "--json", **env)
    assert out.returncode == 0, out.stderr
    created = json.loads(out.stdout)
    assert created["role"] == "client" and created["key"].startswith(f"wdr_{created['id']}_")
    assert not (tmp_path / "not-the-system").exists()  # it went through the gateway, not a local database
    out = wardrobe("keys", "list", "--json", **env)
    assert created["id"] in {k["id"] for k in json.loads(out.stdout)}
    out = wardrobe("keys", "revoke", created["id"], **env)
    assert out.returncode == 0 and created["id"] in out.stdout, out.stderr
    assert system.http.get("/v1/taxonomy", headers={"Authorization": f"Bearer {created['key']}"}).status_code == 401
    out = wardrobe("keys", "revoke", "000000000000", **env)
    assert out.returncode == 1 and "key_not_found" in one_line(out)


def test_a_refused_key_is_one_line_and_exit_1(system, tmp_path):
    photo = tmp_path / "p.jpg"
    photo.write_bytes(b"\xff\xd8 not checked before the key")
    for argv in (("classify", str(photo)), ("models",), ("keys", "list")):
        out = wardrobe(*argv, WARDROBE_URL=system.url, WARDROBE_API_KEY="wdr_forged_key")
        assert out.returncode == 1 and "401" in one_line(out), argv
