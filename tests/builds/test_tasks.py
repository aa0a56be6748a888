"""The q2 tasks in a real `manage.py qcluster` subprocess against the test database,
Redis and Docker: concurrency limits over many builds, cancel from another process,
and the reaper after the worker running a build is killed with SIGKILL."""

import os
import signal
import time
from pathlib import Path

import pytest
from django.db import transaction
from django_q.models import Schedule

from builds import executors, scheduler, tasks
from builds.models import Build, BuildOutcome, BuildStatus
from tests.builds.processes import QCluster, app_env
from tests.builds.running import (
    docker_container_exists,
    log_of,
    output_of,
    site_trigger,
    system_lines,
    wait_for,
    wait_for_line,
)
from tests.factories import make_account

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.docker,
    pytest.mark.django_db(transaction=True),
]

HEARTBEAT_TIMEOUT = 3


@pytest.fixture(scope="module")
def cluster_env(tmp_path_factory, django_db_setup, django_db_blocker):
    """The environment of the cluster, whose settings the test process mirrors."""
    with django_db_blocker.unblock():
        return app_env(
            tmp_path_factory.mktemp("cluster-workspaces"),
            BUILDSITE_Q_WORKERS="4",
            BUILDSITE_HEARTBEAT_SECONDS="1",
            BUILDSITE_HEARTBEAT_TIMEOUT=str(HEARTBEAT_TIMEOUT),
        )


@pytest.fixture(scope="module")
def cluster_once(cluster_env, tmp_path_factory):
    cluster = QCluster(cluster_env, tmp_path_factory.mktemp("cluster") / "qcluster.log")
    yield cluster
    cluster.stop()


@pytest.fixture
def cluster(cluster_once, transactional_db):
    # Started here, after the service markers were checked (a module fixture would
    # run before that check).
    cluster_once.start()
    # These tests sweep when they mean to. The cluster's own once-a-minute sweep (its
    # schedule is made again by every flush of the tables) would race them: it would
    # reap the build whose worker the reaper test killed before the test looks.
    Schedule.objects.filter(name=scheduler.SWEEP_SCHEDULE_NAME).delete()
    return cluster_once


@pytest.fixture
def cluster_settings(settings, cluster_env):
    settings.BUILDSITE_WORKSPACE_DIR = Path(cluster_env["BUILDSITE_WORKSPACE_DIR"])
    settings.BUILDSITE_HEARTBEAT_TIMEOUT = HEARTBEAT_TIMEOUT
    return settings


def push(trigger, count: int = 1) -> list[Build]:
    """What a webhook does: queue builds and hand them to the scheduler on commit."""
    with transaction.atomic():
        builds = [trigger.new_build(branch="main", commit_hash="", source="push") for _ in range(count)]
        scheduler.enqueue(builds)
    return builds


def max_overlap(builds) -> int:
    """The most builds ever holding a slot at once, from recorded timestamps."""
    events = sorted([(b.initializing_on, 1) for b in builds] + [(b.stopped_on, -1) for b in builds])
    most = current = 0
    for _, change in events:
        current += change
        most = max(most, current)
    return most


def test_thirty_builds_with_limit_two_never_overlap_more_and_accounts_do_not_block(
    cluster, cluster_settings, tmp_path, owner
):
    busy = make_account("Busy", owner=owner, concurrency_limit=2)
    other = make_account("Other", owner=owner, concurrency_limit=2)
    build_command = "echo building"
    busy_builds = push(site_trigger(busy, tmp_path, "busy", build_command=build_command, deploy_command="true"), 30)
    other_builds = push(site_trigger(other, tmp_path, "other", build_command=build_command, deploy_command="true"), 3)
    everything = [*busy_builds, *other_builds]

    wait_for(
        lambda: not Build.objects.filter(pk__in=[b.pk for b in everything]).exclude(status="stopped").exists(),
        timeout=150,
        message="all 33 builds to stop",
    )
    busy_builds = list(Build.objects.filter(account=busy).order_by("created_on"))
    other_builds = list(Build.objects.filter(account=other).order_by("created_on"))
    assert {b.build_outcome for b in busy_builds + other_builds} == {BuildOutcome.SUCCESS}
    assert all(("stdout", "building") in output_of(build) for build in busy_builds + other_builds)
    # Never more than the limit, and the limit was used.
    assert max_overlap(busy_builds) == 2
    assert max_overlap(other_builds) <= 2
    # Oldest first within the account.
    assert sorted(busy_builds, key=lambda b: b.initializing_on) == busy_builds
    # The other account, queued after the busy one's 30, did not wait for them.
    assert max(b.initializing_on for b in other_builds) < max(b.initializing_on for b in busy_builds)


def test_a_build_in_the_cluster_is_cancelled_from_this_process_in_seconds(cluster, cluster_settings, tmp_path, account):
    trigger = site_trigger(account, tmp_path, "cancel", build_command="echo started; sleep 60", deploy_command="true")
    (build,) = push(trigger)
    wait_for_line(build, "started")
    assert docker_container_exists(build)

    cancelled_at = time.monotonic()
    assert Build.objects.get(pk=build.pk).cancel("Cancelled by alice")
    # The buddy, in the cluster, notices, cleans up and writes its last line.
    wait_for(lambda: "Build cancelled after" in system_lines(build), timeout=5, message="the buddy's last line")
    wait_for(lambda: not docker_container_exists(build), timeout=5, message="the container to go")
    assert time.monotonic() - cancelled_at < 5
    build.refresh_from_db()
    assert (build.status, build.build_outcome, build.reason) == ("stopped", "cancelled", "Cancelled by alice")


# Also the fault suite's kill -9 of a q2 worker during a build (pytest -m faults).
@pytest.mark.faults
def test_a_build_whose_worker_is_killed_is_reaped_and_never_run_again(cluster, cluster_settings, tmp_path, account):
    trigger = site_trigger(account, tmp_path, "doomed", build_command="echo started; sleep 60", deploy_command="true")
    (build,) = push(trigger)
    wait_for_line(build, "started")
    build.refresh_from_db()
    host, _, pid = build.runner.rpartition(":")
    assert build.status == BuildStatus.RUNNING and host and pid.isdigit()

    os.kill(int(pid), signal.SIGKILL)
    # Nobody is left to stop the build or remove its container: that is the reaper's job.
    time.sleep(HEARTBEAT_TIMEOUT + 1)
    assert Build.objects.get(pk=build.pk).status == BuildStatus.RUNNING
    scheduler.sweep()

    build.refresh_from_db()
    assert (build.status, build.build_outcome) == (BuildStatus.STOPPED, BuildOutcome.TERMINATED)
    assert build.reason == (
        f"The build's worker ({build.runner}) stopped responding: no heartbeat for {HEARTBEAT_TIMEOUT} s"
    )
    assert not docker_container_exists(build)
    assert not executors.workspace_dir(str(build.build_uuid)).exists()

    # Not run again: not by the cluster (which replaced its dead worker), nor by a
    # second delivery of its task.
    lines = log_of(build)
    assert tasks.run_build(str(build.build_uuid)) == "not run"
    time.sleep(2)
    build.refresh_from_db()
    assert (build.status, build.build_outcome) == (BuildStatus.STOPPED, BuildOutcome.TERMINATED)
    assert log_of(build) == lines
    assert not docker_container_exists(build)
