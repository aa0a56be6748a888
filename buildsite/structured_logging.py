"""JSON log lines for the web process and the q2 cluster. Every line carries the
release and, where known, the request id, account id, build uuid and delivery id,
which code sets with `bind()` for the duration of a unit of work."""

import contextvars
import functools
import json
import logging
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

CONTEXT_KEYS = ("request_id", "account_id", "build_uuid", "delivery_id")
_context: contextvars.ContextVar[dict | None] = contextvars.ContextVar("buildsite_log_context", default=None)


def current_release(base_dir: Path) -> str:
    """The git commit of the checkout, when BUILDSITE_RELEASE does not say."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=base_dir, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


@contextmanager
def bind(**values: object) -> Iterator[None]:
    """Tag every log line written inside the block (in this thread or task)."""
    token = _context.set({**context(), **{k: str(v) for k, v in values.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


def context() -> dict:
    return dict(_context.get() or {})


def carrying_context(target: Callable[[], None]) -> Callable[[], None]:
    """`target`, to run in another thread with the tags bound here now (a new thread
    starts with none)."""
    return functools.partial(contextvars.copy_context().run, target)


class JsonFormatter(logging.Formatter):
    def __init__(self, release: str = "unknown") -> None:
        super().__init__()
        self.release = release

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "release": self.release,
            "process": record.processName,
            **context(),
        }
        for key in CONTEXT_KEYS:
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = str(value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)
