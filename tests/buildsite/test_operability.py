import json
import logging

import pytest
from django.test import override_settings
from django.urls import path

from buildsite.structured_logging import JsonFormatter, bind


def boom(request):
    raise RuntimeError("secret-value-that-must-not-leak")


urlpatterns = [path("client/v4/boom", boom), path("boom", boom)]
handler500 = "buildsite.errors.server_error"


def test_healthz_answers(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_reports_each_dependency(client, settings):
    settings.BUILDSITE_EXECUTOR = "local"
    response = client.get("/readyz")
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "ready"
    assert set(body["checks"]) == {"database", "broker", "channel_layer", "docker"}
    assert body["checks"]["database"] == {"required": True, "status": "ok", "ms": body["checks"]["database"]["ms"]}


@pytest.mark.django_db
def test_readyz_is_503_when_a_required_dependency_is_down(client, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    response = client.get("/readyz")
    body = response.json()
    assert response.status_code == 503
    assert body["status"] == "unavailable"
    assert body["checks"]["broker"]["status"] == "down" and body["checks"]["broker"]["required"]
    assert "Connection" in body["checks"]["broker"]["detail"]


@override_settings(ROOT_URLCONF=__name__)
@pytest.mark.parametrize("url, kind", [("/client/v4/boom", "application/json"), ("/boom", "text/html")])
def test_unexpected_errors_answer_without_traceback(client, url, kind, caplog):
    client.raise_request_exception = False
    response = client.get(url, HTTP_X_REQUEST_ID="req-42")
    assert response.status_code == 500
    assert response["Content-Type"].startswith(kind)
    body = response.content.decode()
    assert "secret-value" not in body and "Traceback" not in body
    assert "req-42" in body and response["X-Request-ID"] == "req-42"
    if kind == "application/json":
        assert json.loads(body)["success"] is False and json.loads(body)["errors"][0]["code"] == 10001
    # The exception itself is logged for us, tagged with the request id.
    logged = [r for r in caplog.records if r.exc_info and "secret-value" in str(r.exc_info[1])]
    assert logged


def test_log_lines_are_json_with_release_and_bound_context():
    formatter = JsonFormatter(release="abc123")
    record = logging.LogRecord("builds", logging.INFO, __file__, 1, "build %s started", ("x",), None)
    with bind(build_uuid="b-1", account_id="a-1"):
        inside = json.loads(formatter.format(record))
    outside = json.loads(formatter.format(record))
    assert inside["message"] == "build x started" and inside["release"] == "abc123"
    assert inside["build_uuid"] == "b-1" and inside["account_id"] == "a-1"
    assert "build_uuid" not in outside
