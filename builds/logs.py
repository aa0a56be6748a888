"""Build logs: how output is cleaned, stored and read. Lines are stored in chunks (a
LogChunk holds a run of consecutive lines of one stream) and read as lines, with a
sequence number each. A cursor is an opaque token for "after this sequence number";
following it until no lines come back reads the whole log, and the same cursor later
returns only lines stored since."""

import base64
import binascii
import codecs
import itertools
import operator
import queue
import threading
import time
from collections.abc import Iterable, Iterator, Sequence

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from builds import events
from builds.models import Build, LogChunk, LogLine, LogStream
from buildsite import metrics
from buildsite.structured_logging import carrying_context

DEFAULT_PAGE_LINES = 1000
MAX_PAGE_LINES = 5000
MAX_SEQ = 2**31 - 1
MASK = "***"
MAX_LINE_CHARS = 64 * 1024
# A chunk holds at most this many lines and, unless its one line is longer, this many
# characters: reading a page of the log never loads a huge row.
MAX_CHUNK_LINES = 1000
MAX_CHUNK_CHARS = 256 * 1024
# Chunks fetched at a time when reading a whole log: a few MB in memory at most.
READ_CHUNKS = 20


class InvalidCursor(ValueError):
    pass


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"v1:{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int:
    """The sequence number a cursor stands for; 0 (before the first line) for none."""
    if not cursor:
        return 0
    try:
        version, _, seq = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode().partition(":")
        # No sequence number beyond what LogChunk.last_seq (a PositiveIntegerField) holds.
        if version != "v1" or not seq.isdigit() or int(seq) > MAX_SEQ:
            raise ValueError
        return int(seq)
    except (ValueError, UnicodeDecodeError, binascii.Error) as e:
        raise InvalidCursor("The cursor is not one this server issued.") from e


def lines_after(build: Build, after_seq: int, limit: int = DEFAULT_PAGE_LINES) -> list[LogLine]:
    """Up to `limit` stored lines of the build with seq > after_seq, in order."""
    limit = max(1, min(limit, MAX_PAGE_LINES))
    up_to = after_seq + limit
    # Sequence numbers have no gaps, so the chunks that hold the page are those that
    # end after after_seq and start by up_to; as no chunk holds more than
    # MAX_CHUNK_LINES lines, they all end before up_to + MAX_CHUNK_LINES, which bounds
    # the range read from the (build, last_seq) index.
    chunks = LogChunk.objects.filter(
        build=build, last_seq__gt=after_seq, last_seq__lt=up_to + MAX_CHUNK_LINES, first_seq__lte=up_to
    ).order_by("last_seq")
    return [line for chunk in chunks for line in chunk.lines(after_seq, up_to)]


def all_lines(build: Build, stream: str | None = None) -> Iterator[LogLine]:
    """Every stored line of the build (or of one of its streams), in order."""
    chunks = LogChunk.objects.filter(build=build).order_by("last_seq")
    if stream is not None:
        chunks = chunks.filter(stream=stream)
    for chunk in chunks.iterator(chunk_size=READ_CHUNKS):
        yield from chunk.lines()


def raw_text(build: Build) -> Iterator[str]:
    """The whole log as text, one piece per stored chunk, each ending in a newline."""
    chunks = LogChunk.objects.filter(build=build).order_by("last_seq").values_list("text", flat=True)
    for text in chunks.iterator(chunk_size=READ_CHUNKS):
        yield text + "\n"


def line_payload(line: LogLine) -> dict:
    """A log line as websocket clients receive it, from the database or live."""
    return {"seq": line.seq, "ts": line.timestamp.timestamp(), "stream": line.stream, "text": line.text}


def chunk_lines(chunks: Iterable[dict]) -> list[dict]:
    """The line_payload dicts of chunk payloads (what append() returns and publishes)."""
    return [
        {"seq": seq, "ts": chunk["ts"], "stream": chunk["stream"], "text": text}
        for chunk in chunks
        for seq, text in enumerate(chunk["text"].split("\n"), chunk["first_seq"])
    ]


def clean(text: str, secrets: Iterable[str] = ()) -> list[str]:
    """Text ready to store: NUL bytes removed, secret values replaced by ***, and split
    into pieces of at most 64 KiB so one runaway line cannot bloat a page."""
    return split_long_line(mask(text, mask_order(secrets)))


def mask_order(secrets: Iterable[str]) -> tuple[str, ...]:
    # Longest first, so a secret that contains a shorter one is masked whole.
    return tuple(sorted({s for s in secrets if s}, key=len, reverse=True))


def mask(text: str, ordered_secrets: tuple[str, ...]) -> str:
    """NUL bytes removed and secret values replaced, in any number of lines at once."""
    text = text.replace("\x00", "")
    for secret in ordered_secrets:
        text = text.replace(secret, MASK)
    return text


def split_long_line(line: str) -> list[str]:
    if len(line) <= MAX_LINE_CHARS:
        return [line]
    return [line[i : i + MAX_LINE_CHARS] for i in range(0, len(line), MAX_LINE_CHARS)]


def chunks_of(entries: Sequence[tuple[str, str]], ordered_secrets: tuple[str, ...]) -> list[tuple[str, str, int]]:
    """(stream, text, number of lines) of the chunks that store the entries' lines. Each
    run of consecutive entries of one stream is cleaned as one text and cut into lines
    and chunks by str methods, not line by line: a build may print a million lines."""
    chunks = []
    for stream, run in itertools.groupby(entries, key=operator.itemgetter(0)):
        text = mask("\n".join(entry[1] for entry in run), ordered_secrets)
        lines = text.split("\n")
        if len(text) > MAX_LINE_CHARS and max(map(len, lines)) > MAX_LINE_CHARS:
            lines = [piece for line in lines for piece in split_long_line(line)]
        start = 0
        while start < len(lines):
            group = lines[start : start + MAX_CHUNK_LINES]
            text = "\n".join(group)
            if len(text) > MAX_CHUNK_CHARS:
                # Long lines: as many as fit, and at least one.
                sizes = itertools.accumulate(len(line) + 1 for line in group)
                group = group[: max(1, sum(1 for size in sizes if size <= MAX_CHUNK_CHARS + 1))]
                text = "\n".join(group)
            chunks.append((stream, text, len(group)))
            start += len(group)
    return chunks


def utf8_size(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode())


def lines_within(text: str, budget: int) -> tuple[str, int, int]:
    """(text, number of lines, size) of the first lines of text that fit in budget,
    counting each line's UTF-8 bytes and a newline, as the log's size does."""
    taken, size = [], 0
    for line in text.split("\n"):
        line_size = utf8_size(line) + 1
        if size + line_size > budget:
            break
        taken.append(line)
        size += line_size
    return "\n".join(taken), len(taken), size


def append(build: Build, entries: Sequence[tuple[str, str]], secrets: Iterable[str] = ()) -> list[dict]:
    """Store (stream, text) entries as the build's next lines (a text with newlines is
    several lines) and publish them after commit; returns the stored chunks as dicts
    (first_seq, last_seq, ts, stream, text). Safe from any process: sequence numbers
    are taken under the build row's lock. Past BUILDSITE_LOG_MAX_BYTES (each line's
    UTF-8 bytes and a newline) lines are dropped and the log marked truncated."""
    pending = chunks_of(entries, mask_order(secrets))
    if not pending:
        return []
    now = timezone.now()
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        if outermost and connection.vendor == "postgresql":
            # A crash of the database server may lose the last fraction of a second
            # of log lines committed this way (never part of a batch, never more):
            # the next ordinary commit (a heartbeat, the build's end) makes them
            # durable. Saves a WAL flush per batch. Never for a caller's transaction.
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit TO OFF")
        row = Build.objects.select_for_update().values("log_seq", "log_bytes", "log_truncated").get(pk=build.pk)
        seq, size, truncated = row["log_seq"], row["log_bytes"], row["log_truncated"]
        max_bytes = settings.BUILDSITE_LOG_MAX_BYTES
        chunks = []
        for stream, text, count in pending:
            chunk_size = utf8_size(text) + count
            if size + chunk_size > max_bytes:
                text, count, chunk_size = lines_within(text, max_bytes - size)
                truncated = True
            if count:
                chunks.append(
                    LogChunk(
                        build_id=build.pk,
                        first_seq=seq + 1,
                        last_seq=seq + count,
                        timestamp=now,
                        stream=stream,
                        text=text,
                    )
                )
                seq += count
                size += chunk_size
            if truncated:
                break
        LogChunk.objects.bulk_create(chunks)
        Build.objects.filter(pk=build.pk).update(
            log_seq=seq, log_bytes=max_bytes if truncated else size, log_truncated=truncated
        )
        ts = now.timestamp()
        payloads = [
            {"first_seq": c.first_seq, "last_seq": c.last_seq, "ts": ts, "stream": c.stream, "text": c.text}
            for c in chunks
        ]
        if payloads:
            stored = seq + 1 - payloads[0]["first_seq"]
            transaction.on_commit(lambda: events.log_batch(build.build_uuid, payloads))
            transaction.on_commit(lambda: metrics.log_lines_stored.inc(stored))
    return payloads


# Stop waiting for more lines once output has been quiet this long: the burst is over,
# and a person watching the log should not wait the full flush interval for it.
QUIET_SECONDS = 0.02
BACKLOG_BATCH_FACTOR = 20
QUEUE_TEXTS = 256
_END = object()


def mask_values(secrets: Iterable[str]) -> list[str]:
    """What to mask for these secret values: each value, and each long enough line of a
    multi-line value (a private key, say), whose lines may reach the log apart:
    indented, with other line endings, or in separate batches."""
    values = set()
    for secret in secrets:
        values.add(secret)
        values.update(line.strip() for line in secret.splitlines() if len(line.strip()) >= 8)
    return sorted(v for v in values if v)


class LogPump:
    """Feeds a build's output into append(). Bytes from each stream are decoded and
    cut after their last complete line; lines are stored and published in batches, at
    least every BUILDSITE_LOG_FLUSH_SECONDS or every BUILDSITE_LOG_FLUSH_LINES lines,
    whichever comes first, by a thread of its own, so the reader never waits for the
    database (until the bounded queue fills: then the build's output is slowed, not
    lost). What goes through the queue is one text per write, not one item per line.

    Use as a context manager; leaving it stores every line written, then raises if
    storing failed."""

    def __init__(self, build: Build, secrets: Iterable[str] = ()) -> None:
        self.build = build
        self.secrets = mask_values(secrets)
        # (stream, text of one or more lines): at most a few hundred reads of output.
        self._queue: queue.Queue = queue.Queue(maxsize=QUEUE_TEXTS)
        self._partial: dict[str, str] = {}
        self._decoders: dict[str, codecs.IncrementalDecoder] = {}
        self._thread = threading.Thread(
            target=carrying_context(self._run), name=f"log-pump-{build.build_uuid}", daemon=True
        )
        self._error: BaseException | None = None

    def __enter__(self) -> "LogPump":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def write(self, stream: str, data: bytes) -> None:
        """A chunk of a stream's output; a line may span chunks. One writer per stream."""
        decoder = self._decoders.get(stream)
        if decoder is None:
            decoder = self._decoders[stream] = codecs.getincrementaldecoder("utf-8")(errors="replace")
        text = self._partial.pop(stream, "") + decoder.decode(data)
        end = text.rfind("\n") + 1
        if end < len(text):
            self._partial[stream] = text[end:]
        if end:
            # A line ends at "\n" or "\r\n".
            self._queue.put((stream, text[:end].replace("\r\n", "\n")[:-1]))

    def system(self, text: str) -> None:
        """A message from Buildsite itself (phase announcements, outcome); each of its
        lines is a line of the log."""
        self._queue.put((LogStream.SYSTEM, text))

    def end_of_output(self) -> None:
        """A command ended: its last line counts even without a newline."""
        for stream, decoder in self._decoders.items():
            rest = self._partial.pop(stream, "") + decoder.decode(b"", final=True)
            if rest:
                self._queue.put((stream, rest.removesuffix("\r")))
        self._decoders.clear()

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        self.end_of_output()
        self._queue.put(_END)
        self._thread.join()
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        flush_lines = settings.BUILDSITE_LOG_FLUSH_LINES
        try:
            ended = False
            while not ended:
                item = self._queue.get()
                if item is _END:
                    break
                batch = [item]
                deadline = time.monotonic() + settings.BUILDSITE_LOG_FLUSH_SECONDS
                lines, ended = self._gather(batch, line_count(item), flush_lines, deadline)
                # Output already waiting goes into the same transaction: when the
                # database is the bottleneck, batches grow instead of the backlog (up
                # to a size that keeps one transaction and one websocket message
                # reasonable).
                if not ended:
                    _, ended = self._gather(batch, lines, BACKLOG_BATCH_FACTOR * flush_lines, None)
                if self._error is None:
                    try:
                        append(self.build, batch, self.secrets)
                    except Exception as e:  # noqa: BLE001 - reported by close(); keep draining so writers never block
                        self._error = e
        finally:
            connection.close()

    def _gather(self, batch: list, lines: int, limit: int, deadline: float | None) -> tuple[int, bool]:
        """Adds queued output to batch until it holds `limit` lines. With a deadline it
        waits for more while output keeps coming (pauses under QUIET_SECONDS), until
        then; without one it takes only what is waiting. Returns the batch's lines and
        whether the end of output was reached."""
        while lines < limit:
            try:
                if deadline is None:
                    item = self._queue.get_nowait()
                else:
                    item = self._queue.get(timeout=max(min(QUIET_SECONDS, deadline - time.monotonic()), 0))
            except queue.Empty:
                break
            if item is _END:
                return lines, True
            batch.append(item)
            lines += line_count(item)
        return lines, False


def line_count(entry: tuple[str, str]) -> int:
    return entry[1].count("\n") + 1
