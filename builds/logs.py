"""Build logs: the cursor codec and the reads that the API, the dashboard and the
websocket consumers share. A cursor is an opaque token for "after this sequence
number"; following it until no lines come back reads the whole log, and the same
cursor later returns only lines stored since."""

import base64
import binascii
import codecs
import datetime
import queue
import threading
import time
from collections.abc import Iterable, Sequence

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from builds import events
from builds.models import Build, LogLine, LogStream
from buildsite import metrics
from buildsite.structured_logging import carrying_context

DEFAULT_PAGE_LINES = 1000
MAX_PAGE_LINES = 5000
MAX_SEQ = 2**31 - 1


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
        # No sequence number beyond what LogLine.seq (a PositiveIntegerField) holds.
        if version != "v1" or not seq.isdigit() or int(seq) > MAX_SEQ:
            raise ValueError
        return int(seq)
    except (ValueError, UnicodeDecodeError, binascii.Error) as e:
        raise InvalidCursor("The cursor is not one this server issued.") from e


def lines_after(build: Build, after_seq: int, limit: int = DEFAULT_PAGE_LINES) -> list[LogLine]:
    """Up to `limit` stored lines of the build with seq > after_seq, in order."""
    limit = max(1, min(limit, MAX_PAGE_LINES))
    return list(LogLine.objects.filter(build=build, seq__gt=after_seq).order_by("seq")[:limit])


def line_payload(line: LogLine) -> dict:
    """A log line as websocket clients receive it, from the database or live."""
    return {"seq": line.seq, "ts": line.timestamp.timestamp(), "stream": line.stream, "text": line.text}


MASK = "***"
MAX_LINE_CHARS = 64 * 1024


def clean(text: str, secrets: Iterable[str] = ()) -> list[str]:
    """Text ready to store: NUL bytes removed, secret values replaced by ***, and split
    into pieces of at most 64 KiB so one runaway line cannot bloat a page."""
    return _clean(text, mask_order(secrets))


def mask_order(secrets: Iterable[str]) -> tuple[str, ...]:
    # Longest first, so a secret that contains a shorter one is masked whole.
    return tuple(sorted({s for s in secrets if s}, key=len, reverse=True))


def _clean(text: str, ordered_secrets: tuple[str, ...]) -> list[str]:
    text = text.replace("\x00", "")
    for secret in ordered_secrets:
        text = text.replace(secret, MASK)
    if len(text) <= MAX_LINE_CHARS:
        return [text]
    return [text[i : i + MAX_LINE_CHARS] for i in range(0, len(text), MAX_LINE_CHARS)]


def append(build: Build, entries: Sequence[tuple[str, str]], secrets: Iterable[str] = ()) -> list[dict]:
    """Store (stream, text) entries as the build's next lines and publish them after
    commit; returns the stored lines as line_payload dicts. Safe from any process:
    sequence numbers are taken under the build row's lock. Past BUILDSITE_LOG_MAX_BYTES
    lines are dropped and the log marked truncated."""
    ordered_secrets = mask_order(secrets)
    pieces = [(stream, piece) for stream, text in entries for piece in _clean(text, ordered_secrets)]
    if not pieces:
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
        rows = []
        for stream, text in pieces:
            size += (len(text) if text.isascii() else len(text.encode())) + 1
            if size > max_bytes:
                truncated = True
                break
            seq += 1
            rows.append((seq, stream, text))
        insert_lines(build.pk, now, rows)
        Build.objects.filter(pk=build.pk).update(log_seq=seq, log_bytes=min(size, max_bytes), log_truncated=truncated)
        ts = now.timestamp()
        payloads = [{"seq": seq, "ts": ts, "stream": stream, "text": text} for seq, stream, text in rows]
        if payloads:
            transaction.on_commit(lambda: events.log_batch(build.build_uuid, payloads))
            transaction.on_commit(lambda: metrics.log_lines_stored.inc(len(payloads)))
    return payloads


def insert_lines(build_id: int, timestamp: datetime.datetime, rows: list[tuple[int, str, str]]) -> None:
    """Rows of (seq, stream, text). PostgreSQL gets them through one COPY, many times
    faster than INSERTs of model instances, which matters for builds that print
    hundreds of thousands of lines."""
    if not rows:
        return
    if connection.vendor != "postgresql":
        LogLine.objects.bulk_create(
            LogLine(build_id=build_id, seq=seq, timestamp=timestamp, stream=stream, text=text)
            for seq, stream, text in rows
        )
        return
    prefix, ts = f"{build_id}\t", timestamp.isoformat()
    data = "".join(f"{prefix}{seq}\t{ts}\t{stream}\t{copy_escape(text)}\n" for seq, stream, text in rows)
    with connection.cursor() as cursor:
        with cursor.cursor.copy(
            f"COPY {LogLine._meta.db_table} (build_id, seq, timestamp, stream, text) FROM STDIN"
        ) as copy:
            copy.write(data)


def copy_escape(text: str) -> str:
    """Text as a column of COPY's text format."""
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


# Stop waiting for more lines once output has been quiet this long: the burst is over,
# and a person watching the log should not wait the full flush interval for it.
QUIET_SECONDS = 0.02
BACKLOG_BATCH_FACTOR = 20
_END = object()


def mask_values(secrets: Iterable[str]) -> list[str]:
    """What to mask for these secret values: each value, and each long enough line of a
    multi-line value (a private key, say), since a log is masked one line at a time."""
    values = set()
    for secret in secrets:
        values.add(secret)
        values.update(line.strip() for line in secret.splitlines() if len(line.strip()) >= 8)
    return sorted(v for v in values if v)


class LogPump:
    """Feeds a build's output into append(). Bytes from each stream are decoded and
    split into lines; lines are stored and published in batches, at least every
    BUILDSITE_LOG_FLUSH_SECONDS or every BUILDSITE_LOG_FLUSH_LINES lines, whichever
    comes first, by a thread of its own, so the reader never waits for the database
    (until the bounded queue fills: then the build's output is slowed, not lost).

    Use as a context manager; leaving it stores every line written, then raises if
    storing failed."""

    def __init__(self, build: Build, secrets: Iterable[str] = ()) -> None:
        self.build = build
        self.secrets = mask_values(secrets)
        self._queue: queue.Queue = queue.Queue(maxsize=1000)
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
        *lines, rest = (self._partial.pop(stream, "") + decoder.decode(data)).split("\n")
        if rest:
            self._partial[stream] = rest
        if lines:
            self._queue.put([(stream, line.removesuffix("\r")) for line in lines])

    def system(self, text: str) -> None:
        """A line from Buildsite itself (phase announcements, outcome)."""
        self._queue.put([(LogStream.SYSTEM, text)])

    def end_of_output(self) -> None:
        """A command ended: its last line counts even without a newline."""
        for stream, decoder in self._decoders.items():
            rest = self._partial.pop(stream, "") + decoder.decode(b"", final=True)
            if rest:
                self._queue.put([(stream, rest.removesuffix("\r"))])
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
                batch = list(item)
                deadline = time.monotonic() + settings.BUILDSITE_LOG_FLUSH_SECONDS
                while len(batch) < flush_lines:
                    wait = min(QUIET_SECONDS, deadline - time.monotonic())
                    try:
                        item = self._queue.get(timeout=max(wait, 0))
                    except queue.Empty:
                        break
                    if item is _END:
                        ended = True
                        break
                    batch.extend(item)
                # Lines already waiting go into the same transaction: when the database
                # is the bottleneck, batches grow instead of the backlog (up to a size
                # that keeps one transaction and one websocket message reasonable).
                while not ended and len(batch) < BACKLOG_BATCH_FACTOR * flush_lines:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is _END:
                        ended = True
                        break
                    batch.extend(item)
                if self._error is None:
                    try:
                        append(self.build, batch, self.secrets)
                    except Exception as e:  # noqa: BLE001 - reported by close(); keep draining so writers never block
                        self._error = e
        finally:
            connection.close()
