from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from builds.models import Build, BuildSource, BuildStatus, DeployHook
from tests.builds.running import at_once
from tests.factories import make_build, make_trigger, make_worker


def make_hook(trigger, branch: str = "main", name: str = "CMS") -> DeployHook:
    return DeployHook.objects.create(worker=trigger.worker, trigger=trigger, name=name, branch=branch)


@pytest.fixture
def trigger(account):
    return make_trigger(make_worker(account, "site"), production_branch="main")


@pytest.fixture
def hook(trigger):
    return make_hook(trigger)


def fire(client, hook_id: str):
    return client.post(f"/client/v4/workers/builds/deploy_hooks/{hook_id}")


def start(build: Build) -> None:
    """What the scheduler does: the build leaves the queue."""
    assert build.transition(BuildStatus.INITIALIZING)


def test_a_deploy_hook_queues_a_build_of_the_tip_of_its_branch(client, hook):
    before = timezone.now()
    response = fire(client, hook.hook_id)
    assert response.status_code == 202
    body = response.json()
    assert body["success"] is True and body["errors"] == []
    build = Build.objects.get()
    assert body["result"] == {
        "already_exists": False,
        "build_uuid": str(build.build_uuid),
        "created_on": build.created_on.isoformat(),
        "status": "queued",
        "branch": "main",
        "worker": "site",
    }
    assert (build.branch, build.commit_hash, build.source) == ("main", "", BuildSource.DEPLOY_HOOK)
    assert build.deploy_hook == hook and build.trigger == hook.trigger and build.is_production
    hook.refresh_from_db()
    assert before <= hook.last_triggered_on <= timezone.now()


def test_firing_again_while_the_build_waits_returns_the_same_build(client, hook):
    first = fire(client, hook.hook_id).json()["result"]
    response = fire(client, hook.hook_id)
    assert response.status_code == 200
    assert response.json()["result"]["already_exists"] is True
    assert response.json()["result"]["build_uuid"] == first["build_uuid"]
    assert Build.objects.count() == 1


def test_once_the_build_started_the_hook_queues_a_new_one(client, hook):
    start(Build.objects.get(build_uuid=fire(client, hook.hook_id).json()["result"]["build_uuid"]))
    response = fire(client, hook.hook_id)
    assert response.status_code == 202 and response.json()["result"]["already_exists"] is False
    assert Build.objects.count() == 2


def test_a_hook_build_supersedes_older_queued_builds_of_its_branch(client, trigger, hook):
    older = make_build(trigger, branch="main")
    fire(client, hook.hook_id)
    older.refresh_from_db()
    assert older.build_outcome == "skipped" and older.reason.startswith("Superseded by build")


@pytest.mark.parametrize("hook_id", ["doesnotexist", "x" * 65, "bad%00id", "a.b"])
def test_an_unknown_hook_is_404_and_saves_nothing(client, hook, hook_id):
    response = fire(client, hook_id)
    assert response.status_code == 404
    assert response.json() == {
        "success": False,
        "errors": [{"code": 12000, "message": "No deploy hook has this URL."}],
        "messages": [],
        "result": None,
        "result_info": None,
    }
    assert not Build.objects.exists()
    hook.refresh_from_db()
    assert hook.last_triggered_on is None


def test_a_deploy_hook_only_answers_post(client, hook):
    response = client.get(f"/client/v4/workers/builds/deploy_hooks/{hook.hook_id}")
    assert response.status_code == 405 and response["Allow"] == "POST"
    assert response.json()["success"] is False
    assert not Build.objects.exists()


def recent_hook_builds(trigger, count: int, oldest_age: int) -> None:
    """`count` deploy hook builds, already started, the oldest `oldest_age` seconds old."""
    now = timezone.now()
    for i in range(count):
        make_build(
            trigger,
            source=BuildSource.DEPLOY_HOOK,
            status=BuildStatus.RUNNING,
            created_on=now - timedelta(seconds=oldest_age - i),
        )


def test_at_most_10_hook_builds_per_worker_per_minute(client, trigger, hook):
    recent_hook_builds(trigger, 10, oldest_age=50)
    response = fire(client, hook.hook_id)
    assert response.status_code == 429
    # The oldest of the ten leaves the one-minute window in 10 seconds.
    assert response["Retry-After"] == "10"
    assert response.json()["errors"][0]["message"] == (
        "At most 10 deploy hook builds per minute for worker site. Retry in 10 s."
    )
    assert Build.objects.count() == 10
    hook.refresh_from_db()
    assert hook.last_triggered_on is None


def test_hook_builds_older_than_a_minute_do_not_count(client, trigger, hook):
    recent_hook_builds(trigger, 10, oldest_age=70)  # ages 70 .. 61 s
    assert fire(client, hook.hook_id).status_code == 202


def test_other_builds_do_not_count_against_the_hook_limit(client, trigger, hook):
    for _ in range(10):
        make_build(trigger, source=BuildSource.PUSH, status=BuildStatus.RUNNING)
    assert fire(client, hook.hook_id).status_code == 202


def test_at_most_100_hook_builds_per_account_per_minute(client, account, hook):
    for n in range(10):
        recent_hook_builds(make_trigger(make_worker(account, f"w{n}")), 10, oldest_age=30)
    response = fire(client, hook.hook_id)
    assert response.status_code == 429
    assert 1 <= int(response["Retry-After"]) <= 31
    assert "At most 100 deploy hook builds per minute for this account." in response.json()["errors"][0]["message"]
    assert Build.objects.count() == 100


def test_another_accounts_hook_builds_do_not_count(client, other_account, hook):
    recent_hook_builds(make_trigger(make_worker(other_account, "theirs")), 10, oldest_age=30)
    assert fire(client, hook.hook_id).status_code == 202


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_parallel_hooks_never_exceed_the_worker_limit(account):
    trigger = make_trigger(make_worker(account, "burst"))
    # Twelve hooks on different branches, so none is served by another's queued build.
    hooks = [make_hook(trigger, branch=f"b{n}", name=f"hook {n}") for n in range(12)]
    responses = at_once(*[lambda hook_id=hook.hook_id: fire(Client(), hook_id) for hook in hooks])
    statuses = [response.status_code for response in responses]
    assert sorted(statuses) == [202] * 10 + [429] * 2
    assert Build.objects.filter(source=BuildSource.DEPLOY_HOOK).count() == 10
