"""Build logs: the cursor codec and the reads that the API, the dashboard and the
websocket consumers share. A cursor is an opaque token for "after this sequence
number"; following it until no lines come back reads the whole log, and the same
cursor later returns only lines stored since."""

import base64
import binascii
from collections.abc import Iterable, Sequence

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from builds import events
from builds.models import Build, LogLine
from buildsite import metrics

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
    text = text.replace("\x00", "")
    # Longest first, so a secret that contains a shorter one is masked whole.
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return [text[i : i + MAX_LINE_CHARS] for i in range(0, len(text), MAX_LINE_CHARS)] or [""]


def append(build: Build, entries: Sequence[tuple[str, str]], secrets: Iterable[str] = ()) -> list[LogLine]:
    """Store (stream, text) entries as the build's next lines and publish them after
    commit. Safe from any process: sequence numbers are taken under the build row's
    lock. Past BUILDSITE_LOG_MAX_BYTES lines are dropped and the log marked truncated."""
    secrets = tuple(secrets)
    pieces = [(stream, piece) for stream, text in entries for piece in clean(text, secrets)]
    if not pieces:
        return []
    now = timezone.now()
    with transaction.atomic():
        row = Build.objects.select_for_update().values("log_seq", "log_bytes", "log_truncated").get(pk=build.pk)
        seq, size, truncated = row["log_seq"], row["log_bytes"], row["log_truncated"]
        lines = []
        for stream, text in pieces:
            size += len(text.encode()) + 1
            if size > settings.BUILDSITE_LOG_MAX_BYTES:
                truncated = True
                break
            seq += 1
            lines.append(LogLine(build_id=build.pk, seq=seq, timestamp=now, stream=stream, text=text))
        LogLine.objects.bulk_create(lines)
        Build.objects.filter(pk=build.pk).update(
            log_seq=seq, log_bytes=min(size, settings.BUILDSITE_LOG_MAX_BYTES), log_truncated=truncated
        )
        payloads = [line_payload(line) for line in lines]
        if payloads:
            transaction.on_commit(lambda: events.log_batch(build.build_uuid, payloads))
            transaction.on_commit(lambda: metrics.log_lines_stored.inc(len(payloads)))
    return lines
