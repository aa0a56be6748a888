"""Every endpoint, called by each role and from outside the account: the least role
that may call it succeeds, lower roles get a 403 that changes nothing, and another
account's objects (or an account the caller is not in) are a 404, never a 403."""

from dataclasses import dataclass

import pytest

from builds import cache
from builds.models import Build, DeployHook, EnvironmentVariable, RepoConnection, Trigger, Worker
from tests.builds.api.client import failed, ok

READ, BUILD, CONFIGURE = "read_only", "developer", "admin"
ROLES = ["read_only", "developer", "admin", "owner"]


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # formatted with w=<World>
    least_role: str
    body: dict | None = None

    def __str__(self) -> str:
        return f"{self.method} {self.path.replace('{w.', '{')}"

    @property
    def names_an_object(self) -> bool:
        return "{w." in self.path.split("?")[0]


ENDPOINTS = [
    Endpoint("GET", "account/limits", READ),
    Endpoint("GET", "builds?version_ids={w.build.build_uuid}", READ),
    Endpoint("GET", "builds/latest?external_script_ids={w.worker.tag}", READ),
    Endpoint("GET", "builds/{w.build.build_uuid}", READ),
    Endpoint("PUT", "builds/{w.build.build_uuid}/cancel", BUILD),
    Endpoint("POST", "builds/{w.build.build_uuid}/retry", BUILD),
    Endpoint("GET", "builds/{w.build.build_uuid}/logs", READ),
    Endpoint("GET", "workers", READ),
    Endpoint("POST", "workers", CONFIGURE, {"name": "new-worker"}),
    Endpoint("GET", "workers/{w.worker.tag}", READ),
    Endpoint("PATCH", "workers/{w.worker.tag}", CONFIGURE, {"name": "renamed"}),
    Endpoint("DELETE", "workers/{w.worker.tag}", CONFIGURE),
    Endpoint("GET", "workers/{w.worker.tag}/builds", READ),
    Endpoint("GET", "workers/{w.worker.tag}/triggers", READ),
    Endpoint("GET", "workers/{w.worker.tag}/deploy_hooks", READ),
    Endpoint("POST", "workers/{w.worker.tag}/deploy_hooks", CONFIGURE, {"name": "hook", "branch": "main"}),
    Endpoint("DELETE", "workers/{w.worker.tag}/deploy_hooks/{w.hook.uuid}", CONFIGURE),
    Endpoint("GET", "triggers/{w.trigger.uuid}", READ),
    Endpoint("PATCH", "triggers/{w.trigger.uuid}", CONFIGURE, {"build_command": "make"}),
    Endpoint("DELETE", "triggers/{w.trigger.uuid}", CONFIGURE),
    Endpoint("POST", "triggers/{w.trigger.uuid}/builds", BUILD, {"branch": "main"}),
    Endpoint("POST", "triggers/{w.trigger.uuid}/purge_build_cache", CONFIGURE),
    Endpoint("GET", "triggers/{w.trigger.uuid}/environment_variables", READ),
    Endpoint("PATCH", "triggers/{w.trigger.uuid}/environment_variables", CONFIGURE, {"NEW": {"value": "1"}}),
    Endpoint("DELETE", "triggers/{w.trigger.uuid}/environment_variables/MODE", CONFIGURE),
    Endpoint("GET", "repos/connections", READ),
    Endpoint("GET", "repos/connections/{w.connection.uuid}", READ),
    Endpoint("DELETE", "repos/connections/{w.spare_connection.uuid}", CONFIGURE),
    Endpoint("POST", "repos/connections/{w.connection.uuid}/rotate_secret", CONFIGURE),
]
# Collection endpoints whose bodies name the account's objects.
ENDPOINTS_WITH_BODY_IDS = [
    Endpoint(
        "POST",
        "triggers",
        CONFIGURE,
        {"external_script_id": "{w.worker.tag}", "repo_connection_uuid": "{w.connection.uuid}", "trigger_name": "t"},
    ),
    Endpoint(
        "PUT",
        "repos/connections",
        CONFIGURE,
        {
            "provider_type": "github",
            "provider_account_id": "1",
            "provider_account_name": "acme",
            "repo_id": "4242",
            "repo_name": "new",
        },
    ),
]
ALL = ENDPOINTS + ENDPOINTS_WITH_BODY_IDS


def call(api, endpoint: Endpoint, world, **kwargs):
    body = endpoint.body
    if body is not None:
        body = {
            key.format(w=world): value.format(w=world) if isinstance(value, str) else value
            for key, value in body.items()
        }
    return api(endpoint.method, endpoint.path.format(w=world), body, **kwargs)


def state() -> tuple:
    """Everything a call could change, to show that a refused call changed nothing."""
    return (
        sorted(Worker.objects.values_list("name", "badge_enabled")),
        sorted(Trigger.objects.values_list("uuid", "build_command")),
        sorted(EnvironmentVariable.objects.values_list("name", "value", "value_encrypted")),
        sorted(DeployHook.objects.values_list("uuid", flat=True)),
        sorted(RepoConnection.objects.values_list("uuid", "repo_id", "webhook_secret_encrypted")),
        sorted(Build.objects.values_list("build_uuid", "status")),
        sorted(cache.cache_dir(trigger).exists() for trigger in Trigger.objects.all()),
    )


@pytest.fixture
def user_with_role(request, owner, member, admin, reader):
    return {"owner": owner, "developer": member, "admin": admin, "read_only": reader}


@pytest.mark.parametrize("endpoint", ALL, ids=str)
@pytest.mark.parametrize("role", ROLES)
def test_each_role_may_do_what_it_allows_and_nothing_else(endpoint, role, user_with_role, api_for, world):
    allowed = ROLES.index(role) >= ROLES.index(endpoint.least_role)
    before = state()
    response = call(api_for(user_with_role[role]), endpoint, world)
    if allowed:
        ok(response)
        if endpoint.method != "GET":
            assert state() != before
    else:
        errors = failed(response, 403)
        assert errors[0]["code"] == 12003
        assert state() == before


@pytest.mark.parametrize("endpoint", ALL, ids=str)
def test_an_outsider_finds_nothing_in_the_account(endpoint, outsider, other_account, api_for, world):
    before = state()
    # The outsider's token is for their own account; the URL names ours.
    errors = failed(call(api_for(outsider, other_account), endpoint, world), 404)
    assert errors[0]["code"] == 12000
    assert state() == before


@pytest.mark.parametrize("endpoint", [e for e in ENDPOINTS if e.names_an_object], ids=str)
def test_another_accounts_object_is_not_found_even_for_the_owner(endpoint, api, world, other_world):
    before = state()
    failed(call(api, endpoint, other_world), 404)
    assert state() == before


@pytest.mark.parametrize("endpoint", [e for e in ENDPOINTS if e.names_an_object], ids=str)
def test_a_reader_gets_404_not_403_for_another_accounts_object(endpoint, api_for, reader, world, other_world):
    failed(call(api_for(reader), endpoint, other_world), 404)
