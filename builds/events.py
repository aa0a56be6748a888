"""Realtime events for websocket clients. The database is the source of truth; these
are the fast path, sent only after the change they describe has committed (callers use
transaction.on_commit), and a client that misses one resyncs by cursor. With Redis,
each process sends them from one publisher, so no caller waits for them: in the web
process it runs on the server's event loop, elsewhere on a thread of its own."""

import asyncio
import collections
import contextvars
import logging
import os
import threading

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings

log = logging.getLogger(__name__)


def build_group(build_uuid) -> str:
    return f"build.{build_uuid}"


def account_group(account_id: str) -> str:
    return f"account.{account_id}"


def build_summary(build) -> dict:
    return {
        "build_uuid": str(build.build_uuid),
        "worker_tag": build.worker.tag,
        "status": build.status,
        "build_outcome": build.build_outcome,
        "reason": build.reason,
        "branch": build.branch,
        "commit_hash": build.commit_hash,
        "created_on": build.created_on.isoformat(),
        "running_on": build.running_on.isoformat() if build.running_on else None,
        "stopped_on": build.stopped_on.isoformat() if build.stopped_on else None,
        "exit_code": build.exit_code,
        "phases": build.phases,
    }


def send(*messages: tuple[str, dict]) -> None:
    """(group, message) pairs, sent in order. Best effort: a channel layer that is
    down must never fail a build or a request."""
    if not messages:
        return
    if settings.REDIS_URL:
        publisher().put(messages)
        return
    # The in-memory layer lives in this process's event loop (daphne's), which
    # async_to_sync reaches from a request's thread; there is nothing to wait for.
    layer = get_channel_layer()
    try:
        async_to_sync(send_all)(layer, messages)
    except Exception:  # noqa: BLE001 - the database already has the truth
        log.warning("channel layer send to %s failed", groups(messages), exc_info=True)


async def send_all(layer, messages: tuple[tuple[str, dict], ...]) -> None:
    for group, message in messages:
        await layer.group_send(group, message)


def groups(messages: tuple[tuple[str, dict], ...]) -> str:
    return ", ".join(group for group, _ in messages)


# Messages waiting to be sent beyond this are dropped (and logged): while Redis hangs,
# memory stays bounded, and clients catch up from the database.
MAX_PENDING = 10_000
SEND_TIMEOUT_SECONDS = 5


class Publisher:
    """Sends a process's messages from one event loop, in the order they were put.
    Whoever reports an event (a webhook's request, a build's log pump) hands it over
    without waiting for Redis, and the process keeps one Redis connection pool:
    async_to_sync from a thread without a loop (a q2 worker) would make a new loop,
    and so a new connection, per send.

    Given a loop (the web server's), it runs there; otherwise on a new loop in a
    thread of its own."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.pid = os.getpid()
        if loop is None:
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="channel-layer-publisher", daemon=True).start()
        self.loop = loop
        # Both only touched on the loop's thread.
        self.pending: collections.deque[tuple[tuple[tuple[str, dict], ...], contextvars.Context]] = collections.deque()
        self.draining: asyncio.Task | None = None

    def serves(self) -> bool:
        """Whether it can still send: it belongs to this process (a forked q2 worker
        has no copy of the parent's thread) and its loop runs (a server's loop stops
        at shutdown)."""
        return self.pid == os.getpid() and self.loop.is_running()

    def put(self, messages: tuple[tuple[str, dict], ...]) -> None:
        # With the caller's context, so what is logged about these messages names the
        # caller's build and account (buildsite.structured_logging.bind).
        try:
            self.loop.call_soon_threadsafe(self.enqueue, messages, contextvars.copy_context())
        except RuntimeError:  # the server's loop closed under us: it is shutting down
            log.warning("channel layer publisher stopped: dropped the message to %s", groups(messages))

    def enqueue(self, messages: tuple[tuple[str, dict], ...], context: contextvars.Context) -> None:
        if len(self.pending) >= MAX_PENDING:
            context.run(log.warning, "channel layer backlog full: dropped the message to %s", groups(messages))
            return
        self.pending.append((messages, context))
        # One drainer at a time keeps the order; none is left waiting on a loop while
        # nothing is pending (a server's loop may close without cancelling it).
        if self.draining is None:
            self.draining = self.loop.create_task(self.drain())

    async def drain(self) -> None:
        try:
            while self.pending:
                messages, context = self.pending.popleft()
                try:
                    # A Redis that stops answering (without closing the connection) holds
                    # up the messages behind, never the callers: at most this long each.
                    async with asyncio.timeout(SEND_TIMEOUT_SECONDS):
                        await send_all(get_channel_layer(), messages)
                except Exception:  # noqa: BLE001 - the database already has the truth
                    context.run(log.warning, "channel layer send to %s failed", groups(messages), exc_info=True)
        finally:
            self.draining = None


_publisher: Publisher | None = None
_publisher_lock = threading.Lock()


def publisher() -> Publisher:
    """This process's publisher: the one on the server's loop in the web process,
    else one on a thread of its own."""
    global _publisher
    with _publisher_lock:
        if _publisher is None or not _publisher.serves():
            _publisher = Publisher()
        return _publisher


def publish_from(loop: asyncio.AbstractEventLoop) -> None:
    """Called by the ASGI application from the server's loop: the web process sends
    its events there, as its consumers already talk to Redis there. A publisher
    thread of its own would be one more thread taking the GIL in turn with every
    request's (measured: about 0.3 ms of CPU per webhook delivery, docs/benchmarks.md)."""
    global _publisher
    if not settings.REDIS_URL or (_publisher is not None and _publisher.loop is loop):
        return
    with _publisher_lock:
        if _publisher is None or _publisher.loop is not loop:
            _publisher = Publisher(loop)


def status_message(build) -> dict:
    return {"type": "build.status", "build": build_summary(build)}


def build_changed(build) -> None:
    message = status_message(build)
    send((build_group(build.build_uuid), message), (account_group(build.account_id), message))


def builds_queued(builds) -> None:
    """New builds, to their accounts' lists: nobody can be watching a build's own
    group before the build exists."""
    send(*((account_group(build.account_id), status_message(build)) for build in builds))


def log_batch(build_uuid, chunks: list[dict]) -> None:
    """A batch of stored lines as the chunks that hold them (what builds.logs.append
    returns), in seq order: a dict per chunk, not per line, keeps a build that prints
    a million lines from costing a million dicts here. Consumers expand them."""
    send((build_group(build_uuid), {"type": "build.logs", "build_uuid": str(build_uuid), "chunks": chunks}))
