"""The API keeps to its OpenAPI description: schemathesis sends generated requests to every
operation; no answer may be a 5xx or stray from the documented statuses, types and schemas."""

from __future__ import annotations

import re

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api import create_app
from api.auth import create_merchant
from api.openapi import spec


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    storage = tmp_path_factory.mktemp("openapi") / "storage"
    return create_app({"TESTING": True, "STORAGE_DIR": str(storage), "MAX_FILES": 20})


@pytest.fixture(scope="module")
def key(app) -> str:
    with app.extensions["recon"]["sessions"]() as session:
        return create_merchant(session, "fuzz")[1]


# The description itself, loaded once: one test per operation. (schemathesis's own pytest
# plugin does not run under pytest 9, so the operations are driven with hypothesis here.)
SCHEMA = schemathesis.openapi.from_dict(spec())
OPERATIONS = [result.ok() for result in SCHEMA.get_all_operations()]


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda operation: operation.label)
def test_every_operation_answers_as_described(operation, app, key) -> None:
    @given(case=operation.as_strategy())
    @settings(
        max_examples=25,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    def check(case) -> None:
        case.call_and_validate(
            app=app,
            headers={"Authorization": f"Bearer {key}"},
            checks=[
                not_a_server_error,
                status_code_conformance,
                content_type_conformance,
                response_schema_conformance,
            ],
        )

    check()


def test_every_route_is_described_and_every_description_routed(app) -> None:
    routed = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/v1/"):
            path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule.removeprefix("/api/v1"))
            routed |= {(path, m.lower()) for m in rule.methods - {"HEAD", "OPTIONS"}}
    described = {(path, method) for path, ops in spec()["paths"].items() for method in ops}
    assert routed == described
