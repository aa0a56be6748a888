"""Triggers, builds started by hand, the build cache, and build variables."""

import pytest

from builds import cache
from builds.models import Build, EnvironmentVariable, Trigger
from tests.builds.api.client import failed, ok
from tests.factories import make_connection, make_worker

SHA = "0123456789abcdef0123456789abcdef01234567"


def new_trigger_body(world, **fields) -> dict:
    return {
        "external_script_id": world.worker.tag,
        "repo_connection_uuid": str(world.connection.uuid),
        "trigger_name": "Preview",
        **fields,
    }


def test_it_creates_a_trigger_with_cloudflares_defaults(api, world):
    trigger = ok(api("POST", "triggers", new_trigger_body(world)))
    stored = Trigger.objects.get(uuid=trigger["trigger_uuid"])
    assert (stored.worker, stored.repo_connection) == (world.worker, world.connection)
    assert trigger["external_script_id"] == world.worker.tag
    assert trigger["repo_connection"]["repo_connection_uuid"] == str(world.connection.uuid)
    assert trigger["deploy_command"] == "npx wrangler deploy"
    assert trigger["non_production_deploy_command"] == "npx wrangler versions upload"
    assert (trigger["root_directory"], trigger["branch_includes"], trigger["path_includes"]) == ("/", ["*"], ["*"])
    assert "repo_connection_uuid" not in trigger


def test_it_creates_a_trigger_with_every_setting(api, world):
    body = new_trigger_body(
        world,
        production_branch="trunk",
        build_command="npm ci && npm run build",
        deploy_command="npx wrangler deploy --env production",
        non_production_deploy_command="echo preview",
        root_directory="/apps/web",
        branch_includes=["trunk", "release/*"],
        branch_excludes=["release/old"],
        path_includes=["apps/web/*"],
        path_excludes=["*.md"],
        build_caching_enabled=True,
        build_image="buildsite/test-busybox:latest",
        build_timeout_seconds=300,
    )
    trigger = ok(api("POST", "triggers", body))
    stored = Trigger.objects.get(uuid=trigger["trigger_uuid"])
    for field, value in body.items():
        if field not in ("external_script_id", "repo_connection_uuid"):
            assert getattr(stored, field) == value
            assert trigger[field] == value


@pytest.mark.parametrize(
    ("fields", "pointer"),
    [
        ({"trigger_name": ""}, "/trigger_name"),
        ({"external_script_id": "f" * 32}, "/external_script_id"),
        ({"repo_connection_uuid": "not-a-uuid"}, "/repo_connection_uuid"),
        ({"root_directory": "/apps/../../etc"}, "/root_directory"),
        ({"build_timeout_seconds": 10**5}, "/build_timeout_seconds"),
        ({"build_timeout_seconds": 0}, "/build_timeout_seconds"),
        ({"build_image": "evil image; rm -rf /"}, "/build_image"),
        ({"branch_includes": "main"}, "/branch_includes"),
        ({"branch_excludes": [""]}, "/branch_excludes/0"),
        ({"production_branch": "-oops"}, "/production_branch"),
        ({"deploy_command": ""}, "/deploy_command"),
        ({"build_caching_enabled": "sometimes"}, "/build_caching_enabled"),
    ],
)
def test_it_rejects_a_bad_trigger(api, world, fields, pointer):
    errors = failed(api("POST", "triggers", new_trigger_body(world, **fields)), 400)
    assert [e["source"]["pointer"] for e in errors] == [pointer]
    assert Trigger.objects.count() == 1


def test_a_trigger_uses_only_the_accounts_own_worker_and_connection(api, world, other_world):
    errors = failed(
        api(
            "POST",
            "triggers",
            new_trigger_body(
                world,
                external_script_id=other_world.worker.tag,
                repo_connection_uuid=str(other_world.connection.uuid),
            ),
        ),
        400,
    )
    assert {e["source"]["pointer"] for e in errors} == {"/external_script_id", "/repo_connection_uuid"}
    assert Trigger.objects.filter(worker__account=world.worker.account).count() == 1


def test_it_shows_and_changes_a_trigger(api, world):
    assert ok(api("GET", f"triggers/{world.trigger.uuid}"))["trigger_name"] == "Deploy"
    spare = world.spare_connection
    trigger = ok(
        api(
            "PATCH",
            f"triggers/{world.trigger.uuid}",
            {"build_command": "make", "branch_excludes": ["wip/*"], "repo_connection_uuid": str(spare.uuid)},
        )
    )
    assert trigger["build_command"] == "make" and trigger["branch_excludes"] == ["wip/*"]
    world.trigger.refresh_from_db()
    assert (world.trigger.build_command, world.trigger.repo_connection) == ("make", spare)
    assert world.trigger.trigger_name == "Deploy"


def test_a_trigger_stays_with_its_worker(api, account, world):
    other = make_worker(account, "other")
    errors = failed(api("PATCH", f"triggers/{world.trigger.uuid}", {"external_script_id": other.tag}), 400)
    assert errors[0]["message"] == "external_script_id: A trigger cannot move to another worker."
    world.trigger.refresh_from_db()
    assert world.trigger.worker == world.worker


def test_a_change_is_checked_against_the_whole_trigger(api, world):
    errors = failed(api("PATCH", f"triggers/{world.trigger.uuid}", {"root_directory": "../up"}), 400)
    assert errors[0]["source"]["pointer"] == "/root_directory"


def test_deleting_a_trigger_keeps_its_builds(api, world):
    assert ok(api("DELETE", f"triggers/{world.trigger.uuid}")) is None
    assert not Trigger.objects.exists() and not EnvironmentVariable.objects.exists()
    world.build.refresh_from_db()
    assert world.build.trigger is None


# Builds started by hand.


def test_a_branch_builds_its_tip(api, world, monkeypatch, django_capture_on_commit_callbacks):
    dispatched = []
    monkeypatch.setattr("builds.scheduler.dispatch", lambda account_ids: dispatched.append(account_ids) or [])
    with django_capture_on_commit_callbacks(execute=True):
        build = ok(api("POST", f"triggers/{world.trigger.uuid}/builds", {"branch": "main"}))
    stored = Build.objects.get(build_uuid=build["build_uuid"])
    assert (stored.status, stored.branch, stored.commit_hash, stored.source) == ("queued", "main", "", "api")
    assert stored.is_production and stored.deploy_command == "echo deploy"
    assert stored.author == "alice"
    assert build["build_trigger_metadata"]["commit_hash"] == ""
    # Handed to the scheduler when the transaction committed.
    assert dispatched == [{world.worker.account_id}]


def test_another_branch_builds_a_preview(api, world):
    build = ok(api("POST", f"triggers/{world.trigger.uuid}/builds", {"branch": "feature/x"}))
    stored = Build.objects.get(build_uuid=build["build_uuid"])
    assert not stored.is_production and stored.deploy_command == "npx wrangler versions upload"


def test_a_commit_alone_builds_it_as_the_production_branch(api, world):
    build = ok(api("POST", f"triggers/{world.trigger.uuid}/builds", {"commit_hash": SHA.upper()}))
    stored = Build.objects.get(build_uuid=build["build_uuid"])
    assert (stored.branch, stored.commit_hash, stored.is_production) == ("main", SHA, True)


def test_a_branch_and_a_commit_build_that_commit(api, world):
    build = ok(api("POST", f"triggers/{world.trigger.uuid}/builds", {"branch": "dev", "commit_hash": SHA}))
    stored = Build.objects.get(build_uuid=build["build_uuid"])
    assert (stored.branch, stored.commit_hash) == ("dev", SHA)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "branch: Give a branch, a commit_hash, or both."),
        ({"branch": ""}, "branch: This field may not be blank."),
        ({"branch": "--upload-pack=evil"}, "branch: Not a valid git branch name."),
        ({"branch": "has space"}, "branch: Not a valid git branch name."),
        ({"commit_hash": "abc123"}, "commit_hash: Give the full commit hash: 40 (or 64) hex digits."),
        ({"commit_hash": "z" * 40}, "commit_hash: Give the full commit hash: 40 (or 64) hex digits."),
    ],
)
def test_it_rejects_a_bad_manual_build(api, world, body, message):
    assert failed(api("POST", f"triggers/{world.trigger.uuid}/builds", body), 400)[0]["message"] == message
    assert Build.objects.count() == 1


def test_it_purges_the_build_cache(api, world):
    assert cache.cache_dir(world.trigger).exists()
    assert ok(api("POST", f"triggers/{world.trigger.uuid}/purge_build_cache")) is None
    assert not cache.cache_dir(world.trigger).exists()
    # Purging an empty cache is fine too.
    ok(api("POST", f"triggers/{world.trigger.uuid}/purge_build_cache"))


# Variables.


def test_it_lists_variables_with_secrets_as_null(api, world):
    response = api("GET", f"triggers/{world.trigger.uuid}/environment_variables")
    variables = ok(response)
    assert {name: (v["value"], v["is_secret"]) for name, v in variables.items()} == {
        "MODE": ("production", False),
        "TOKEN": (None, True),
    }
    assert all(v["created_on"] for v in variables.values())
    assert "hunter2" not in response.content.decode()


def test_it_adds_and_replaces_variables(api, world):
    response = api(
        "PATCH",
        f"triggers/{world.trigger.uuid}/environment_variables",
        {
            "MODE": {"value": "staging"},
            "NPM_TOKEN": {"value": "npm_s3cret ", "is_secret": True},
            "EMPTY": {"value": ""},
        },
    )
    variables = ok(response)
    assert {name: v["value"] for name, v in variables.items()} == {
        "EMPTY": "",
        "MODE": "staging",
        "NPM_TOKEN": None,
        "TOKEN": None,
    }
    assert "npm_s3cret" not in response.content.decode()
    secret = EnvironmentVariable.objects.get(name="NPM_TOKEN")
    # Stored only encrypted; the value is kept exactly, trailing space included.
    assert secret.value == "" and "npm_s3cret" not in secret.value_encrypted
    assert secret.plaintext() == "npm_s3cret "
    assert world.trigger.variables()[0]["MODE"] == "staging"


def test_a_secret_stays_secret_when_its_value_changes(api, world):
    ok(api("PATCH", f"triggers/{world.trigger.uuid}/environment_variables", {"TOKEN": {"value": "new"}}))
    token = EnvironmentVariable.objects.get(name="TOKEN")
    assert token.is_secret and token.value == "" and token.plaintext() == "new"
    ok(
        api(
            "PATCH",
            f"triggers/{world.trigger.uuid}/environment_variables",
            {"TOKEN": {"value": "public", "is_secret": False}},
        )
    )
    token.refresh_from_db()
    assert (token.is_secret, token.value) == (False, "public")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"1BAD": {"value": "x"}}, "1BAD: Use letters, digits and underscores"),
        ({"CI": {"value": "false"}}, "CI: CI is set by Buildsite and cannot be overridden."),
        ({"WORKERS_CI_BRANCH": {"value": "x"}}, "WORKERS_CI_BRANCH: WORKERS_CI_BRANCH is set by Buildsite"),
        ({"OK": {"value": None}}, "OK.value: This field may not be null."),
        ({"OK": {}}, "OK.value: This field is required."),
        ({"OK": "plain"}, "OK: Invalid data. Expected a dictionary, but got str."),
        ({"OK": {"value": "x" * (64 * 1024 + 1)}}, "OK.value: Ensure this field has no more than 65536 characters."),
        (["OK"], 'Expected a dictionary of items but got type "list".'),
    ],
)
def test_it_rejects_bad_variables_and_saves_none_of_them(api, world, body, message):
    if isinstance(body, dict):
        body = {"FINE": {"value": "1"}, **body}
    errors = failed(api("PATCH", f"triggers/{world.trigger.uuid}/environment_variables", body), 400)
    assert errors[0]["message"].startswith(message)
    assert sorted(EnvironmentVariable.objects.values_list("name", flat=True)) == ["MODE", "TOKEN"]


def test_it_deletes_a_variable(api, world):
    assert ok(api("DELETE", f"triggers/{world.trigger.uuid}/environment_variables/TOKEN")) is None
    assert list(EnvironmentVariable.objects.values_list("name", flat=True)) == ["MODE"]
    errors = failed(api("DELETE", f"triggers/{world.trigger.uuid}/environment_variables/TOKEN"), 404)
    assert errors[0]["message"] == "The trigger has no variable of this name."


def test_variables_belong_to_their_trigger(api, account, world):
    second = Trigger.objects.create(worker=world.worker, repo_connection=make_connection(account), trigger_name="B")
    failed(api("DELETE", f"triggers/{second.uuid}/environment_variables/MODE"), 404)
    assert world.trigger.environment_variables.filter(name="MODE").exists()
