"""Queued builds -> build slots. (Issue 4 implements dispatch; this is the hand-off
every producer of builds calls.)"""

from collections.abc import Iterable

from django.db import transaction

from builds.models import Build


def enqueue(builds: Iterable[Build]) -> None:
    """Call inside the transaction that created the builds: they are dispatched the
    moment it commits, and never if it rolls back."""
    account_ids = {build.account_id for build in builds}
    transaction.on_commit(lambda: dispatch(account_ids))


def dispatch(account_ids: set[str]) -> None:
    """Start as many queued builds of these accounts as their free slots allow."""
