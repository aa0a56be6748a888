"""Migrations that move data keep it: each runs forwards and back over rows made with
the models as they were before it."""

import datetime

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from builds import logs
from builds.models import LogChunk
from tests.factories import make_build, make_trigger, make_worker

LINES = [("builds", "0003_build_account_modified_index")]
CHUNKS = [("builds", "0004_log_chunks")]
DELIVERY_FK = [("builds", "0005_build_delivery")]


def migrate(targets):
    """Migrates the test database to `targets`; the models as they are there."""
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


def migrate_to_latest() -> None:
    migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())


@pytest.mark.django_db(transaction=True)
def test_log_lines_become_chunks_with_their_sequence_numbers_and_back(account):
    """Cursors that clients hold stay valid."""
    build = make_build(make_trigger(make_worker(account, "migrated")))
    first = datetime.datetime(2026, 11, 1, 12, 0, tzinfo=datetime.UTC)
    later = first + datetime.timedelta(seconds=1)
    rows = [
        (1, first, "system", "Build started"),
        (2, first, "stdout", "one"),
        (3, first, "stdout", "two"),
        (4, first, "stderr", "oops"),
        (5, later, "stdout", "three"),
        (6, later, "system", "Build failed:\nwith a newline"),
        *[(seq, later, "stdout", f"line {seq}") for seq in range(7, 1210)],
    ]
    try:
        LogLine = migrate(LINES).get_model("builds", "LogLine")
        LogLine.objects.bulk_create(
            LogLine(build_id=build.pk, seq=seq, timestamp=ts, stream=stream, text=text)
            for seq, ts, stream, text in rows
        )
        migrate_to_latest()
        expected = [(seq, ts, stream, text.replace("\n", " ")) for seq, ts, stream, text in rows]
        assert [tuple(line) for line in logs.all_lines(build)] == expected
        chunks = LogChunk.objects.filter(build=build).order_by("last_seq").values_list("first_seq", "last_seq")
        # Lines stored together are chunked together, within the bounds of new chunks.
        assert list(chunks) == [(1, 1), (2, 3), (4, 4), (5, 5), (6, 6), (7, 1006), (1007, 1209)]

        LogLine = migrate(LINES).get_model("builds", "LogLine")
        stored = LogLine.objects.filter(build_id=build.pk).order_by("seq")
        assert list(stored.values_list("seq", "timestamp", "stream", "text")) == expected
    finally:
        migrate_to_latest()


@pytest.mark.django_db(transaction=True)
def test_builds_keep_the_delivery_that_queued_them():
    old = migrate(CHUNKS)
    Account = old.get_model("accounts", "Account")
    Worker, Build = old.get_model("builds", "Worker"), old.get_model("builds", "Build")
    RepoConnection = old.get_model("builds", "RepoConnection")
    WebhookDelivery = old.get_model("builds", "WebhookDelivery")
    account = Account.objects.create(name="Acme")
    worker = Worker.objects.create(account=account, name="site", tag="a" * 32)
    repo = RepoConnection.objects.create(account=account, provider="github", repo_id="1", clone_url="file:///x")

    def build():
        return Build.objects.create(account=account, worker=worker, branch="main", build_image="img", clone_url="x")

    queued_by_push, not_by_a_delivery = build(), build()
    delivery = WebhookDelivery.objects.create(repo_connection=repo, provider="github", delivery_id="d-1")
    delivery.builds.add(queued_by_push)

    try:
        Build = migrate(DELIVERY_FK).get_model("builds", "Build")
        assert Build.objects.get(pk=queued_by_push.pk).delivery_id == delivery.pk
        assert Build.objects.get(pk=not_by_a_delivery.pk).delivery_id is None

        delivery = migrate(CHUNKS).get_model("builds", "WebhookDelivery").objects.get(pk=delivery.pk)
        assert [b.pk for b in delivery.builds.all()] == [queued_by_push.pk]
    finally:
        migrate_to_latest()
