"""Build logs: the cursor codec and the reads that the API, the dashboard and the
websocket consumers share. A cursor is an opaque token for "after this sequence
number"; following it until no lines come back reads the whole log, and the same
cursor later returns only lines stored since."""

import base64
import binascii

from builds.models import Build, LogLine

DEFAULT_PAGE_LINES = 1000
MAX_PAGE_LINES = 5000


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
        if version != "v1" or not seq.isdigit():
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
