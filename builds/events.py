"""Realtime events for websocket clients. The database is the source of truth; these
are the fast path, sent only after the change they describe has committed (callers use
transaction.on_commit), and a client that misses one resyncs by cursor."""

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

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
    """(group, message) pairs, in one hop to the event loop. Best effort: a channel
    layer that is down must never fail a build."""
    layer = get_channel_layer()
    if layer is None or not messages:
        return
    try:
        async_to_sync(send_all)(layer, messages)
    except Exception:  # noqa: BLE001 - the database already has the truth
        log.warning("channel layer send to %s failed", ", ".join(group for group, _ in messages), exc_info=True)


async def send_all(layer, messages: tuple[tuple[str, dict], ...]) -> None:
    for group, message in messages:
        await layer.group_send(group, message)


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
