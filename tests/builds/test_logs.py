import time

import pytest

from builds import logs
from builds.models import Build, LogChunk
from tests.builds.running import at_once
from tests.factories import make_build, make_trigger, make_worker


@pytest.fixture
def build(account):
    return make_build(make_trigger(make_worker(account, "logs")))


def stored(build) -> list[tuple[int, str, str]]:
    return [(line.seq, line.stream, line.text) for line in logs.all_lines(build)]


def chunks(build) -> list[tuple[int, int, str]]:
    return list(
        LogChunk.objects.filter(build=build).order_by("last_seq").values_list("first_seq", "last_seq", "stream")
    )


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


def test_a_text_with_newlines_is_stored_as_lines(build):
    logs.append(build, [("system", "Build failed:\nfirst reason\n\nsecond"), ("stdout", "after")])
    assert stored(build) == [
        (1, "system", "Build failed:"),
        (2, "system", "first reason"),
        (3, "system", ""),
        (4, "system", "second"),
        (5, "stdout", "after"),
    ]


def test_secrets_are_masked_in_every_line_and_never_across_lines(build):
    entries = [("stdout", "s3cret at the end s3cret"), ("stdout", "s3cret\nmid s3cret mid\nxs3c"), ("stdout", "ret")]
    logs.append(build, [*entries, ("stderr", "s3cret\x00s3cret")], secrets=["s3cret"])
    assert [text for _, _, text in stored(build)] == [
        "*** at the end ***",
        "***",
        "mid *** mid",
        "xs3c",  # a secret is masked within a line, and "xs3c" + "ret" are two lines
        "ret",
        "******",
    ]


def test_a_huge_line_is_split(build):
    logs.append(build, [("stdout", "a" * (logs.MAX_LINE_CHARS * 2 + 10))])
    assert [len(text) for _, _, text in stored(build)] == [logs.MAX_LINE_CHARS, logs.MAX_LINE_CHARS, 10]


def test_a_huge_line_among_others_is_split_in_place(build):
    logs.append(build, [("stdout", "before\n" + "b" * (logs.MAX_LINE_CHARS + 5)), ("stdout", "after")])
    assert stored(build) == [
        (1, "stdout", "before"),
        (2, "stdout", "b" * logs.MAX_LINE_CHARS),
        (3, "stdout", "bbbbb"),
        (4, "stdout", "after"),
    ]


def test_lines_are_stored_in_chunks_of_one_stream_and_bounded_size(build):
    many = "\n".join(f"line {i}" for i in range(2500))
    logs.append(build, [("stdout", many), ("stderr", "oops"), ("stdout", "one"), ("stdout", "two")])
    assert chunks(build) == [
        (1, 1000, "stdout"),
        (1001, 2000, "stdout"),
        (2001, 2500, "stdout"),
        (2501, 2501, "stderr"),
        (2502, 2503, "stdout"),
    ]
    long_lines = ["x" * 60_000] * 10
    logs.append(build, [("stdout", line) for line in long_lines])
    # At most 256 KiB of text a chunk: four of these lines.
    assert chunks(build)[5:] == [(2504, 2507, "stdout"), (2508, 2511, "stdout"), (2512, 2513, "stdout")]
    assert [text for _, _, text in stored(build)][2503:] == long_lines


def test_pages_and_cursors_fall_anywhere_in_a_chunk(build):
    logs.append(build, [("stdout", "first")])
    logs.append(build, [("stdout", "\n".join(str(i) for i in range(2, 2502)))])
    assert chunks(build) == [(1, 1, "stdout"), (2, 1001, "stdout"), (1002, 2001, "stdout"), (2002, 2501, "stdout")]
    page = logs.lines_after(build, 0, 1000)
    assert [line.seq for line in page] == list(range(1, 1001))
    assert [line.text for line in page[:3]] == ["first", "2", "3"]
    # The next page starts where that one ended, in the middle of a chunk.
    assert [line.seq for line in logs.lines_after(build, page[-1].seq, 1000)] == list(range(1001, 2001))
    assert [line.text for line in logs.lines_after(build, 1500, 3)] == ["1501", "1502", "1503"]
    assert [line.seq for line in logs.lines_after(build, 2400, 1000)] == list(range(2401, 2502))
    assert logs.lines_after(build, 2501) == []
    assert len(list(logs.all_lines(build))) == 2501


def test_log_is_truncated_past_the_cap(build, settings):
    settings.BUILDSITE_LOG_MAX_BYTES = 100
    logs.append(build, [("stdout", "x" * 40), ("stdout", "y" * 40), ("stdout", "z" * 40)])
    logs.append(build, [("stdout", "late")])
    build.refresh_from_db()
    assert [text[0] for _, _, text in stored(build)] == ["x", "y"]
    assert build.log_truncated


def test_the_cap_cuts_a_chunk_at_the_last_line_that_fits(build, settings):
    # Each line: its UTF-8 bytes and a newline; "é" is two bytes.
    settings.BUILDSITE_LOG_MAX_BYTES = 100
    logs.append(build, [("system", "start")])  # 6 bytes
    logs.append(build, [("stdout", "\n".join(["é" * 4] * 20)), ("stderr", "never")])  # 9 bytes a line
    build.refresh_from_db()
    assert stored(build) == [(1, "system", "start"), *[(seq, "stdout", "éééé") for seq in range(2, 12)]]
    assert chunks(build) == [(1, 1, "system"), (2, 11, "stdout")]
    assert (build.log_seq, build.log_truncated, build.log_bytes) == (11, True, 100)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_writers_in_parallel_never_collide(account):
    build = make_build(make_trigger(make_worker(account, "parallel")))

    def write(name: str) -> None:
        for i in range(20):
            logs.append(Build.objects.get(pk=build.pk), [("stdout", f"{name}{i}")])

    at_once(lambda: write("a"), lambda: write("b"))
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
def test_the_pump_stores_a_burst_of_output_as_a_few_chunks(account):
    build = make_build(make_trigger(make_worker(account, "burst")))
    with logs.LogPump(build) as pump:
        pump.write("stdout", "".join(f"line {i}\r\n" for i in range(1, 5001)).encode())
        pump.system("Build command finished\nin 0.1 s")
    assert stored_text(build) == [
        *[("stdout", f"line {i}") for i in range(1, 5001)],
        ("system", "Build command finished"),
        ("system", "in 0.1 s"),
    ]
    assert len(chunks(build)) <= 6


@pytest.mark.django_db(transaction=True)
def test_the_pump_stores_lines_while_the_output_goes_on(account):
    build = make_build(make_trigger(make_worker(account, "live")))
    with logs.LogPump(build) as pump:
        pump.write("stdout", b"first\n")
        # Stored (and published) while the build is still writing: live logs.
        deadline = time.monotonic() + 5
        while not LogChunk.objects.filter(build=build).exists() and time.monotonic() < deadline:
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

    logs.append(build, [("stdout", "one\ntwo"), ("stderr", "three secret")], secrets=["secret"])
    message = async_to_sync(layer.receive)(channel)

    assert message["type"] == "build.logs" and message["build_uuid"] == str(build.build_uuid)
    # One entry per chunk, not per line.
    assert [(c["first_seq"], c["last_seq"], c["stream"]) for c in message["chunks"]] == [
        (1, 2, "stdout"),
        (3, 3, "stderr"),
    ]
    assert [(line["seq"], line["stream"], line["text"]) for line in logs.chunk_lines(message["chunks"])] == [
        (1, "stdout", "one"),
        (2, "stdout", "two"),
        (3, "stderr", "three ***"),
    ]
    async_to_sync(layer.group_discard)(events.build_group(build.build_uuid), channel)
