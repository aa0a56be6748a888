"""Realtime events for websocket clients. The database is the source of truth; these
are the fast path, sent only after the change they describe has committed (callers use
transaction.on_commit), and a client that misses one resyncs by cursor. With Redis,
each process sends them from one publisher thread, so no caller waits for them."""

import asyncio
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
    """Sends a process's messages from a thread of its own with its own event loop,
    in the order they were put. Whoever reports an event (a webhook's request, a
    build's log pump) hands it over without waiting for Redis, and the process keeps
    one loop and one Redis connection pool: async_to_sync from a thread without a
    loop (a q2 worker) would make a new loop, and so a new connection, per send."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.pending: asyncio.Queue = asyncio.Queue(maxsize=MAX_PENDING)
        threading.Thread(target=self.loop.run_forever, name="channel-layer-publisher", daemon=True).start()
        asyncio.run_coroutine_threadsafe(self.drain(), self.loop)

    def put(self, messages: tuple[tuple[str, dict], ...]) -> None:
        # With the caller's context, so what is logged about these messages names the
        # caller's build and account (buildsite.structured_logging.bind).
        self.loop.call_soon_threadsafe(self.enqueue, messages, contextvars.copy_context())

    def enqueue(self, messages: tuple[tuple[str, dict], ...], context: contextvars.Context) -> None:
        try:
            self.pending.put_nowait((messages, context))
        except asyncio.QueueFull:
            context.run(log.warning, "channel layer backlog full: dropped the message to %s", groups(messages))

    async def drain(self) -> None:
        while True:
            messages, context = await self.pending.get()
            try:
                # A Redis that stops answering (without closing the connection) holds
                # up the messages behind, never the callers: at most this long each.
                await asyncio.wait_for(send_all(get_channel_layer(), messages), SEND_TIMEOUT_SECONDS)
            except Exception:  # noqa: BLE001 - the database already has the truth
                context.run(log.warning, "channel layer send to %s failed", groups(messages), exc_info=True)


_publisher: Publisher | None = None
_publisher_lock = threading.Lock()


def publisher() -> Publisher:
    """This process's publisher; a forked child (a q2 worker) starts its own, as the
    parent's thread does not exist there."""
    global _publisher
    with _publisher_lock:
        if _publisher is None or _publisher.pid != os.getpid():
            _publisher = Publisher()
        return _publisher


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
