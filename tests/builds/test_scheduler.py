"""The scheduler: slots per account, FIFO, the hand-over to django-q2 and the sweep.
Builds handed over here wait in the real broker (taken out again by `handed_over`);
tests/builds/test_cluster.py runs them in a real `manage.py qcluster`."""

import datetime
import threading
import uuid

import docker
import pytest
from django.db import connections
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.models import Schedule
from django_q.signing import SignedPackage

from builds import executors, scheduler
from builds.executors.docker import BUILD_LABEL, INSTALLATION_LABEL, container_name, installation
from builds.models import Build, BuildOutcome, BuildStatus
from tests.builds.running import at_once, docker_container_exists
from tests.conftest import TEST_IMAGE
from tests.factories import make_build, make_trigger, make_worker


@pytest.fixture
def broker():
    broker = get_broker()
    broker.purge_queue()
    yield broker
    broker.purge_queue()


def handed_over(broker) -> list[str]:
    """Build ids of the run_build tasks waiting in the broker, taken out of it."""
    ids = []
    while broker.queue_size():
        for task_id, pack in broker.dequeue() or []:
            task = SignedPackage.loads(pack)
            assert task["func"] == scheduler.RUN_BUILD_TASK
            ids.append(task["args"][0])
            broker.acknowledge(task_id)
    return ids


def queued_builds(account, count: int) -> list[Build]:
    trigger = make_trigger(make_worker(account))
    start = timezone.now() - datetime.timedelta(minutes=10)
    builds = [make_build(trigger) for _ in range(count)]
    # Explicit, distinct ages: the queue is ordered by them.
    for i, build in enumerate(builds):
        Build.objects.filter(pk=build.pk).update(created_on=start + datetime.timedelta(seconds=i))
        build.refresh_from_db()
    return builds


def statuses(builds) -> list[str]:
    return [Build.objects.get(pk=build.pk).status for build in builds]


@pytest.mark.django_db(transaction=True)
def test_dispatch_takes_the_oldest_queued_builds_into_free_slots(account, broker):
    account.concurrency_limit = 2
    account.save()
    builds = queued_builds(account, 4)

    started = scheduler.dispatch({account.id})
    assert [b.pk for b in started] == [builds[0].pk, builds[1].pk]
    assert statuses(builds) == ["initializing", "initializing", "queued", "queued"]
    assert sorted(handed_over(broker)) == sorted(str(b.build_uuid) for b in builds[:2])

    # No free slot: nothing moves, nothing is handed over.
    assert scheduler.dispatch({account.id}) == []
    assert handed_over(broker) == []

    # A build that stops frees its slot for the next oldest.
    Build.objects.get(pk=builds[1].pk).stop(BuildOutcome.SUCCESS)
    assert [b.pk for b in scheduler.dispatch({account.id})] == [builds[2].pk]
    assert statuses(builds) == ["initializing", "stopped", "initializing", "queued"]
    assert handed_over(broker) == [str(builds[2].build_uuid)]


@pytest.mark.django_db(transaction=True)
def test_enqueue_dispatches_only_when_the_transaction_commits(account, broker):
    from django.db import transaction

    trigger = make_trigger(make_worker(account))
    with pytest.raises(RuntimeError), transaction.atomic():
        build = make_build(trigger)
        scheduler.enqueue([build])
        raise RuntimeError("the webhook failed after queueing")
    assert not Build.objects.exists() and handed_over(broker) == []

    with transaction.atomic():
        build = make_build(trigger)
        scheduler.enqueue([build])
        assert Build.objects.get(pk=build.pk).status == BuildStatus.QUEUED
    assert Build.objects.get(pk=build.pk).status == BuildStatus.INITIALIZING
    assert handed_over(broker) == [str(build.build_uuid)]


@pytest.mark.django_db(transaction=True)
def test_accounts_do_not_block_each_other(account, other_account, broker):
    account.concurrency_limit = 1
    account.save()
    busy = queued_builds(account, 3)
    Build.objects.get(pk=busy[0].pk).transition(BuildStatus.INITIALIZING)
    other = queued_builds(other_account, 2)

    started = scheduler.dispatch({account.id, other_account.id})
    assert sorted(b.pk for b in started) == sorted(b.pk for b in other)
    assert statuses(busy) == ["initializing", "queued", "queued"]
    assert len(handed_over(broker)) == 2


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_racing_dispatchers_never_take_more_slots_than_the_limit(account, broker):
    account.concurrency_limit = 3
    account.save()
    builds = queued_builds(account, 12)
    at_once(*[lambda: scheduler.dispatch({account.id})] * 6)
    assert statuses(builds) == ["initializing"] * 3 + ["queued"] * 9
    assert sorted(handed_over(broker)) == sorted(str(b.build_uuid) for b in builds[:3])


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_dispatching_a_full_account_does_not_wait_for_its_lock(account, broker):
    """A burst of pushes to an account whose slots are taken: each one's dispatch
    sees there is nothing to start without queueing behind the others' locks."""
    account.concurrency_limit = 1
    account.save()
    running, waiting = queued_builds(account, 2)
    assert running.transition(BuildStatus.INITIALIZING)
    holder = connections.create_connection("default")
    done = threading.Event()

    def dispatcher() -> None:
        try:
            scheduler.dispatch({account.id})
            done.set()
        finally:
            connections.close_all()

    try:
        with holder.cursor() as cursor:
            cursor.execute("BEGIN")
            cursor.execute("SELECT id FROM accounts_account WHERE id = %s FOR UPDATE", [account.id])
            thread = threading.Thread(target=dispatcher)
            thread.start()
            # Returns while another transaction still holds the account's lock.
            assert done.wait(timeout=30)
            cursor.execute("ROLLBACK")
        thread.join()
    finally:
        holder.close()
    assert statuses([running, waiting]) == ["initializing", "queued"]

    # With a free slot the dispatcher does take the lock, and starts the build.
    Build.objects.get(pk=running.pk).stop(BuildOutcome.SUCCESS)
    assert [b.pk for b in scheduler.dispatch({account.id})] == [waiting.pk]


def claimed(build, *, heartbeat_age: int = 0, slot_age: int = 0) -> Build:
    assert build.transition(BuildStatus.INITIALIZING)
    assert build.claim("node-1:4242")
    now = timezone.now()
    Build.objects.filter(pk=build.pk).update(
        heartbeat_on=now - datetime.timedelta(seconds=heartbeat_age),
        initializing_on=now - datetime.timedelta(seconds=slot_age),
    )
    build.refresh_from_db()
    return build


@pytest.mark.django_db(transaction=True)
def test_the_sweep_terminates_a_build_whose_worker_went_silent_and_starts_the_next(account, broker, settings):
    settings.BUILDSITE_HEARTBEAT_TIMEOUT = 60
    account.concurrency_limit = 1
    account.save()
    silent, waiting = queued_builds(account, 2)
    claimed(silent, heartbeat_age=61, slot_age=61)

    result = scheduler.sweep()

    silent.refresh_from_db()
    assert (silent.status, silent.build_outcome) == (BuildStatus.STOPPED, BuildOutcome.TERMINATED)
    assert silent.reason == "The build's worker (node-1:4242) stopped responding: no heartbeat for 60 s"
    assert statuses([waiting]) == ["initializing"]
    assert handed_over(broker) == [str(waiting.build_uuid)]
    assert result["reaped"] == 1 and result["started"] == 1


@pytest.mark.django_db(transaction=True)
def test_the_sweep_leaves_live_builds_alone_and_ends_those_past_their_timeout(account, broker, settings):
    settings.BUILDSITE_HEARTBEAT_TIMEOUT = 60
    trigger = make_trigger(make_worker(account), build_timeout_seconds=600)
    live = claimed(make_build(trigger), heartbeat_age=5, slot_age=300)
    stuck = claimed(make_build(trigger), heartbeat_age=5, slot_age=600 + 61)

    scheduler.sweep()

    live.refresh_from_db()
    stuck.refresh_from_db()
    assert live.status == BuildStatus.INITIALIZING
    assert (stuck.build_outcome, stuck.reason) == (BuildOutcome.TERMINATED, "Build was timed out")


@pytest.mark.django_db(transaction=True)
def test_the_sweep_hands_unclaimed_builds_over_again_until_their_timeout(account, broker, settings):
    settings.BUILDSITE_HEARTBEAT_TIMEOUT = 60
    trigger = make_trigger(make_worker(account), build_timeout_seconds=600)
    lost, too_late, fresh = (make_build(trigger) for _ in range(3))
    for build, age in ((lost, 120), (too_late, 700), (fresh, 10)):
        build.transition(BuildStatus.INITIALIZING)
        Build.objects.filter(pk=build.pk).update(initializing_on=timezone.now() - datetime.timedelta(seconds=age))
    handed_over(broker)

    scheduler.sweep()

    assert statuses([lost, too_late, fresh]) == ["initializing", "stopped", "initializing"]
    assert Build.objects.get(pk=too_late.pk).reason == "No worker started the build before its timeout"
    # Handing over twice is safe: only one buddy can claim a build.
    assert handed_over(broker) == [str(lost.build_uuid)]


@pytest.mark.docker
@pytest.mark.django_db(transaction=True)
def test_the_sweep_removes_what_finished_builds_left_on_this_node(account, broker, build_settings):
    trigger = make_trigger(make_worker(account))
    finished = make_build(trigger)
    finished.stop(BuildOutcome.CANCELLED, "Cancelled by alice")
    running = claimed(make_build(trigger))
    # A build of another Buildsite using the same engine: not in this database.
    elsewhere = str(uuid.uuid4())
    client = docker.from_env()
    for build_uuid, made_by in (
        (str(finished.build_uuid), installation()),
        (str(running.build_uuid), installation()),
        (elsewhere, "another-installation"),
    ):
        if made_by == installation():
            executors.workspace_dir(build_uuid).mkdir(parents=True)
        client.containers.run(
            TEST_IMAGE,
            ["sleep", "60"],
            name=container_name(build_uuid),
            labels={BUILD_LABEL: build_uuid, INSTALLATION_LABEL: made_by},
            detach=True,
        )
    try:
        assert scheduler.sweep()["removed"] == 1
        assert not docker_container_exists(finished)
        assert not executors.workspace_dir(str(finished.build_uuid)).exists()
        assert docker_container_exists(running)
        assert executors.workspace_dir(str(running.build_uuid)).exists()
        assert container_name(elsewhere) in {c.name for c in client.containers.list()}
    finally:
        for build_uuid in (str(running.build_uuid), elsewhere):
            executors.get_executor().remove(build_uuid)


@pytest.mark.django_db
def test_the_sweep_is_scheduled_once_a_minute_exactly_once():
    scheduler.ensure_sweep_schedule()
    scheduler.ensure_sweep_schedule()
    schedule = Schedule.objects.get(name=scheduler.SWEEP_SCHEDULE_NAME)
    assert (schedule.func, schedule.schedule_type, schedule.minutes, schedule.repeats) == (
        "builds.tasks.sweep",
        Schedule.MINUTES,
        1,
        -1,
    )
