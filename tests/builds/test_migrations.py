"""The migration from one row per log line to chunks keeps every line and its
sequence number (cursors that clients hold stay valid), and can be reversed."""

import datetime

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from builds import logs
from builds.models import LogChunk
from tests.factories import make_build, make_trigger, make_worker

LINES = [("builds", "0003_build_account_modified_index")]
CHUNKS = [("builds", "0004_log_chunks")]


def migrate(targets) -> MigrationExecutor:
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    return executor


@pytest.mark.django_db(transaction=True)
def test_log_lines_become_chunks_with_their_sequence_numbers_and_back(account):
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
        executor = migrate(LINES)
        LogLine = executor.loader.project_state(LINES).apps.get_model("builds", "LogLine")
        LogLine.objects.bulk_create(
            LogLine(build_id=build.pk, seq=seq, timestamp=ts, stream=stream, text=text)
            for seq, ts, stream, text in rows
        )
        migrate(CHUNKS)
        expected = [(seq, ts, stream, text.replace("\n", " ")) for seq, ts, stream, text in rows]
        assert [tuple(line) for line in logs.all_lines(build)] == expected
        chunks = LogChunk.objects.filter(build=build).order_by("last_seq").values_list("first_seq", "last_seq")
        # Lines stored together are chunked together, within the bounds of new chunks.
        assert list(chunks) == [(1, 1), (2, 3), (4, 4), (5, 5), (6, 6), (7, 1006), (1007, 1209)]

        executor = migrate(LINES)
        LogLine = executor.loader.project_state(LINES).apps.get_model("builds", "LogLine")
        stored = LogLine.objects.filter(build_id=build.pk).order_by("seq")
        assert list(stored.values_list("seq", "timestamp", "stream", "text")) == expected
    finally:
        migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
