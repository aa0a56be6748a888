"""The OpenAPI schema the app serves, its docs page, and schemathesis driving the app
against that schema: no request it generates gets a 5xx, and every response conforms."""

import pytest
import schemathesis
from django.contrib.staticfiles import finders
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from accounts.models import ApiToken

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def test_it_serves_its_openapi_schema(client):
    response = client.get("/client/v4/schema", {"format": "json"})
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    paths = schema["paths"]
    assert "/client/v4/accounts/{account_id}/builds/builds/{build_uuid}/logs" in paths
    assert all(path.startswith("/client/v4/") for path in paths)
    logs = paths["/client/v4/accounts/{account_id}/builds/builds/{build_uuid}/logs"]["get"]
    assert {p["name"] for p in logs["parameters"]} == {"account_id", "build_uuid", "cursor"}
    assert all(p.get("description") for p in logs["parameters"])
    assert set(logs["responses"]) >= {"200", "400", "401", "403", "404", "429", "default"}
    assert schema["components"]["securitySchemes"]["apiToken"]["scheme"] == "bearer"


def test_its_docs_page_needs_no_cdn(client):
    response = client.get("/client/v4/docs")
    assert response.status_code == 200
    page = response.content.decode()
    assert "/client/v4/schema" in page
    assert "drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in page
    assert "cdn." not in page and "unpkg" not in page
    # The page's assets ship in drf-spectacular-sidecar, served as static files.
    assert finders.find("drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js")


@pytest.fixture
def app_schema(db):
    # As Django's test client does: a request must not close the connection that holds
    # the test's transaction.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        schema = schemathesis.openapi.from_wsgi("/client/v4/schema?format=json", get_wsgi_application())
        # Examples and fuzzing, bounded by max_examples below: the coverage phase tries every
        # boundary of every parameter and alone takes minutes.
        schema.config.phases.update(phases=["examples", "fuzzing"])
        yield schema
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


schema = schemathesis.pytest.from_fixture("app_schema")


@pytest.fixture
def real_ids(account, world) -> dict:
    """Ids of objects that exist, so generated requests reach the code behind the 404."""
    return {
        "account_id": account.id,
        "external_script_id": world.worker.tag,
        "build_uuid": str(world.build.build_uuid),
        "trigger_uuid": str(world.trigger.uuid),
        "repo_connection_uuid": str(world.spare_connection.uuid),
        "deploy_hook_uuid": str(world.hook.uuid),
        "environment_variable_key": "MODE",
    }


@pytest.fixture
def token(owner, account, settings) -> str:
    settings.BUILDSITE_API_RATE = "100000/m"
    return ApiToken.issue(owner, account, "schemathesis")[1]


@schema.parametrize()
@hypothesis_settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_the_api_keeps_to_its_schema(case, real_ids, token):
    case.path_parameters = {name: real_ids[name] for name in case.path_parameters or {}}
    case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, checks=CHECKS)
