"""Deploy hooks: a POST to a hook's secret URL builds the tip of its branch, within
rate limits per worker and per account."""

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from accounts.models import Account
from builds import scheduler, triggers
from builds.models import Build, BuildSource, BuildStatus, DeployHook

WINDOW = timedelta(minutes=1)
PER_WORKER_LIMIT = 10
PER_ACCOUNT_LIMIT = 100


class RateLimited(Exception):
    def __init__(self, reason: str, retry_after: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


@dataclass(frozen=True)
class Triggered:
    build: Build
    # True when a build of the branch's tip was still queued and serves this call too.
    already_exists: bool


def check_limit(recent: QuerySet, limit: int, scope: str, now: datetime) -> None:
    """Raises RateLimited when `recent` (deploy hook builds) has `limit` builds in
    the last minute, with the seconds until the oldest of them leaves the window."""
    stamps = list(
        recent.filter(created_on__gt=now - WINDOW).order_by("created_on").values_list("created_on", flat=True)
    )
    if len(stamps) >= limit:
        frees_at = stamps[len(stamps) - limit] + WINDOW
        retry_after = max(1, math.ceil((frees_at - now).total_seconds()))
        raise RateLimited(f"At most {limit} deploy hook builds per minute for {scope}.", retry_after)


def trigger(hook: DeployHook) -> Triggered:
    """Queues a build of the tip of the hook's branch, or returns the one still
    queued. The account row is locked for the whole check-then-create, so two
    processes cannot both see room under a limit and both take it."""
    worker = hook.trigger.worker
    with transaction.atomic():
        Account.objects.select_for_update().only("pk").get(pk=worker.account_id)
        now = timezone.now()
        waiting = (
            Build.objects.filter(trigger=hook.trigger, branch=hook.branch, status=BuildStatus.QUEUED, commit_hash="")
            .order_by("-created_on")
            .first()
        )
        if waiting is None:
            hook_builds = Build.objects.filter(source=BuildSource.DEPLOY_HOOK)
            check_limit(hook_builds.filter(worker=worker), PER_WORKER_LIMIT, f"worker {worker.name}", now)
            check_limit(hook_builds.filter(account_id=worker.account_id), PER_ACCOUNT_LIMIT, "this account", now)
            # An empty commit hash builds the tip of the branch when the build starts.
            build = triggers.queue_build(
                hook.trigger, branch=hook.branch, commit_hash="", source=BuildSource.DEPLOY_HOOK, deploy_hook=hook
            )
            scheduler.enqueue([build])
        hook.last_triggered_on = now
        hook.save(update_fields=["last_triggered_on"])
    return Triggered(build=waiting or build, already_exists=waiting is not None)
