"""Settings pages: workers, triggers, variables and secrets, repository connections,
deploy hooks. Inline validation, write-only secrets, CONFIGURE required to change."""

import pytest

from builds import encryption
from builds.models import DeployHook, EnvironmentVariable, RepoConnection, Trigger, WebhookDelivery, Worker
from tests.factories import make_connection, make_trigger, make_worker


@pytest.fixture
def admin_user(owner):
    return owner  # the owner's role includes CONFIGURE


@pytest.fixture
def worker(account):
    return make_worker(account, "site")


@pytest.fixture
def trigger(worker):
    return make_trigger(worker)


def url(account, *parts) -> str:
    return "/".join(["", "accounts", account.id, *map(str, parts), ""])


def test_creating_a_worker_validates_the_name_inline(client, admin_user, account, worker):
    client.force_login(admin_user)
    response = client.post(url(account, "workers", "new"), {"name": "Bad Name!"})
    assert response.status_code == 400
    assert "Use lowercase letters, digits and dashes" in response.content.decode()
    response = client.post(url(account, "workers", "new"), {"name": "site"})
    assert "A worker with this name exists in this account." in response.content.decode()
    assert Worker.objects.count() == 1
    response = client.post(url(account, "workers", "new"), {"name": "docs", "badge_enabled": "on"})
    docs = Worker.objects.get(name="docs")
    assert response["Location"] == url(account, "workers", docs.tag, "settings")
    assert docs.account == account and docs.badge_enabled


def test_developers_cannot_change_settings(client, member, account, worker, trigger):
    client.force_login(member)
    page = client.get(url(account, "workers", worker.tag, "settings"))
    assert page.status_code == 200 and "<fieldset disabled>" in page.content.decode()
    assert client.post(url(account, "workers", worker.tag, "settings"), {"name": "renamed"}).status_code == 403
    assert client.post(url(account, "workers", "new"), {"name": "new"}).status_code == 403
    assert (
        client.post(url(account, "triggers", trigger.uuid, "variables"), {"name": "A", "value": "1"}).status_code == 403
    )
    worker.refresh_from_db()
    assert worker.name == "site" and not EnvironmentVariable.objects.exists()


def trigger_data(connection, **overrides) -> dict:
    return {
        "trigger_name": "Production",
        "repo_connection": connection.pk,
        "production_branch": "main",
        "build_command": "npm ci && npm run build",
        "deploy_command": "npx wrangler deploy",
        "non_production_deploy_command": "npx wrangler versions upload",
        "root_directory": "/app",
        "branch_includes": "main\nrelease/*",
        "branch_excludes": "release/old",
        "path_includes": "*",
        "path_excludes": "docs/*\n",
        "build_caching_enabled": "on",
        "build_image": "buildsite/build:latest",
        "build_timeout_seconds": "600",
        **overrides,
    }


def test_a_trigger_is_created_with_every_field(client, admin_user, account, worker):
    connection = make_connection(account)
    client.force_login(admin_user)
    response = client.post(url(account, "workers", worker.tag, "triggers", "new"), trigger_data(connection))
    trigger = Trigger.objects.get()
    assert response.status_code == 302 and response["Location"] == url(account, "triggers", trigger.uuid)
    assert trigger.worker == worker and trigger.repo_connection == connection
    assert trigger.branch_includes == ["main", "release/*"] and trigger.branch_excludes == ["release/old"]
    assert trigger.path_excludes == ["docs/*"] and trigger.build_caching_enabled
    assert (trigger.root_directory, trigger.build_timeout_seconds) == ("/app", 600)


def test_trigger_errors_are_shown_next_to_their_field(client, admin_user, account, worker, other_account):
    foreign = make_connection(other_account)
    client.force_login(admin_user)
    data = trigger_data(foreign, root_directory="../up", build_timeout_seconds="999999")
    response = client.post(url(account, "workers", worker.tag, "triggers", "new"), data)
    assert response.status_code == 400
    body = response.content.decode()
    assert "Select a valid choice" in body  # another account's connection is not offered
    assert 'id="id_repo_connection-error"' in body
    assert not Trigger.objects.exists()


def test_a_secret_is_stored_encrypted_never_shown_and_can_be_replaced_or_deleted(client, admin_user, account, trigger):
    client.force_login(admin_user)
    variables = url(account, "triggers", trigger.uuid, "variables")
    client.post(variables, {"name": "API_TOKEN", "value": "hunter2", "is_secret": "on"})
    client.post(variables, {"name": "NODE_ENV", "value": "production"})
    secret = EnvironmentVariable.objects.get(name="API_TOKEN")
    assert secret.is_secret and secret.value == "" and encryption.decrypt(secret.value_encrypted) == "hunter2"
    body = client.get(url(account, "triggers", trigger.uuid)).content.decode()
    assert "hunter2" not in body and "API_TOKEN" in body and "production" in body
    client.post(variables, {"name": "API_TOKEN", "value": "new-value", "is_secret": "on"})
    secret.refresh_from_db()
    assert secret.plaintext() == "new-value" and EnvironmentVariable.objects.count() == 2
    response = client.post(url(account, "triggers", trigger.uuid, "variables", secret.pk, "delete"))
    assert response.status_code == 302
    assert list(EnvironmentVariable.objects.values_list("name", flat=True)) == ["NODE_ENV"]


def test_variable_errors_are_inline_and_nothing_is_saved(client, admin_user, account, trigger):
    client.force_login(admin_user)
    variables = url(account, "triggers", trigger.uuid, "variables")
    response = client.post(variables, {"name": "WORKERS_CI_BRANCH", "value": "x"})
    assert response.status_code == 400
    assert "WORKERS_CI_BRANCH is set by Buildsite and cannot be overridden." in response.content.decode()
    response = client.post(variables, {"name": "EMPTY_SECRET", "value": "", "is_secret": "on"})
    assert "A secret needs a value." in response.content.decode()
    assert not EnvironmentVariable.objects.exists()


def test_connecting_a_repository_shows_the_webhook_secret_once(client, admin_user, account):
    client.force_login(admin_user)
    data = {
        "provider": "gitlab",
        "provider_account_id": "7",
        "provider_account_name": "acme",
        "repo_id": "42",
        "repo_name": "site",
        "clone_url": "https://gitlab.com/acme/site.git",
        "clone_credential": "glpat-secret",
    }
    response = client.post(url(account, "repositories"), data)
    connection = RepoConnection.objects.get()
    secret = connection.webhook_secret()
    body = response.content.decode()
    assert response.status_code == 201 and len(secret) == 64 and secret in body
    assert connection.webhook_url in body and "Secret token" in body  # GitLab's steps
    assert connection.clone_credential() == "glpat-secret" and "glpat-secret" not in body
    later = client.get(url(account, "repositories", connection.uuid)).content.decode()
    assert secret not in later and "set, write-only" in later
    duplicate = client.post(url(account, "repositories"), data)
    assert duplicate.status_code == 400 and "This repository is connected already." in duplicate.content.decode()
    assert RepoConnection.objects.count() == 1


def test_rotating_the_secret_replaces_it_and_shows_the_new_one(client, admin_user, account):
    connection = make_connection(account)
    client.force_login(admin_user)
    response = client.post(url(account, "repositories", connection.uuid, "rotate"))
    connection.refresh_from_db()
    assert connection.webhook_secret() != "s3cret"
    assert connection.webhook_secret() in response.content.decode()
    assert "Settings → Webhooks → Add webhook" in response.content.decode()  # GitHub's steps


def test_the_connection_page_lists_recent_deliveries(client, member, account):
    connection = make_connection(account)
    WebhookDelivery.objects.create(
        repo_connection=connection,
        provider="github",
        event="push",
        delivery_id="abc-123",
        response_code=401,
        outcome="rejected",
        reason="Signature does not match.",
    )
    client.force_login(member)
    body = client.get(url(account, "repositories", connection.uuid)).content.decode()
    assert "abc-123" in body and "401" in body and "Signature does not match." in body and "Rejected" in body


def test_a_connection_in_use_cannot_be_deleted(client, admin_user, account, trigger):
    client.force_login(admin_user)
    connection = trigger.repo_connection
    response = client.post(url(account, "repositories", connection.uuid, "delete"), follow=True)
    assert "Triggers use this connection" in response.content.decode()
    assert RepoConnection.objects.filter(pk=connection.pk).exists()


def test_deploy_hooks_are_created_with_a_copyable_url_and_deleted(client, admin_user, account, worker, trigger):
    client.force_login(admin_user)
    response = client.post(
        url(account, "workers", worker.tag, "deploy-hooks", "new"),
        {"name": "CMS", "trigger": trigger.pk, "branch": "main"},
        follow=True,
    )
    hook = DeployHook.objects.get()
    assert hook.worker == worker and hook.trigger == trigger
    assert hook.url in response.content.decode() and "data-copy" in response.content.decode()
    client.post(url(account, "deploy-hooks", hook.uuid, "delete"))
    assert not DeployHook.objects.exists()


def test_deploy_hook_errors_are_inline(client, admin_user, account, worker, trigger):
    client.force_login(admin_user)
    response = client.post(url(account, "workers", worker.tag, "deploy-hooks", "new"), {"name": "", "branch": ""})
    assert response.status_code == 400 and "This field is required." in response.content.decode()
    assert not DeployHook.objects.exists()


def test_settings_of_another_account_are_404(client, outsider, account, worker, trigger):
    client.force_login(outsider)
    assert client.get(url(account, "workers", worker.tag, "settings")).status_code == 404
    assert client.get(url(account, "triggers", trigger.uuid)).status_code == 404
    assert client.get(url(account, "repositories", trigger.repo_connection.uuid)).status_code == 404
    assert client.post(url(account, "repositories", trigger.repo_connection.uuid, "rotate")).status_code == 404
    trigger.repo_connection.refresh_from_db()
    assert trigger.repo_connection.webhook_secret() == "s3cret"
