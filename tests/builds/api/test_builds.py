"""Builds: detail, cancel, retry, logs by cursor, latest per worker, by version id, a
worker's build history, and the account's limits."""

import json
import threading
import time
import uuid

import pytest
from django.db import connections

from builds import logs
from builds.models import Build, BuildOutcome, BuildStatus, DeployHook, LogChunk
from tests.builds.api.client import failed, ok
from tests.factories import make_build, make_trigger, make_worker

METADATA_FIELDS = {
    "author",
    "branch",
    "build_command",
    "build_trigger_source",
    "commit_hash",
    "commit_message",
    "deploy_command",
    "environment_variables",
    "provider_account_name",
    "provider_type",
    "repo_name",
    "root_directory",
}


def test_it_shows_a_build_in_cloudflares_shape(api, world):
    # As the Build Buddy records them when the build starts running.
    Build.objects.filter(pk=world.build.pk).update(environment_variables=world.trigger.variables()[0])
    response = api("GET", f"builds/{world.build.build_uuid}")
    build = ok(response)
    assert set(build) == {
        "build_uuid",
        "status",
        "build_outcome",
        "created_on",
        "initializing_on",
        "running_on",
        "stopped_on",
        "modified_on",
        "build_trigger_metadata",
        "trigger",
        "pull_request",
        "deploy_hook",
        "reason",
    }
    assert build["build_uuid"] == str(world.build.build_uuid)
    assert (build["status"], build["build_outcome"], build["stopped_on"]) == ("queued", None, None)
    metadata = build["build_trigger_metadata"]
    assert set(metadata) == METADATA_FIELDS
    assert metadata["branch"] == "main" and metadata["build_trigger_source"] == "push"
    assert metadata["commit_hash"] == world.build.commit_hash
    assert metadata["provider_type"] == "github" and metadata["repo_name"] == world.connection.repo_name
    # Only the non-secret variable; the secret's value appears nowhere.
    assert metadata["environment_variables"] == {"MODE": "production"}
    assert "hunter2" not in response.content.decode()
    assert build["trigger"]["trigger_uuid"] == str(world.trigger.uuid)
    assert build["trigger"]["external_script_id"] == world.worker.tag
    assert build["trigger"]["repo_connection"]["repo_connection_uuid"] == str(world.connection.uuid)
    assert build["pull_request"] is None and build["deploy_hook"] is None


def test_it_shows_where_a_build_came_from(api, world):
    pr = make_build(world.trigger, branch="feature", source="pull_request")
    Build.objects.filter(pk=pr.pk).update(
        pull_request={"number": 7, "url": "https://github.com/acme/site/pull/7", "title": "Faster"}
    )
    hook = DeployHook.objects.get()
    hooked = make_build(world.trigger, source="deploy_hook", deploy_hook=hook)
    assert ok(api("GET", f"builds/{pr.build_uuid}"))["pull_request"] == {
        "number": 7,
        "title": "Faster",
        "pull_request_url": "https://github.com/acme/site/pull/7",
    }
    assert ok(api("GET", f"builds/{hooked.build_uuid}"))["deploy_hook"] == {
        "deploy_hook_uuid": str(hook.uuid),
        "deploy_hook_name": "nightly",
    }


def test_a_build_outlives_its_trigger(api, world):
    world.trigger.delete()
    build = ok(api("GET", f"builds/{world.build.build_uuid}"))
    assert build["trigger"] is None
    assert build["build_trigger_metadata"]["build_command"] == "echo build"


def test_an_unknown_build_is_not_found(api, world):
    failed(api("GET", f"builds/{uuid.uuid4()}"), 404)


def test_it_cancels_a_queued_build(api, world):
    build = ok(api("PUT", f"builds/{world.build.build_uuid}/cancel"))
    assert (build["status"], build["build_outcome"], build["reason"]) == ("stopped", "cancelled", "Cancelled by alice.")
    world.build.refresh_from_db()
    assert (world.build.status, world.build.build_outcome) == (BuildStatus.STOPPED, BuildOutcome.CANCELLED)
    assert world.build.stopped_on is not None


def test_it_cancels_a_running_build_and_kills_it(api, world, monkeypatch):
    killed = []
    monkeypatch.setattr("builds.executors.kill_build", killed.append)
    world.build.transition(BuildStatus.INITIALIZING)
    world.build.transition(BuildStatus.RUNNING)
    ok(api("PUT", f"builds/{world.build.build_uuid}/cancel"))
    assert [build.pk for build in killed] == [world.build.pk]


def test_a_stopped_build_cannot_be_cancelled(api, world):
    world.build.stop(BuildOutcome.SUCCESS)
    errors = failed(api("PUT", f"builds/{world.build.build_uuid}/cancel"), 409)
    assert errors == [{"code": 12009, "message": "The build has already stopped."}]
    world.build.refresh_from_db()
    assert world.build.build_outcome == BuildOutcome.SUCCESS


def test_it_retries_a_build_of_the_same_commit(api, world, monkeypatch, django_capture_on_commit_callbacks):
    dispatched = []
    monkeypatch.setattr("builds.scheduler.dispatch", lambda account_ids: dispatched.append(account_ids) or [])
    world.build.stop(BuildOutcome.FAIL, "exit 1")
    with django_capture_on_commit_callbacks(execute=True):
        retry = ok(api("POST", f"builds/{world.build.build_uuid}/retry"))
    assert retry["build_uuid"] != str(world.build.build_uuid)
    assert retry["status"] == "queued"
    assert retry["build_trigger_metadata"]["commit_hash"] == world.build.commit_hash
    assert retry["build_trigger_metadata"]["build_trigger_source"] == "api"
    assert Build.objects.get(build_uuid=retry["build_uuid"]).retry_of == world.build
    assert dispatched == [{world.build.account_id}]


def test_a_build_whose_trigger_is_gone_cannot_be_retried(api, world):
    world.trigger.delete()
    errors = failed(api("POST", f"builds/{world.build.build_uuid}/retry"), 409)
    assert "trigger" in errors[0]["message"]
    assert Build.objects.count() == 1


# Logs.


def read_log(api, build, cursor: str = "") -> tuple[list, str, list[int]]:
    """Follows the cursor until a page comes back empty: (lines, last cursor, page sizes)."""
    lines, sizes = [], []
    while True:
        page = ok(api("GET", f"builds/{build.build_uuid}/logs", **({"cursor": cursor} if cursor else {})))
        sizes.append(len(page["lines"]))
        if not page["lines"]:
            # An empty page hands back the cursor it was given, to poll with.
            assert page["cursor"] == cursor or not cursor
            return lines, page["cursor"], sizes
        lines += page["lines"]
        cursor = page["cursor"]


def write(build, texts: list[str]) -> None:
    logs.append(build, [("stdout", text) for text in texts])


def test_a_log_page_is_cursor_lines_and_truncated(api, world):
    page = ok(api("GET", f"builds/{world.build.build_uuid}/logs"))
    assert set(page) == {"cursor", "lines", "truncated"}
    [[epoch, text]] = page["lines"]
    assert text == "hello"
    assert epoch == pytest.approx(LogChunk.objects.get().timestamp.timestamp(), abs=0.001)
    assert page["truncated"] is False


def test_following_the_cursor_reads_the_whole_log_in_pages(api, world):
    write(world.build, [f"line {i}" for i in range(2, 2346)])
    lines, _, sizes = read_log(api, world.build)
    assert sizes == [1000, 1000, 345, 0]
    assert [text for _, text in lines] == ["hello"] + [f"line {i}" for i in range(2, 2346)]


def test_the_same_cursor_later_returns_only_newer_lines(api, world):
    world.build.transition(BuildStatus.INITIALIZING)
    world.build.transition(BuildStatus.RUNNING)
    lines, cursor, _ = read_log(api, world.build)
    assert [text for _, text in lines] == ["hello"]
    # Lines arrive while the build runs, some during the walk below.
    write(world.build, [f"a{i}" for i in range(1500)])
    first = ok(api("GET", f"builds/{world.build.build_uuid}/logs", cursor=cursor))
    write(world.build, ["b0", "b1"])
    rest, cursor, _ = read_log(api, world.build, first["cursor"])
    assert [text for _, text in first["lines"] + rest] == [f"a{i}" for i in range(1500)] + ["b0", "b1"]
    write(world.build, ["c0"])
    later, _, _ = read_log(api, world.build, cursor)
    assert [text for _, text in later] == ["c0"]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_reader_following_a_build_as_it_writes_misses_nothing(api_for, owner, account):
    build = make_build(make_trigger(make_worker(account, "live")), status=BuildStatus.RUNNING)
    api = api_for(owner)
    done = threading.Event()

    def buddy() -> None:
        try:
            for batch in range(40):
                write(Build.objects.get(pk=build.pk), [f"{batch}:{i}" for i in range(50)])
                time.sleep(0.005)  # a flush interval, so reads fall between batches
        finally:
            done.set()
            connections.close_all()

    writer = threading.Thread(target=buddy)
    writer.start()
    seen, cursor, pages_while_writing = [], "", 0
    while not done.is_set():
        page = ok(api("GET", f"builds/{build.build_uuid}/logs", **({"cursor": cursor} if cursor else {})))
        seen += [text for _, text in page["lines"]]
        pages_while_writing += bool(page["lines"])
        cursor = page["cursor"]
    writer.join()
    assert pages_while_writing > 1
    rest, _, _ = read_log(api, build, cursor)
    seen += [text for _, text in rest]
    assert seen == [f"{batch}:{i}" for batch in range(40) for i in range(50)]


def test_an_invalid_cursor_is_a_400(api, world):
    for cursor in ["nonsense", logs.encode_cursor(1)[:-1] + "!", "djE6LTE"]:
        errors = failed(api("GET", f"builds/{world.build.build_uuid}/logs", cursor=cursor), 400)
        assert errors[0]["source"] == {"pointer": "/cursor"}


def test_a_cursor_past_any_line_the_database_can_hold_is_a_400(api, world):
    failed(api("GET", f"builds/{world.build.build_uuid}/logs", cursor=logs.encode_cursor(2**40)), 400)


def test_a_log_cut_at_the_size_cap_says_truncated(api, world, settings):
    settings.BUILDSITE_LOG_MAX_BYTES = 100
    write(world.build, ["x" * 200])
    assert ok(api("GET", f"builds/{world.build.build_uuid}/logs"))["truncated"] is True


# Latest, by version, a worker's history.


def test_it_gives_the_latest_build_of_each_worker(api, account, world, other_world):
    newer = make_build(world.trigger, branch="next")
    idle = make_worker(account, "idle")
    result = ok(
        api(
            "GET",
            "builds/latest",
            external_script_ids=f"{world.worker.tag},{idle.tag},{other_world.worker.tag},{'0' * 32}",
        )
    )
    assert list(result) == ["builds"]
    assert {tag: build["build_uuid"] for tag, build in result["builds"].items()} == {
        world.worker.tag: str(newer.build_uuid)
    }


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "external_script_ids: This field is required."),
        ({"external_script_ids": ",".join(["a" * 32] * 21)}, "external_script_ids: At most 20 ids, got 21."),
        ({"external_script_ids": "not-a-tag"}, "external_script_ids: A worker tag is 32 hex digits."),
        ({"external_script_ids": " , "}, "external_script_ids: Give at least one id."),
    ],
)
def test_latest_builds_checks_its_ids(api, params, message):
    assert failed(api("GET", "builds/latest", **params), 400)[0]["message"] == message


def test_it_finds_builds_by_version_id(api, world, other_world):
    second = make_build(world.trigger)
    ids = [world.build.build_uuid, second.build_uuid, other_world.build.build_uuid, uuid.uuid4()]
    result = ok(api("GET", "builds", version_ids=",".join(map(str, ids))))
    assert set(result["builds"]) == {str(world.build.build_uuid), str(second.build_uuid)}
    assert result["builds"][str(second.build_uuid)]["build_uuid"] == str(second.build_uuid)


@pytest.mark.parametrize(
    ("version_ids", "message"),
    [
        (",".join(str(uuid.uuid4()) for _ in range(21)), "version_ids: At most 20 ids, got 21."),
        ("123", "version_ids: Must be a valid UUID."),
    ],
)
def test_builds_by_version_checks_its_ids(api, version_ids, message):
    assert failed(api("GET", "builds", version_ids=version_ids), 400)[0]["message"] == message


def test_twenty_ids_are_allowed(api, world):
    ids = [str(world.build.build_uuid)] + [str(uuid.uuid4()) for _ in range(19)]
    assert list(ok(api("GET", "builds", version_ids=",".join(ids)))["builds"]) == [str(world.build.build_uuid)]


def test_a_workers_builds_come_newest_first_in_pages(api, world):
    newer = [make_build(world.trigger, branch=f"b{i}") for i in range(4)]
    path = f"workers/{world.worker.tag}/builds"
    body = api("GET", path, per_page=2).json()
    assert [b["build_uuid"] for b in body["result"]] == [str(newer[3].build_uuid), str(newer[2].build_uuid)]
    assert body["result_info"] == {"page": 1, "per_page": 2, "count": 2, "total_count": 5, "total_pages": 3}
    last = api("GET", path, per_page=2, page=3).json()
    assert [b["build_uuid"] for b in last["result"]] == [str(world.build.build_uuid)]
    assert ok(api("GET", path, per_page=2, page=4)) == []


def test_a_workers_builds_filter_by_branch_and_outcome(api, world):
    failed_build = make_build(world.trigger, branch="dev")
    failed_build.stop(BuildOutcome.FAIL, "exit 2")
    make_build(world.trigger, branch="dev")
    path = f"workers/{world.worker.tag}/builds"
    assert len(ok(api("GET", path, branch="dev"))) == 2
    assert [b["build_uuid"] for b in ok(api("GET", path, branch="dev", build_outcome="fail"))] == [
        str(failed_build.build_uuid)
    ]
    assert ok(api("GET", path, build_outcome="success")) == []


@pytest.mark.parametrize(
    ("params", "pointer"),
    [({"build_outcome": "exploded"}, "/build_outcome"), ({"page": 0}, "/page"), ({"per_page": 101}, "/per_page")],
)
def test_a_workers_builds_check_their_filters(api, world, params, pointer):
    errors = failed(api("GET", f"workers/{world.worker.tag}/builds", **params), 400)
    assert errors[0]["source"]["pointer"] == pointer


def test_the_account_limits_count_what_runs_and_waits(api, account, world):
    running = make_build(world.trigger)
    running.transition(BuildStatus.INITIALIZING)
    make_build(world.trigger)
    limits = ok(api("GET", "account/limits"))
    assert limits == {
        "concurrency_limit": account.concurrency_limit,
        "running_builds": 1,
        "queued_builds": 2,
        "has_reached_build_minutes_limit": False,
        "build_minutes_refresh_on": None,
    }


def test_responses_never_contain_a_secret(api, world):
    for path in ["builds/latest?external_script_ids=" + world.worker.tag, f"builds/{world.build.build_uuid}"]:
        assert "hunter2" not in json.dumps(api("GET", path).json())
