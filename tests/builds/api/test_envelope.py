"""Every answer is the Cloudflare v4 envelope: errors from routing, methods, parsing,
validation, rate limits and our own bugs included."""

import logging

import pytest

from builds import scheduler
from builds.models import Build
from tests.builds.api.client import failed, ok


def test_a_success_is_wrapped(api, world):
    body = api("GET", f"workers/{world.worker.tag}").json()
    assert body == {
        "success": True,
        "errors": [],
        "messages": [],
        "result": body["result"],
        "result_info": None,
    }
    assert body["result"]["name"] == "site"


def test_a_list_carries_result_info(api, world):
    body = api("GET", "workers").json()
    assert body["result_info"] == {"page": 1, "per_page": 25, "count": 1, "total_count": 1, "total_pages": 1}


def test_an_unknown_api_route_is_a_404_in_the_envelope(api, client):
    errors = failed(api("GET", "no/such/thing"), 404)
    assert errors == [{"code": 12000, "message": "No such API route."}]
    failed(client.get("/client/v4/nothing"), 404)


def test_a_malformed_id_in_the_path_is_a_404_not_a_query(api):
    failed(api("GET", "workers/not-a-tag"), 404)
    failed(api("GET", "triggers/00000000-0000-0000-0000-000000000000/environment_variables/1BAD"), 404)


def test_an_unknown_route_outside_the_api_is_not_json(client):
    response = client.get("/no/such/page")
    assert response.status_code == 404
    assert not response["Content-Type"].startswith("application/json")


@pytest.mark.parametrize("method", ["POST", "DELETE", "OPTIONS"])
def test_a_method_the_route_lacks_is_a_405_in_the_envelope(api, method):
    errors = failed(api(method, "account/limits"), 405)
    assert errors[0]["code"] == 12004 and method in errors[0]["message"]


def test_malformed_json_is_a_400_in_the_envelope(api, client, world):
    response = client.generic(
        "POST",
        api.base() + "workers",
        "{not json",
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {api.token}",
    )
    errors = failed(response, 400)
    assert errors[0]["code"] == 12001 and "JSON parse error" in errors[0]["message"]


def test_a_form_body_is_a_415_in_the_envelope(api, client):
    response = client.post(api.base() + "workers", {"name": "x"}, HTTP_AUTHORIZATION=f"Bearer {api.token}")
    assert failed(response, 415)[0]["code"] == 12015


def test_validation_errors_name_each_field(api, world):
    errors = failed(
        api("POST", "triggers", {"external_script_id": world.worker.tag, "branch_includes": "main", "build_image": ""}),
        400,
    )
    pointers = {e["source"]["pointer"]: e["message"] for e in errors}
    assert set(pointers) == {"/repo_connection_uuid", "/trigger_name", "/branch_includes", "/build_image"}
    assert pointers["/trigger_name"] == "trigger_name: This field is required."
    assert {e["code"] for e in errors} == {12001}


def test_nested_validation_errors_point_into_the_body(api, world):
    errors = failed(api("PATCH", f"triggers/{world.trigger.uuid}/environment_variables", {"A": {"value": None}}), 400)
    assert errors == [
        {"code": 12001, "message": "A.value: This field may not be null.", "source": {"pointer": "/A/value"}}
    ]


def test_our_own_bug_is_a_500_in_the_envelope_and_saves_nothing(api, world, monkeypatch, caplog):
    def broken(builds):
        raise RuntimeError("scheduler exploded")

    monkeypatch.setattr(scheduler, "enqueue", broken)
    builds_before = Build.objects.count()
    with caplog.at_level(logging.ERROR, logger="builds.api.envelope"):
        errors = failed(api("POST", f"triggers/{world.trigger.uuid}/builds", {"branch": "main"}), 500)
    assert errors[0]["code"] == 10001 and "scheduler exploded" not in errors[0]["message"]
    assert Build.objects.count() == builds_before
    assert "scheduler exploded" in caplog.text


def test_too_many_requests_are_a_429_with_retry_after(api, api_for, owner, settings):
    settings.BUILDSITE_API_RATE = "3/m"
    for _ in range(3):
        ok(api("GET", "account/limits"))
    response = api("GET", "account/limits")
    errors = failed(response, 429)
    assert errors[0]["code"] == 12029
    assert 0 < int(response["Retry-After"]) <= 60
    # The limit is per token: another token of the same user is not held back.
    ok(api_for(owner)("GET", "account/limits"))


def test_the_api_still_answers_while_the_rate_limit_cache_is_down(api, world, settings, caplog):
    settings.BUILDSITE_API_RATE = "1/m"
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://127.0.0.1:1/0"}
    }
    for _ in range(2):
        page = ok(api("GET", f"builds/{world.build.build_uuid}/logs"))
        assert [text for _, text in page["lines"]] == ["hello"]
    assert "API rate limit not applied: its cache cannot be reached" in caplog.text
