"""Workers (ours: created through the API) and their deploy hooks."""

import pytest

from builds.models import Build, BuildStatus, DeployHook, Trigger, Worker
from tests.builds.api.client import failed, ok
from tests.factories import make_build, make_trigger, make_worker


def test_it_lists_the_accounts_workers_by_name(api, account, world, other_world):
    make_worker(account, "alpha")
    assert [w["name"] for w in ok(api("GET", "workers"))] == ["alpha", "site"]


def test_it_creates_a_worker(api, account):
    worker = ok(api("POST", "workers", {"name": "docs-site"}))
    stored = Worker.objects.get(account=account, name="docs-site")
    assert worker == {
        "tag": stored.tag,
        "name": "docs-site",
        "badge_enabled": False,
        "created_on": worker["created_on"],
        "modified_on": worker["modified_on"],
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "name: This field is required."),
        ({"name": ""}, "name: This field may not be blank."),
        ({"name": "Has Spaces"}, "name: Use lowercase letters, digits and dashes"),
        ({"name": "-dash"}, "name: Use lowercase letters"),
        ({"name": "x" * 64}, "name: Ensure this field has no more than 63 characters."),
        ({"name": "site"}, "name: Another worker in this account has this name."),
        ({"name": "ok", "badge_enabled": "maybe"}, "badge_enabled: Must be a valid boolean."),
    ],
)
def test_it_rejects_a_bad_worker(api, world, body, message):
    errors = failed(api("POST", "workers", body), 400)
    assert errors[0]["message"].startswith(message)
    assert Worker.objects.filter(account=world.worker.account).count() == 1


def test_a_name_is_unique_per_account_only(api, other_world):
    ok(api("POST", "workers", {"name": other_world.worker.name}))


def test_it_shows_renames_and_changes_a_worker(api, world):
    assert ok(api("GET", f"workers/{world.worker.tag}"))["name"] == "site"
    worker = ok(api("PATCH", f"workers/{world.worker.tag}", {"name": "www", "badge_enabled": True}))
    assert (worker["name"], worker["badge_enabled"], worker["tag"]) == ("www", True, world.worker.tag)
    world.worker.refresh_from_db()
    assert (world.worker.name, world.worker.badge_enabled) == ("www", True)


def test_a_rename_cannot_take_another_workers_name(api, account, world):
    make_worker(account, "taken")
    errors = failed(api("PATCH", f"workers/{world.worker.tag}", {"name": "taken"}), 400)
    assert errors[0]["source"] == {"pointer": "/name"}
    world.worker.refresh_from_db()
    assert world.worker.name == "site"


def test_deleting_a_worker_cancels_its_builds_then_deletes_everything(api, world, monkeypatch):
    killed = []
    monkeypatch.setattr("builds.executors.kill_build", killed.append)
    running = make_build(world.trigger)
    running.transition(BuildStatus.INITIALIZING)
    finished = make_build(world.trigger)
    finished.stop("success")
    assert ok(api("DELETE", f"workers/{world.worker.tag}")) is None
    # The queued and the initializing build were cancelled (and killed); not the finished one.
    assert sorted(b.pk for b in killed) == sorted([world.build.pk, running.pk])
    assert all(b.build_outcome == "cancelled" for b in killed)
    assert not Worker.objects.filter(pk=world.worker.pk).exists()
    assert not Trigger.objects.exists() and not DeployHook.objects.exists() and not Build.objects.exists()
    failed(api("GET", f"workers/{world.worker.tag}"), 404)


def test_it_lists_a_workers_triggers(api, world):
    second = make_trigger(world.worker, world.connection, trigger_name="Preview")
    make_trigger(make_worker(world.worker.account, "other"), world.connection)
    triggers = ok(api("GET", f"workers/{world.worker.tag}/triggers"))
    assert [t["trigger_uuid"] for t in triggers] == [str(world.trigger.uuid), str(second.uuid)]


# Deploy hooks.


def test_it_creates_a_deploy_hook_and_shows_its_url(api, world):
    hook = ok(api("POST", f"workers/{world.worker.tag}/deploy_hooks", {"name": "cms", "branch": "release/1"}))
    stored = DeployHook.objects.get(uuid=hook["deploy_hook_uuid"])
    assert (stored.worker, stored.trigger) == (world.worker, world.trigger)
    assert (stored.branch, stored.name) == ("release/1", "cms")
    assert hook["url"] == stored.url and stored.hook_id in hook["url"]
    assert hook["trigger_uuid"] == str(world.trigger.uuid)


def test_a_hook_names_its_trigger_when_the_worker_has_several(api, world):
    second = make_trigger(world.worker, world.connection, trigger_name="Preview")
    path = f"workers/{world.worker.tag}/deploy_hooks"
    errors = failed(api("POST", path, {"name": "cms", "branch": "main"}), 400)
    assert errors[0]["message"] == "trigger_uuid: Name the trigger: this worker has several."
    hook = ok(api("POST", path, {"name": "cms", "branch": "main", "trigger_uuid": str(second.uuid)}))
    assert DeployHook.objects.get(uuid=hook["deploy_hook_uuid"]).trigger == second


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        ({"branch": "main"}, "/name"),
        ({"name": "x" * 59, "branch": "main"}, "/name"),
        ({"name": "cms"}, "/branch"),
        ({"name": "cms", "branch": "-rf"}, "/branch"),
        ({"name": "cms", "branch": "a..b"}, "/branch"),
        ({"name": "cms", "branch": "main", "trigger_uuid": "nope"}, "/trigger_uuid"),
    ],
)
def test_it_rejects_a_bad_deploy_hook(api, world, body, pointer):
    errors = failed(api("POST", f"workers/{world.worker.tag}/deploy_hooks", body), 400)
    assert errors[0]["source"]["pointer"] == pointer
    assert DeployHook.objects.count() == 1


def test_a_hook_cannot_use_another_workers_trigger(api, world, other_world):
    elsewhere = make_trigger(make_worker(world.worker.account, "other"), world.connection)
    for trigger in (elsewhere, other_world.trigger):
        body = {"name": "cms", "branch": "main", "trigger_uuid": str(trigger.uuid)}
        failed(api("POST", f"workers/{world.worker.tag}/deploy_hooks", body), 400)
    assert DeployHook.objects.count() == 2


def test_hook_urls_are_for_admins_only(api, api_for, reader, member, world):
    path = f"workers/{world.worker.tag}/deploy_hooks"
    [hook] = ok(api("GET", path))
    assert hook["url"] == world.hook.url and hook["name"] == "nightly"
    for user in (reader, member):
        [hook] = ok(api_for(user)("GET", path))
        assert hook["url"] is None and hook["deploy_hook_uuid"] == str(world.hook.uuid)


def test_it_deletes_a_deploy_hook(api, world):
    assert ok(api("DELETE", f"workers/{world.worker.tag}/deploy_hooks/{world.hook.uuid}")) is None
    assert not DeployHook.objects.exists()


def test_a_hook_is_deleted_only_under_its_own_worker(api, account, world):
    other = make_worker(account, "other")
    failed(api("DELETE", f"workers/{other.tag}/deploy_hooks/{world.hook.uuid}"), 404)
    assert DeployHook.objects.filter(pk=world.hook.pk).exists()
