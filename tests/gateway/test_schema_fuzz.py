"""schemathesis against the served OpenAPI schema: generated requests to every operation (valid
and invalid by the schema), as an operator (every route open to it): no 5xx, and every response
conforms to what the schema documents (status codes, content types, bodies)."""

from __future__ import annotations

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings

from services.gateway.api.deps import get_queue
from services.gateway.config import GatewaySettings
from services.gateway.main import create_app
from schemathesis.specs.openapi.checks import positive_data_acceptance

from shared import api_keys
from shared.auth import Role
from shared.db import run_migrations, session_scope
from tests.gateway.conftest import FakeQueue

OPERATOR: dict[str, str] = {}
EXAMPLES = 25  # per operation
# A schema cannot say "the bytes must decode as a photo": schema-valid random bytes in `photo`
# rightly get 400/415, so "valid data is accepted" cannot hold there. Every other check runs.
EXCLUDED = [positive_data_acceptance]


@pytest.fixture
def served_app(gateway_settings: GatewaySettings) -> FastAPI:
    run_migrations(gateway_settings.resolved_database_url)
    with session_scope(gateway_settings.resolved_database_url) as session:
        token = api_keys.create_key(session, "fuzz", Role.operator, rate_limit_per_minute=0).token
    OPERATOR["Authorization"] = f"Bearer {token}"
    app = create_app(gateway_settings)
    app.dependency_overrides[get_queue] = FakeQueue
    return app


def test_every_operation_conforms_and_never_fails(served_app):
    """Driven through schemathesis' Python API (its pytest plugin does not run under this pytest):
    each operation gets its own Hypothesis run; all failures are collected, then reported."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", served_app)
    failures, operations, statuses = {}, 0, {}
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path == "/readyz":  # no parameters to fuzz; 503 is its answer while no workers run here
            continue
        operations += 1

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def run(case) -> None:  # noqa: ANN001
            response = case.call_and_validate(headers=OPERATOR, excluded_checks=EXCLUDED)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

        try:
            run()
        except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - collect them all, then report
            failures[operation.label] = str(exc)[:2000]
    assert operations >= 10
    print(f"{operations} operations, {sum(statuses.values())} requests, statuses {sorted(statuses.items())}")
    assert sum(statuses.values()) >= operations * EXAMPLES // 2 and not any(s >= 500 for s in statuses)
    assert not failures, "\n\n".join(f"{label}:\n{msg}" for label, msg in failures.items())
