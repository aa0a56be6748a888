"""Which pushes start which builds: a connection's triggers (read once per process
while they do not change), per trigger branch rules and watch paths, skip markers in
the head commit, and queuing the builds (superseding the same trigger's older queued
builds of the branch)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.db import connection

from builds import scheduler
from builds.models import (
    Build,
    BuildOutcome,
    BuildStatus,
    DeliveryOutcome,
    RepoConnection,
    Trigger,
    WebhookDelivery,
)

if TYPE_CHECKING:
    from builds.webhooks import PushEvent

# Workers Builds' skip markers, matched anywhere in the head commit message,
# ignoring case (so several of these spellings are the same marker).
SKIP_MARKERS = (
    "[skip ci]",
    "[ci skip]",
    "[no ci]",
    "[skip actions]",
    "[actions skip]",
    "[CI Skip]",
    "[CI-Skip]",
    "[Skip CI]",
    "[Skip-CI]",
    "[CF-Pages-Skip]",
)
# A push this large may list only part of its changes, so watch paths cannot be
# trusted to see them all: it builds regardless, as in Workers Builds.
WATCH_PATHS_MAX_FILES = 3000
WATCH_PATHS_MAX_COMMITS = 20


@dataclass(frozen=True)
class Match:
    """What a delivery will do: its outcome, why, and the triggers it builds."""

    outcome: str
    reason: str
    triggers: list[Trigger]


def skip_marker(message: str) -> str | None:
    """The first skip marker in the message, as written there."""
    lowered = message.lower()
    for marker in SKIP_MARKERS:
        if (at := lowered.find(marker.lower())) >= 0:
            return message[at : at + len(marker)]
    return None


def path_matches(path: str, pattern: str) -> bool:
    """Watch path patterns are exact paths, or have `*` (any characters, `/`
    included) at the start, the end, or both; a `*` elsewhere is literal."""
    if len(pattern) > 1 and pattern.startswith("*") and pattern.endswith("*"):
        return pattern[1:-1] in path
    if pattern.startswith("*"):
        return path.endswith(pattern[1:])
    if pattern.endswith("*"):
        return path.startswith(pattern[:-1])
    return path == pattern


def watches_change(trigger: Trigger, event: PushEvent) -> bool:
    """Paths matching an exclude are dropped first; the push builds if any remaining
    path matches an include. A push with no listed files (an empty push made to
    force a build), or too many to trust, always builds."""
    files = event.changed_files
    if not files or len(files) >= WATCH_PATHS_MAX_FILES or event.commit_count >= WATCH_PATHS_MAX_COMMITS:
        return True
    includes = trigger.path_includes or ["*"]
    excludes = trigger.path_excludes or []
    remaining = (path for path in files if not any(path_matches(path, pattern) for pattern in excludes))
    return any(path_matches(path, pattern) for path in remaining for pattern in includes)


def queue_build(trigger: Trigger, **details) -> Build:
    """A queued build of the trigger (details as for Trigger.build_of); the trigger's
    older builds of the same branch still waiting in the queue are skipped, as this
    one builds newer code. Call inside a transaction, and hand the build to
    scheduler.enqueue there."""
    build = trigger.new_build(**details)
    # Older by creation time: a concurrent delivery may commit a newer build that
    # this transaction sees, and that one must survive. Usually there is none, so
    # only ids are read; stop() moves each row by id and reloads it.
    older = Build.objects.filter(
        trigger=trigger, branch=build.branch, status=BuildStatus.QUEUED, created_on__lt=build.created_on
    ).values_list("pk", flat=True)
    supersede(build, older.order_by())
    return build


def supersede(build: Build, older_pks: Iterable[int]) -> None:
    for pk in older_pks:
        Build(pk=pk).stop(
            BuildOutcome.SKIPPED, f"Superseded by build {build.build_uuid} of a newer commit of {build.branch}."
        )


# Every delivery needs its connection and triggers, and they rarely change. So each
# process keeps the last read of each connection, and PostgreSQL tells by one small
# query whether any of those rows changed since: a digest of the rows' text, which
# covers every column, including any added later. SQLite reads them every time.
CONFIG_DIGEST_SQL = """
    SELECT md5(c::text || coalesce(string_agg(t::text || w::text, ',' ORDER BY t.id), ''))
      FROM builds_repoconnection c
      LEFT JOIN builds_trigger t ON t.repo_connection_id = c.id
      LEFT JOIN builds_worker w ON w.id = t.worker_id
     WHERE c.uuid = %s
     GROUP BY c.id
"""
MAX_KEPT_CONNECTIONS = 1000
# uuid -> (digest, connection, triggers). Threads share the instances, which the
# delivery path only reads.
kept: dict[uuid.UUID, tuple[str, RepoConnection, list[Trigger]]] = {}


def connection_with_triggers(connection_uuid: uuid.UUID) -> tuple[RepoConnection, list[Trigger]]:
    """A webhook URL's connection and its triggers (with their workers), as committed
    when this is called. Raises RepoConnection.DoesNotExist."""
    if connection.vendor != "postgresql":
        return read_connection_with_triggers(connection_uuid)
    with connection.cursor() as cursor:
        cursor.execute(CONFIG_DIGEST_SQL, [connection_uuid])
        row = cursor.fetchone()
    if row is None:
        raise RepoConnection.DoesNotExist
    digest = row[0]
    if (known := kept.get(connection_uuid)) and known[0] == digest:
        return known[1], known[2]
    # Read after the digest: if the rows change in between, the digest kept is older
    # than what was read, and the next delivery reads again.
    found = read_connection_with_triggers(connection_uuid)
    if len(kept) >= MAX_KEPT_CONNECTIONS:
        kept.clear()
    kept[connection_uuid] = (digest, *found)
    return found


def read_connection_with_triggers(connection_uuid: uuid.UUID) -> tuple[RepoConnection, list[Trigger]]:
    """One query when the connection has triggers, as it usually does."""
    triggers = list(
        Trigger.objects.select_related("repo_connection", "worker").filter(repo_connection__uuid=connection_uuid)
    )
    if not triggers:
        return RepoConnection.objects.get(uuid=connection_uuid), []
    repo_connection = triggers[0].repo_connection
    for trigger in triggers:
        # One instance for all, so its secret is decrypted once.
        trigger.repo_connection = repo_connection
    return repo_connection, triggers


def match(triggers: list[Trigger], event: PushEvent) -> Match:
    """Which of the connection's triggers this push builds, and the reason either way."""
    if marker := skip_marker(event.commit_message):
        return Match(DeliveryOutcome.SKIPPED, f"The head commit message contains {marker}: no build.", [])
    if not triggers:
        return Match(DeliveryOutcome.IGNORED, "No trigger uses this repository connection.", [])
    matched: list[Trigger] = []
    unmatched: list[str] = []
    unwatched: list[str] = []
    for trigger in triggers:
        if not trigger.builds_branch(event.branch):
            unmatched.append(f"{trigger}: its branch rules exclude {event.branch}")
        elif not watches_change(trigger, event):
            unwatched.append(f"{trigger}: no changed file matches its watch paths")
        else:
            matched.append(trigger)
    not_built = "; ".join(unmatched + unwatched)
    if matched:
        names = ", ".join(str(trigger) for trigger in matched)
        reason = f"Queued {len(matched)} build{'s' if len(matched) > 1 else ''}: {names}."
        return Match(DeliveryOutcome.QUEUED, reason + (f" Not built: {not_built}." if not_built else ""), matched)
    outcome = DeliveryOutcome.SKIPPED if unwatched else DeliveryOutcome.IGNORED
    return Match(outcome, f"No build: {not_built}.", [])


def build_details(event: PushEvent) -> dict:
    """What a build of the push records (Trigger.build_of's arguments)."""
    return {
        "branch": event.branch,
        "commit_hash": event.commit_hash,
        "source": event.source,
        "commit_message": event.commit_message,
        "author": event.author,
        "pull_request": event.pull_request.as_dict() if event.pull_request else None,
    }


def start_builds(found: Match, event: PushEvent, delivery: WebhookDelivery) -> list[Build]:
    """Queues the matched triggers' builds of the push. Call inside the transaction
    that recorded the delivery."""
    builds = [queue_build(trigger, **build_details(event), delivery=delivery) for trigger in found.triggers]
    scheduler.enqueue(builds)
    return builds
