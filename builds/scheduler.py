"""Queued builds -> build slots, and the sweep that keeps the queue honest.

`enqueue(builds)` is what producers call inside the transaction that created builds;
`dispatch(account_ids)` runs when it commits (and whenever a build stops): per account,
oldest first, as many queued builds as the account has free slots move to
`initializing` and are handed to a Build Buddy (a django-q2 task). `sweep()` runs once
a minute as a q2 schedule: it ends builds whose buddy died or which outlived their
timeout, removes what they left on this node, and dispatches anything still queued."""

import contextlib
import datetime
import logging
import uuid
from collections.abc import Iterable

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django_q.tasks import async_task

from accounts.models import Account
from builds import events, executors
from builds.models import ACTIVE_STATUSES, Build, BuildOutcome, BuildStatus
from buildsite.structured_logging import bind

log = logging.getLogger(__name__)

RUN_BUILD_TASK = "builds.tasks.run_build"
SWEEP_TASK = "builds.tasks.sweep"
SWEEP_SCHEDULE_NAME = "Buildsite sweep"


def enqueue(builds: Iterable[Build]) -> None:
    """Call inside the transaction that created the builds: they are dispatched the
    moment it commits, and never if it rolls back."""
    builds = list(builds)
    transaction.on_commit(lambda: dispatch_new(builds))


def dispatch_new(builds: list[Build]) -> None:
    started = {build.pk for build in dispatch({build.account_id for build in builds})}
    # Lists show a new build the moment it exists; one that started already was shown
    # by its move to initializing.
    events.builds_queued([build for build in builds if build.pk not in started])


def dispatch(account_ids: Iterable[str]) -> list[Build]:
    """Start as many queued builds of these accounts as their free slots allow; returns
    the builds started."""
    started = []
    for account_id in sorted(set(account_ids)):
        with bind(account_id=account_id):
            started += fill_slots(account_id)
    return started


def fill_slots(account_id: str) -> list[Build]:
    if not may_start_builds(account_id):
        return []
    with transaction.atomic():
        # The account row's lock makes "count the builds in slots, then take the free
        # ones" one critical section per account: two dispatchers of the same account
        # queue here instead of both seeing the same free slot. (SQLite's IMMEDIATE
        # transactions serialise all writers, which is just as safe.)
        account = Account.objects.select_for_update().filter(pk=account_id).first()
        if account is None:
            return []
        in_slots = Build.objects.filter(account_id=account_id, status__in=ACTIVE_STATUSES).count()
        free = account.concurrency_limit - in_slots
        if free <= 0:
            return []
        # skip_locked: a queued build whose row another transaction holds (being
        # cancelled or superseded right now) is passed over rather than waited for.
        queued = list(
            Build.objects.select_for_update(skip_locked=True)
            .filter(account_id=account_id, status=BuildStatus.QUEUED)
            .order_by("created_on", "pk")[:free]
        )
        started = [build for build in queued if build.transition(BuildStatus.INITIALIZING)]
        transaction.on_commit(lambda: hand_over(started))
    return started


# Plain SQL: this runs once per webhook delivery, and the ORM's version of it (two
# filtered counts over a join) cost more CPU than the rest of dispatch together. The
# statuses are written as the partial indexes on builds_build name them, so both
# subqueries read one of those indexes.
MAY_START_BUILDS_SQL = """
    SELECT (SELECT COUNT(*) FROM builds_build WHERE account_id = a.id AND status IN ('initializing', 'running'))
           < a.concurrency_limit
       AND EXISTS (SELECT 1 FROM builds_build WHERE account_id = a.id AND status = 'queued')
      FROM accounts_account a
     WHERE a.id = %s
"""


def may_start_builds(account_id: str) -> bool:
    """Whether the account has a queued build and a free slot, by one look without a
    lock. Acting on it would be count-then-act; not acting is safe: every producer
    dispatches after committing what it changed (a build queued, a slot freed), so of
    two such changes, the later one's look sees both. The lock is taken only when
    there may be something to start, so a full account (a burst of pushes) costs a
    delivery one query here instead of a locking transaction."""
    with connection.cursor() as cursor:
        cursor.execute(MAY_START_BUILDS_SQL, [account_id])
        row = cursor.fetchone()
    return bool(row and row[0])


def hand_over(builds: Iterable[Build]) -> None:
    """Give each build to a Build Buddy. If the broker is unreachable the build stays
    initializing and unclaimed, and the sweep hands it over again."""
    for build in builds:
        try:
            async_task(RUN_BUILD_TASK, str(build.build_uuid), task_name=f"build-{build.build_uuid}")
        except Exception:  # the sweep retries; a producer must not fail
            log.exception("could not hand build %s to a worker", build.build_uuid)


def sweep() -> dict[str, int]:
    """The safety net, once a minute: reap builds whose buddy is gone or that outlived
    their timeout, hand over again builds no buddy claimed, remove what finished builds
    left on this node, and dispatch every account with queued builds."""
    reaped, handed_over = reap()
    removed = remove_leftovers()
    queued_accounts = set(Build.objects.filter(status=BuildStatus.QUEUED).values_list("account_id", flat=True))
    started = dispatch(queued_accounts | {build.account_id for build in reaped})
    return {"reaped": len(reaped), "handed_over": handed_over, "removed": removed, "started": len(started)}


def reap() -> tuple[list[Build], int]:
    now = timezone.now()
    silent_since = now - datetime.timedelta(seconds=settings.BUILDSITE_HEARTBEAT_TIMEOUT)
    grace = datetime.timedelta(seconds=settings.BUILDSITE_HEARTBEAT_TIMEOUT)
    reaped, unclaimed = [], []
    for build in Build.objects.filter(status__in=ACTIVE_STATUSES):
        if build.runner and build.heartbeat_on < silent_since:
            reason = (
                f"The build's worker ({build.runner}) stopped responding: "
                f"no heartbeat for {settings.BUILDSITE_HEARTBEAT_TIMEOUT} s"
            )
        elif build.deadline + grace < now:
            # A live buddy ends its build at the deadline itself; past it with a grace,
            # the buddy is stuck or no worker ever took the build.
            reason = "Build was timed out" if build.runner else "No worker started the build before its timeout"
        else:
            if not build.runner and build.initializing_on < silent_since:
                unclaimed.append(build)
            continue
        with bind(build_uuid=build.build_uuid, account_id=build.account_id):
            if build.stop(BuildOutcome.TERMINATED, reason):
                log.warning("reaped build %s: %s", build.build_uuid, reason)
                executors.kill_build(build)
                reaped.append(build)
    # A second delivery is harmless: only one buddy can claim a build.
    hand_over(unclaimed)
    return reaped, len(unclaimed)


def remove_leftovers() -> int:
    """Containers, processes and workspaces on this node of builds that are no longer
    active (their buddy died, or was killed with its worker process)."""
    # Listed before the active builds are read: a build that becomes active after this
    # read cannot have left anything yet, so nothing of a live build is removed.
    try:
        found = valid_uuids(executors.leftovers())
    except Exception:  # an engine that is down must not stop the sweep from dispatching
        log.exception("could not list what builds left on this node")
        return 0
    active = {
        str(build_uuid)
        for build_uuid in Build.objects.filter(build_uuid__in=found, status__in=ACTIVE_STATUSES).values_list(
            "build_uuid", flat=True
        )
    }
    for build_uuid in found - active:
        log.warning("removing what build %s left behind", build_uuid)
        executors.remove(build_uuid)
    return len(found - active)


def valid_uuids(values: Iterable[str]) -> set[str]:
    """Only names that are build ids: anything else was not made by a buddy."""
    valid = set()
    for value in values:
        with contextlib.suppress(ValueError):
            valid.add(str(uuid.UUID(value)))
    return valid


def ensure_sweep_schedule(using: str = "default", **kwargs) -> None:
    """post_migrate: the sweep's q2 schedule exists exactly once."""
    from django_q.models import Schedule

    Schedule.objects.using(using).update_or_create(
        name=SWEEP_SCHEDULE_NAME,
        defaults={"func": SWEEP_TASK, "schedule_type": Schedule.MINUTES, "minutes": 1, "repeats": -1},
    )
