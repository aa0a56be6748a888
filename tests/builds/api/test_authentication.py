"""Who may call: a bearer token (only for its own account) or the dashboard session
(with CSRF on unsafe methods)."""

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import ApiToken, Role
from builds.models import Build, Worker
from tests.builds.api.client import failed, ok
from tests.factories import add_member


def test_it_asks_for_a_token(client, account):
    response = client.get(f"/client/v4/accounts/{account.id}/builds/workers")
    assert failed(response, 401) == [{"code": 12005, "message": "Missing token from authorization header"}]
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "header",
    ["Bearer bst_not-a-real-token", "Bearer ", "Basic YWxpY2U6c2VjcmV0", "bst_no-scheme", "Bearer nonsense"],
)
def test_it_rejects_a_bad_token(client, account, header):
    response = client.get(f"/client/v4/accounts/{account.id}/builds/workers", HTTP_AUTHORIZATION=header)
    assert failed(response, 401) == [{"code": 12005, "message": "Invalid token"}]


def test_it_rejects_a_revoked_or_expired_token(api, owner, account):
    ok(api("GET", "workers"))
    ApiToken.objects.update(revoked_on=timezone.now())
    assert failed(api("GET", "workers"), 401)[0]["message"] == "Invalid token"
    _, expired = ApiToken.issue(owner, account, "old", expires_on=timezone.now() - timedelta(seconds=1))
    api.token = expired
    assert failed(api("GET", "workers"), 401)[0]["message"] == "Invalid token"


def test_a_token_works_only_for_its_own_account(api_for, owner, account, other_account, outsider):
    # Alice belongs to both accounts; her token for Acme does not open Globex.
    add_member(owner, other_account, Role.OWNER)
    api = api_for(owner, token_account=account)
    ok(api("GET", "workers"))
    failed(api("GET", "workers", account=other_account), 404)
    failed(api("POST", "workers", {"name": "sneaky"}, account=other_account), 404)
    assert not Worker.objects.filter(name="sneaky").exists()


def test_a_removed_member_token_stops_working(api, owner, account):
    account.memberships.filter(user=owner).delete()
    failed(api("GET", "workers"), 404)


def test_the_dashboard_session_can_read(client, member, account, world):
    client.force_login(member)
    result = ok(client.get(f"/client/v4/accounts/{account.id}/builds/workers"))
    assert [worker["name"] for worker in result] == ["site"]


def test_a_session_of_a_non_member_finds_nothing(client, outsider, account):
    client.force_login(outsider)
    failed(client.get(f"/client/v4/accounts/{account.id}/builds/workers"), 404)


def test_a_session_needs_the_csrf_token_to_change_anything(member, account, world):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(member)
    url = f"/client/v4/accounts/{account.id}/builds/triggers/{world.trigger.uuid}/builds"
    errors = failed(browser.post(url, {"branch": "main"}, content_type="application/json"), 403)
    assert "CSRF" in errors[0]["message"]
    assert Build.objects.count() == 1

    browser.get("/admin/login/")  # any page that sets the CSRF cookie
    token = browser.cookies["csrftoken"].value
    build = ok(browser.post(url, {"branch": "main"}, content_type="application/json", HTTP_X_CSRFTOKEN=token))
    assert build["build_trigger_metadata"]["build_trigger_source"] == "manual"
    assert Build.objects.count() == 2


def test_a_token_started_build_comes_from_the_api(api, world):
    build = ok(api("POST", f"triggers/{world.trigger.uuid}/builds", {"branch": "main"}))
    assert build["build_trigger_metadata"]["build_trigger_source"] == "api"
    assert Build.objects.get(build_uuid=build["build_uuid"]).source == "api"
