"""The OpenAPI document says what the app does: a bearer scheme where a key is needed, and every
error in the shape the app sends it."""

from __future__ import annotations

import pytest

from services.gateway.openapi import REQUEST_EXAMPLES
from shared.schemas import ErrorResponse
from tests.factories import jpeg_bytes

KEYLESS = {"/healthz", "/readyz", "/v1/session"}  # the session routes: a cookie, not a key (the web page)


@pytest.fixture
def schema(anonymous) -> dict:
    r = anonymous.get("/openapi.json")
    assert r.status_code == 200
    return r.json()


def operations(schema: dict):
    for path, ops in schema["paths"].items():
        for method, op in ops.items():
            yield path, method, op


def test_a_bearer_scheme_guards_every_route_but_the_probes(schema):
    assert schema["components"]["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer", "description": schema["components"]["securitySchemes"]["bearer"]["description"]}
    for path, method, op in operations(schema):
        if path in KEYLESS:
            assert "security" not in op, (method, path)
        else:
            assert op["security"] == [{"bearer": []}], (method, path)
            assert {"401", "429"} <= set(op["responses"]), (method, path)


def test_role_routes_document_403_and_client_routes_do_not(schema):
    assert "403" in schema["paths"]["/v1/models/rollback"]["post"]["responses"]
    assert "403" in schema["paths"]["/v1/training-jobs"]["post"]["responses"]
    assert "403" in schema["paths"]["/metrics"]["get"]["responses"]
    assert "403" not in schema["paths"]["/v1/classifications"]["post"]["responses"]


def test_every_error_response_is_the_apps_error_shape(schema):
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    for path, method, op in operations(schema):
        for status, response in op["responses"].items():
            if status.startswith(("4", "5")) and path != "/readyz":
                ref = response["content"]["application/json"]["schema"]["$ref"]
                assert ref == "#/components/schemas/ErrorResponse", (method, path, status)
                example = response["content"]["application/json"].get("example")
                if example:
                    ErrorResponse.model_validate(example)


def test_a_real_422_and_401_match_what_the_document_says(anonymous, keys):
    r = anonymous.get("/v1/classifications/x", params={"accuracy": "lots"}, headers=keys.headers("client"))
    assert r.status_code == 422
    ErrorResponse.model_validate(r.json())
    r = anonymous.get("/v1/taxonomy")
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    ErrorResponse.model_validate(r.json())


def test_readyz_documents_its_503(schema):
    responses = schema["paths"]["/readyz"]["get"]["responses"]
    assert responses["503"]["content"]["application/json"]["schema"]["$ref"] == "#/components/schemas/Readiness"


def test_the_request_examples_are_accepted_by_the_app(anonymous, keys, schema):
    """Each documented request example is a valid body (a 422 would mean the example lies)."""
    job_id = anonymous.post("/v1/classifications", files={"photo": ("a.jpg", jpeg_bytes())},
                            headers=keys.headers("operator")).json()["id"]
    for (method, path), examples in REQUEST_EXAMPLES.items():
        documented = schema["paths"][path][method]["requestBody"]["content"]["application/json"]["examples"]
        assert documented == examples
        url = path.replace("{job_id}", job_id).replace("{classification_id}", job_id)
        for example in examples.values():
            r = anonymous.request(method.upper(), url, json=example["value"], headers=keys.headers("operator"))
            assert r.status_code != 422, (method, path, example, r.text)
