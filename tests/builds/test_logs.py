import threading
import time

import pytest
from django.db import connections

from builds import logs
from builds.models import Build, LogLine
from tests.factories import make_build, make_trigger, make_worker


@pytest.fixture
def build(account):
    return make_build(make_trigger(make_worker(account, "logs")))


def stored(build) -> list[tuple[int, str, str]]:
    return list(LogLine.objects.filter(build=build).order_by("seq").values_list("seq", "stream", "text"))


def test_cursor_round_trips_and_is_opaque():
    cursor = logs.encode_cursor(1234)
    assert "1234" not in cursor
    assert logs.decode_cursor(cursor) == 1234
    assert logs.decode_cursor(None) == 0 and logs.decode_cursor("") == 0


@pytest.mark.parametrize(
    "bad", ["nope", "djE6YWJj", "!!!!", logs.encode_cursor(5)[:-1] + "%", logs.encode_cursor(logs.MAX_SEQ + 1)]
)
def test_it_rejects_cursors_it_did_not_issue(bad):
    with pytest.raises(logs.InvalidCursor):
        logs.decode_cursor(bad)


def test_lines_get_consecutive_sequence_numbers(build):
    logs.append(build, [("stdout", "one"), ("stderr", "two")])
    logs.append(build, [("system", "three")])
    assert stored(build) == [(1, "stdout", "one"), (2, "stderr", "two"), (3, "system", "three")]
    assert [line.text for line in logs.lines_after(build, 1)] == ["two", "three"]
    assert logs.lines_after(build, 3) == []


def test_secrets_are_masked_and_nul_bytes_removed(build):
    logs.append(build, [("stdout", "token=hunter2 and hunter2x\x00!")], secrets=["hunter2", "hunter2x", ""])
    assert stored(build) == [(1, "stdout", "token=*** and ***!")]


def test_a_huge_line_is_split(build):
    logs.append(build, [("stdout", "a" * (logs.MAX_LINE_CHARS * 2 + 10))])
    assert [len(text) for _, _, text in stored(build)] == [logs.MAX_LINE_CHARS, logs.MAX_LINE_CHARS, 10]


def test_log_is_truncated_past_the_cap(build, settings):
    settings.BUILDSITE_LOG_MAX_BYTES = 100
    logs.append(build, [("stdout", "x" * 40), ("stdout", "y" * 40), ("stdout", "z" * 40)])
    logs.append(build, [("stdout", "late")])
    build.refresh_from_db()
    assert [text[0] for _, _, text in stored(build)] == ["x", "y"]
    assert build.log_truncated


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_writers_in_parallel_never_collide(account):
    build = make_build(make_trigger(make_worker(account, "parallel")))

    def write(name: str) -> None:
        try:
            for i in range(20):
                logs.append(Build.objects.get(pk=build.pk), [("stdout", f"{name}{i}")])
        finally:
            connections.close_all()

    threads = [threading.Thread(target=write, args=(name,)) for name in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    rows = stored(build)
    assert [seq for seq, _, _ in rows] == list(range(1, 41))
    assert sorted(text for _, _, text in rows) == sorted(f"{n}{i}" for n in "ab" for i in range(20))


def stored_text(build) -> list[tuple[str, str]]:
    return [(stream, text) for _, stream, text in stored(build)]


@pytest.mark.django_db(transaction=True)
def test_the_pump_splits_output_into_lines_and_masks_secrets_across_chunks(account):
    build = make_build(make_trigger(make_worker(account, "pump")))
    with logs.LogPump(build, secrets=["secret-token"]) as pump:
        for chunk in (b"hel", b"lo wor", b"ld\r\nthe secr", b"et-token leaked\ncaf\xc3", b"\xa9\n"):
            pump.write("stdout", chunk)
        pump.write("stderr", b"oops\n")
        pump.system("Build command finished in 0.1 s")
        pump.write("stdout", b"no newline at the end")
    assert stored_text(build) == [
        ("stdout", "hello world"),
        ("stdout", "the *** leaked"),
        ("stdout", "café"),
        ("stderr", "oops"),
        ("system", "Build command finished in 0.1 s"),
        ("stdout", "no newline at the end"),
    ]


@pytest.mark.django_db(transaction=True)
def test_the_pump_stores_lines_while_the_output_goes_on(account):
    build = make_build(make_trigger(make_worker(account, "live")))
    with logs.LogPump(build) as pump:
        pump.write("stdout", b"first\n")
        # Stored (and published) while the build is still writing: live logs.
        deadline = time.monotonic() + 5
        while not LogLine.objects.filter(build=build).exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert stored_text(build) == [("stdout", "first")]
        pump.write("stdout", b"second\n")
    assert stored_text(build) == [("stdout", "first"), ("stdout", "second")]


@pytest.mark.django_db(transaction=True)
def test_stored_lines_are_published_to_the_builds_group_in_their_batches(account):
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    from builds import events

    build = make_build(make_trigger(make_worker(account, "published")))
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(events.build_group(build.build_uuid), channel)

    logs.append(build, [("stdout", "one"), ("stderr", "two secret")], secrets=["secret"])
    message = async_to_sync(layer.receive)(channel)

    assert message["type"] == "build.logs" and message["build_uuid"] == str(build.build_uuid)
    assert [(line["seq"], line["stream"], line["text"]) for line in message["lines"]] == [
        (1, "stdout", "one"),
        (2, "stderr", "two ***"),
    ]
    async_to_sync(layer.group_discard)(events.build_group(build.build_uuid), channel)
