"""Repository connections: upsert by provider and repo id, write-only clone
credentials, webhook URL and secret for admins only, rotation, deletion."""

import pytest

from builds.models import RepoConnection
from tests.builds.api.client import failed, ok

REPO = {
    "provider_type": "github",
    "provider_account_id": "1001",
    "provider_account_name": "acme",
    "repo_id": "777",
    "repo_name": "www",
}


def test_it_connects_a_repository_with_its_own_webhook(api, account):
    connection = ok(api("PUT", "repos/connections", {**REPO, "clone_credential": "ghp_s3cret"}))
    stored = RepoConnection.objects.get(account=account, repo_id="777")
    assert connection["repo_connection_uuid"] == str(stored.uuid)
    assert {key: connection[key] for key in REPO} == REPO
    assert connection["clone_url"] == "https://github.com/acme/www.git" == stored.clone_url
    assert connection["webhook_url"] == stored.webhook_url and str(stored.uuid) in connection["webhook_url"]
    assert len(connection["webhook_secret"]) == 64 and connection["webhook_secret"] == stored.webhook_secret()
    # The credential is write-only and encrypted at rest.
    assert "clone_credential" not in connection and connection["has_clone_credential"] is True
    assert stored.clone_credential() == "ghp_s3cret" and "ghp_s3cret" not in stored.clone_credential_encrypted


def test_putting_the_same_repository_again_updates_it(api, account):
    first = ok(api("PUT", "repos/connections", {**REPO, "clone_credential": "ghp_s3cret"}))
    second = ok(api("PUT", "repos/connections", {**REPO, "repo_name": "www2", "clone_url": "git@github.com:acme/www2"}))
    assert second["repo_connection_uuid"] == first["repo_connection_uuid"]
    stored = RepoConnection.objects.get(account=account)
    assert (stored.repo_name, stored.clone_url) == ("www2", "git@github.com:acme/www2")
    # Neither the webhook secret nor the credential changed by omission.
    assert second["webhook_secret"] == first["webhook_secret"]
    assert stored.clone_credential() == "ghp_s3cret"
    ok(api("PUT", "repos/connections", {**REPO, "clone_credential": ""}))
    stored.refresh_from_db()
    assert not stored.has_clone_credential


def test_the_same_repo_id_at_another_provider_is_another_connection(api, account):
    ok(api("PUT", "repos/connections", REPO))
    gitlab = ok(api("PUT", "repos/connections", {**REPO, "provider_type": "gitlab"}))
    assert gitlab["clone_url"] == "https://gitlab.com/acme/www.git"
    assert RepoConnection.objects.filter(account=account).count() == 2


def test_the_same_repository_in_another_account_is_separate(api, other_account):
    ok(api("PUT", "repos/connections", REPO))
    assert RepoConnection.objects.filter(repo_id="777").count() == 1
    assert not RepoConnection.objects.filter(account=other_account).exists()


@pytest.mark.parametrize(
    ("fields", "pointer"),
    [
        ({"provider_type": "bitbucket"}, "/provider_type"),
        ({"repo_id": ""}, "/repo_id"),
        ({"repo_name": None}, "/repo_name"),
        ({"provider_account_id": "x" * 101}, "/provider_account_id"),
        ({"clone_url": "ext::sh -c touch% /tmp/pwned"}, "/clone_url"),
        ({"clone_url": "ssh://-oProxyCommand=evil/x"}, "/clone_url"),
        ({"clone_url": "https://github.com/acme/www.git --upload-pack=x"}, "/clone_url"),
    ],
)
def test_it_rejects_a_bad_connection(api, account, fields, pointer):
    errors = failed(api("PUT", "repos/connections", {**REPO, **fields}), 400)
    assert [e["source"]["pointer"] for e in errors] == [pointer]
    assert not RepoConnection.objects.filter(account=account).exists()


def test_each_required_field_is_named_when_missing(api):
    errors = failed(api("PUT", "repos/connections", {}), 400)
    assert {e["source"]["pointer"] for e in errors} == {f"/{field}" for field in REPO}


@pytest.mark.parametrize("allowed", [True, False])
def test_local_repositories_are_allowed_only_where_configured(api, account, settings, allowed):
    settings.BUILDSITE_CLONE_PROTOCOLS = ["https", "ssh", "file"] if allowed else ["https", "ssh"]
    response = api("PUT", "repos/connections", {**REPO, "clone_url": "file:///srv/git/www.git"})
    if allowed:
        assert ok(response)["clone_url"] == "file:///srv/git/www.git"
    else:
        assert failed(response, 400)[0]["source"]["pointer"] == "/clone_url"


def test_webhook_secrets_are_shown_to_admins_only(api_for, admin, member, reader, world):
    [first, _] = ok(api_for(admin)("GET", "repos/connections"))
    assert first["webhook_secret"] == "s3cret" and first["webhook_url"] == world.connection.webhook_url
    for user in (member, reader):
        for connection in ok(api_for(user)("GET", "repos/connections")):
            assert connection["webhook_secret"] is None and connection["webhook_url"] is None
        detail = ok(api_for(user)("GET", f"repos/connections/{world.connection.uuid}"))
        assert detail["webhook_secret"] is None and detail["repo_name"] == world.connection.repo_name


def test_it_lists_only_the_accounts_connections(api, world, other_world):
    listed = ok(api("GET", "repos/connections"))
    assert {c["repo_connection_uuid"] for c in listed} == {str(world.connection.uuid), str(world.spare_connection.uuid)}


def test_it_rotates_the_webhook_secret(api, world):
    connection = ok(api("POST", f"repos/connections/{world.connection.uuid}/rotate_secret"))
    world.connection.refresh_from_db()
    assert connection["webhook_secret"] == world.connection.webhook_secret() != "s3cret"


def test_it_deletes_an_unused_connection(api, world):
    assert ok(api("DELETE", f"repos/connections/{world.spare_connection.uuid}")) is None
    assert not RepoConnection.objects.filter(pk=world.spare_connection.pk).exists()


def test_a_connection_in_use_is_not_deleted(api, world):
    errors = failed(api("DELETE", f"repos/connections/{world.connection.uuid}"), 409)
    assert errors == [{"code": 12009, "message": "Triggers use this connection: delete them first."}]
    assert RepoConnection.objects.filter(pk=world.connection.pk).exists()
