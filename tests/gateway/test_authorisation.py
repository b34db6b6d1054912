"""Who may do what: every route × every kind of caller × own or another client's resource.

``MATRIX`` is the whole policy in one table. A route the table does not name fails
``test_the_matrix_names_every_route``: a new route cannot ship without deciding who may call it.
"""

from __future__ import annotations

import pytest

from shared import api_keys
from shared.db import session_scope
from tests.factories import jpeg_bytes

CALLERS = ("nobody", "bad_key", "revoked", "client", "trainer", "operator")

# Every route of the served OpenAPI schema (the API docs pages themselves are public).
# (method, route path, whose resource) -> expected status per caller. "own" is a classification
# the caller made itself; "other" one made by a different client key. A key that may not see a
# classification gets 404 (as if it did not exist), a role that may not call a route 403. Where
# the role may, the answer is whatever the resource's state gives (409: not finished yet, nothing
# to roll back), which shows the request got past the access check.
_KEYLESS = dict(nobody=401, bad_key=401, revoked=401)
_ANY_KEY = dict(**_KEYLESS, client=200, trainer=200, operator=200)
_TRAINER = dict(**_KEYLESS, client=403, trainer=200, operator=200)
_OPERATOR = dict(**_KEYLESS, client=403, trainer=403, operator=200)
MATRIX: dict[tuple[str, str, str], dict[str, int]] = {
    ("POST", "/v1/classifications", "-"): {**_ANY_KEY, "client": 202, "trainer": 202, "operator": 202},
    ("GET", "/v1/classifications/{job_id}", "own"): _ANY_KEY,
    ("GET", "/v1/classifications/{job_id}", "other"): {**_ANY_KEY, "client": 404, "trainer": 404},
    ("POST", "/v1/classifications/{classification_id}/feedback", "own"):
        {**_ANY_KEY, "client": 409, "trainer": 409, "operator": 409},
    ("POST", "/v1/classifications/{classification_id}/feedback", "other"):
        {**_ANY_KEY, "client": 404, "trainer": 404, "operator": 409},
    ("GET", "/v1/classifications/{classification_id}/feedback", "own"): _ANY_KEY,
    ("GET", "/v1/classifications/{classification_id}/feedback", "other"): {**_ANY_KEY, "client": 404, "trainer": 404},
    ("PUT", "/v1/classifications/{job_id}/keep", "own"): _ANY_KEY,
    ("PUT", "/v1/classifications/{job_id}/keep", "other"): {**_ANY_KEY, "client": 404, "trainer": 404},
    ("GET", "/v1/classifications/{job_id}/thumbnail", "own"): _ANY_KEY,
    ("GET", "/v1/classifications/{job_id}/thumbnail", "other"): {**_ANY_KEY, "client": 404, "trainer": 404},
    ("DELETE", "/v1/classifications/{job_id}", "own"): {**_ANY_KEY, "client": 204, "trainer": 204, "operator": 204},
    ("DELETE", "/v1/classifications/{job_id}", "other"): {**_ANY_KEY, "client": 404, "trainer": 404, "operator": 204},
    ("GET", "/v1/wardrobe", "-"): _ANY_KEY,
    # browser sessions: starting one needs no key (it makes one); reading one needs its cookie, not a key
    ("POST", "/v1/session", "-"): dict(nobody=201, bad_key=201, revoked=201, client=201, trainer=201, operator=201),
    ("GET", "/v1/session", "-"): dict(nobody=401, bad_key=401, revoked=401, client=401, trainer=401, operator=401),
    ("GET", "/v1/taxonomy", "-"): _ANY_KEY,
    ("POST", "/v1/training-jobs", "-"): {**_TRAINER, "trainer": 202, "operator": 202},
    ("GET", "/v1/training-jobs", "-"): _TRAINER,
    # "own": a job the caller asked for itself; "other": one another trainer key asked for
    ("GET", "/v1/training-jobs/{job_id}", "own"): _TRAINER,
    ("GET", "/v1/training-jobs/{job_id}", "other"): {**_TRAINER, "trainer": 404},
    ("POST", "/v1/training-jobs/{job_id}/cancel", "own"): _TRAINER,
    ("POST", "/v1/training-jobs/{job_id}/cancel", "other"): {**_TRAINER, "trainer": 404},
    ("GET", "/v1/models", "-"): _OPERATOR,
    ("GET", "/v1/models/history", "-"): _OPERATOR,
    ("POST", "/v1/models/rollback", "-"): {**_OPERATOR, "operator": 409},
    ("POST", "/v1/models/{version}/activate", "-"): _OPERATOR,
    ("POST", "/v1/keys", "-"): {**_OPERATOR, "operator": 201},
    ("GET", "/v1/keys", "-"): _OPERATOR,
    ("DELETE", "/v1/keys/{key_id}", "-"): _OPERATOR,
    ("GET", "/metrics", "-"): _OPERATOR,
    ("GET", "/healthz", "-"): dict(nobody=200, bad_key=200, revoked=200, client=200, trainer=200, operator=200),
    # readiness depends on whether workers of this test session's namespace are up (200 or 503);
    # what matters here: the same answer for every caller, no key needed (see PUBLIC_PROBES)
    ("GET", "/readyz", "-"): dict(nobody=0, bad_key=0, revoked=0, client=0, trainer=0, operator=0),
}
# Options of POST /v1/training-jobs × caller: what could serve a candidate without the gate's
# judgement (bypassing it with promote=always, loosening it with a tolerance) is the operator's
# alone; the gate's default, and keeping a candidate out with never, stay every trainer's.
_JOB_OPTION_OPERATOR = {**_TRAINER, "trainer": 403, "operator": 202}
_JOB_OPTION_ANY_TRAINER = {**_TRAINER, "trainer": 202, "operator": 202}
JOB_OPTIONS: dict[str, tuple[dict, dict[str, int]]] = {
    "quick": ({"mode": "quick"}, _JOB_OPTION_ANY_TRAINER),
    "promote_gate": ({"mode": "quick", "promote": "gate"}, _JOB_OPTION_ANY_TRAINER),
    "named_version": ({"mode": "quick", "version": "mine-1"}, _JOB_OPTION_ANY_TRAINER),
    "promote_always": ({"mode": "recalibrate", "promote": "always"}, _JOB_OPTION_OPERATOR),
    "promote_never": ({"mode": "quick", "promote": "never"}, _JOB_OPTION_ANY_TRAINER),
    "tolerance_large": ({"mode": "recalibrate", "tolerance": 0.5}, _JOB_OPTION_OPERATOR),
    "tolerance_zero": ({"mode": "full", "tolerance": 0.0}, _JOB_OPTION_OPERATOR),
    "always_and_tolerance": ({"mode": "quick", "promote": "always", "tolerance": 0.3}, _JOB_OPTION_OPERATOR),
}
BODIES = {"/v1/classifications/{classification_id}/feedback": {"correct": True}, "/v1/training-jobs": {"mode": "quick"},
          "/v1/classifications/{job_id}/keep": {"keep": True}, "/v1/keys": {"name": "matrix", "role": "client"}}
HEADERS = {"/v1/session": {"X-CSRF-Token": "new"}}


@pytest.fixture
def tokens(anonymous, keys, gateway_settings) -> dict[str, str | None]:
    with session_scope(gateway_settings.resolved_database_url) as session:
        revoked = api_keys.create_key(session, "gone", api_keys.Role.operator)
        api_keys.revoke(session, revoked.row.id)
        trainer2 = api_keys.create_key(session, "trainer2", api_keys.Role.trainer)
    return {"nobody": None, "bad_key": "wdr_nope_0000", "revoked": revoked.token, "trainer2": trainer2.token,
            **keys.tokens}


def _headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {"Authorization": ""}


def _classification(anonymous, token: str) -> str:
    r = anonymous.post("/v1/classifications", files={"photo": ("a.jpg", jpeg_bytes())}, headers=_headers(token))
    assert r.status_code == 202, r.text
    return r.json()["id"]


def test_the_matrix_names_every_route(app):
    served = {(method.upper(), path) for path, ops in app.openapi()["paths"].items() for method in ops}
    named = {(m, p) for m, p, _ in MATRIX}
    assert served == named, "routes without a row in MATRIX (or rows for routes that are gone)"


def _training_job(anonymous, token: str) -> str:
    r = anonymous.post("/v1/training-jobs", json={"mode": "quick"}, headers=_headers(token))
    assert r.status_code == 202, r.text
    return r.json()["id"]


def _api_key(gateway_settings) -> str:
    with session_scope(gateway_settings.resolved_database_url) as session:
        return api_keys.create_key(session, "victim", api_keys.Role.client).row.id


@pytest.mark.parametrize("route", list(MATRIX), ids=lambda r: f"{r[0]} {r[1]} {r[2]}")
def test_route_answers_each_caller_as_the_matrix_says(anonymous, tokens, gateway_settings, route):
    method, path, whose = route
    got = {}
    for who in CALLERS:  # a fresh resource per caller: one caller's request cannot change another's answer
        url = path
        for param in ("{job_id}", "{classification_id}"):
            if param in path and path.startswith("/v1/classifications"):
                mine = whose == "own" and who in ("client", "trainer", "operator")
                url = url.replace(param, _classification(anonymous, tokens[who] if mine else tokens["client2"]))
            elif param in path:
                mine = whose == "own" and who in ("trainer", "operator")
                url = url.replace(param, _training_job(anonymous, tokens[who] if mine else tokens["trainer2"]))
        url = url.replace("{version}", "tiny-1").replace("{key_id}", _api_key(gateway_settings))
        files = {"photo": ("a.jpg", jpeg_bytes())} if path == "/v1/classifications" else None
        anonymous.cookies.clear()  # no browser session carried from one caller's request to the next
        got[who] = anonymous.request(method, url, files=files, json=BODIES.get(path),
                                     headers={**_headers(tokens[who]), **HEADERS.get(path, {})}).status_code
    if path == "/readyz":
        assert len(set(got.values())) == 1 and got["nobody"] in (200, 503), got
        return
    assert got == MATRIX[route]


@pytest.mark.parametrize("case", list(JOB_OPTIONS))
def test_training_job_options_answer_each_caller_as_the_table_says(anonymous, tokens, case):
    body, expected = JOB_OPTIONS[case]
    got = {who: anonymous.post("/v1/training-jobs", json=body, headers=_headers(tokens[who]))
           for who in CALLERS}
    assert {who: r.status_code for who, r in got.items()} == expected
    if expected["trainer"] == 403:
        error = got["trainer"].json()["error"]
        assert error["code"] == "forbidden" and "only an operator decides promotion" in error["message"], error


def test_a_refused_option_creates_no_job(anonymous, tokens):
    r = anonymous.post("/v1/training-jobs", json={"mode": "recalibrate", "promote": "always"},
                       headers=_headers(tokens["trainer"]))
    assert r.status_code == 403
    assert anonymous.get("/v1/training-jobs", headers=_headers(tokens["operator"])).json() == []


def test_a_trainer_lists_only_its_own_training_jobs_and_the_operator_all(anonymous, tokens):
    mine, theirs = _training_job(anonymous, tokens["trainer"]), _training_job(anonymous, tokens["trainer2"])
    listed = lambda who: {j["id"] for j in anonymous.get("/v1/training-jobs", headers=_headers(tokens[who])).json()}  # noqa: E731
    assert listed("trainer") == {mine} and listed("trainer2") == {theirs}
    assert listed("operator") == {mine, theirs}


def test_another_trainers_job_and_an_unknown_one_look_the_same(anonymous, tokens):
    theirs = _training_job(anonymous, tokens["trainer2"])
    for path in (f"/v1/training-jobs/{theirs}", "/v1/training-jobs/6d1f0e3c-0000-4000-8000-000000000000"):
        r = anonymous.get(path, headers=_headers(tokens["trainer"]))
        assert r.status_code == 404 and r.json()["error"]["code"] == "training_job_not_found"
    cancel = anonymous.post(f"/v1/training-jobs/{theirs}/cancel", headers=_headers(tokens["trainer"]))
    assert cancel.status_code == 404
    assert anonymous.get(f"/v1/training-jobs/{theirs}", headers=_headers(tokens["trainer2"])).json()["status"] == "queued"


def test_an_unknown_id_and_another_clients_id_look_the_same(anonymous, tokens):
    theirs = _classification(anonymous, tokens["client2"])
    mine = anonymous.get(f"/v1/classifications/{theirs}", headers=_headers(tokens["client"])).json()
    none = anonymous.get("/v1/classifications/6d1f0e3c-0000-4000-8000-000000000000",
                         headers=_headers(tokens["client"])).json()
    assert mine["error"]["code"] == none["error"]["code"] == "job_not_found"


def test_a_rehedge_of_another_clients_job_is_404_too(anonymous, tokens):
    theirs = _classification(anonymous, tokens["client2"])
    r = anonymous.get(f"/v1/classifications/{theirs}", params={"accuracy": 0.99}, headers=_headers(tokens["client"]))
    assert r.status_code == 404


def test_401_says_how_to_authenticate(anonymous):
    r = anonymous.get("/v1/taxonomy")
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert r.json()["error"]["code"] == "unauthenticated" and "Bearer" in r.json()["error"]["message"]
    assert anonymous.get("/v1/taxonomy", headers={"Authorization": "Basic dXNlcjpwdw=="}).status_code == 401
