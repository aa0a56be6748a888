"""Websocket consumers: one per build (its status, and its log lines from a cursor) and
one per account (build events for the lists).

The database is the source of truth and the channel layer the fast path. All sockets of
a daphne process that watch the same build (or account) share one Watch: one channel
layer subscription to the group, so a batch of lines is one Redis message per process
however many browsers watch, and one database read every BUILDSITE_LIVE_POLL_SECONDS.
Without Redis that poll is how events from the q2 cluster arrive at all; with Redis it
catches what channels-redis dropped. One code path serves both set-ups.

Each socket handles its messages one at a time, in arrival order, from its inbox. The
Watch is subscribed before the socket's first read, so no event falls between the two.
A build's lines are sent exactly once and in order: the consumer remembers the last seq
it sent, drops lines at or below it, and when a batch starts past the next seq (one
went missing) reads the gap from the database."""

import asyncio
import contextlib
import json
import logging
import random
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer
from django.conf import settings
from django.utils import timezone

from accounts.permissions import Action, can
from builds import events, logs
from builds.models import Build, BuildStatus
from buildsite import metrics

log = logging.getLogger(__name__)

STATUS_RANK = {BuildStatus.QUEUED: 0, BuildStatus.INITIALIZING: 1, BuildStatus.RUNNING: 2, BuildStatus.STOPPED: 3}
# Membership is checked again every 1-2 times this, so a removed member stops receiving
# events; the spread keeps sockets opened together from re-checking together.
REAUTHORIZE_SECONDS = 30
POLL = "poll"


def is_older(summary: dict, than: dict | None) -> bool:
    """A late message can describe a state the client has already moved past."""
    return than is not None and STATUS_RANK[summary["status"]] < STATUS_RANK[than["status"]]


def encode(content: dict) -> str:
    return json.dumps(content, separators=(",", ":"))


class Watch:
    """One build's or account's live feed in this process, shared by its sockets: a
    channel-layer subscription whose messages go to every socket's inbox, and a poll
    that reads the database once per tick for all of them (`poll_args` says what to
    read, `poll_read` reads it in a thread) and hands each socket the result."""

    active: dict[tuple, "Watch"] = {}

    def __init__(self, group: str, kind: type["LiveConsumer"]) -> None:
        self.group = group
        self.kind = kind
        self.consumers: set[LiveConsumer] = set()
        # The highest log seq that arrived live: every socket has it sent or in its inbox.
        self.live_seq = 0
        self.subscribed = asyncio.Event()
        self.tasks = [asyncio.create_task(self.listen()), asyncio.create_task(self.poll())]

    @classmethod
    async def join(cls, consumer: "LiveConsumer") -> "Watch":
        key = (asyncio.get_running_loop(), consumer.group)
        if key not in cls.active:
            cls.active[key] = cls(consumer.group, type(consumer))
        watch = cls.active[key]
        watch.consumers.add(consumer)
        await watch.subscribed.wait()
        return watch

    @classmethod
    def leave(cls, consumer: "LiveConsumer") -> None:
        key = (asyncio.get_running_loop(), consumer.group)
        watch = cls.active.get(key)
        if watch is not None:
            watch.consumers.discard(consumer)
            if not watch.consumers:
                del cls.active[key]
                for task in watch.tasks:
                    task.cancel()

    async def listen(self) -> None:
        """Forward the group's messages to every socket's inbox. While the channel layer
        is unreachable the poll alone serves the sockets; subscribing is retried."""
        layer = get_channel_layer()
        while True:
            channel = None
            try:
                channel = await layer.new_channel()
                await layer.group_add(self.group, channel)
                self.subscribed.set()
                while True:
                    message = await layer.receive(channel)
                    if message["type"] == "build.logs":
                        # Once per process, for every socket of this build.
                        message["lines"] = logs.chunk_lines(message["chunks"])
                    for consumer in self.consumers:
                        consumer.inbox.put_nowait(message)
                    if message["type"] == "build.logs" and message["lines"]:
                        self.live_seq = max(self.live_seq, message["lines"][-1]["seq"])
            except Exception:  # noqa: BLE001 - the database poll keeps every socket served
                log.warning("channel layer unavailable for %s; polling only for now", self.group, exc_info=True)
            finally:
                if channel is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.shield(layer.group_discard(self.group, channel))
            self.subscribed.set()
            await asyncio.sleep(settings.BUILDSITE_LIVE_POLL_SECONDS)

    async def poll(self) -> None:
        while True:
            await asyncio.sleep(settings.BUILDSITE_LIVE_POLL_SECONDS)
            consumers = [consumer for consumer in self.consumers if consumer.ready]
            if not consumers:
                continue
            try:
                args = self.kind.poll_args(consumers, self)
                result = await database_sync_to_async(self.kind.poll_read)(args)
            except Exception:  # noqa: BLE001 - a failed tick is retried on the next one
                log.warning("live poll of %s failed", self.group, exc_info=True)
                continue
            message = {"type": POLL, "result": result, "cache": {}}
            for consumer in consumers:
                consumer.inbox.put_nowait(message)


class LiveConsumer(AsyncWebsocketConsumer):
    """Join the Watch, authorise and read the initial state (closing before accept
    refuses the handshake), send that state, then work through the inbox."""

    ready = False
    worker: asyncio.Task | None = None

    def group_name(self) -> str:
        """The channel-layer group, from the URL alone (it is joined before any read)."""
        raise NotImplementedError

    def authorize(self) -> bool:
        """In a thread with database access: whether to accept, having read what to send
        first into self.initial."""
        raise NotImplementedError

    def still_allowed(self) -> bool:
        return can(self.scope.get("user"), self.account_id, Action.VIEW)

    @staticmethod
    def poll_args(consumers: list, watch: Watch) -> tuple:
        raise NotImplementedError

    @staticmethod
    def poll_read(args: tuple):
        raise NotImplementedError

    async def polled(self, result, cache: dict) -> None:
        """Send what a poll read that this socket has not sent yet."""
        raise NotImplementedError

    async def start(self) -> None:
        """Send the initial state read in authorize()."""
        await self.polled(self.initial, {})

    async def handle(self, message: dict) -> None:
        raise NotImplementedError

    def query(self, name: str) -> str:
        return parse_qs(self.scope.get("query_string", b"").decode()).get(name, [""])[0]

    def schedule_reauthorization(self) -> None:
        self.reauthorize_at = time.monotonic() + REAUTHORIZE_SECONDS * (1 + random.random())  # noqa: S311 - jitter

    async def connect(self) -> None:
        self.account_id = self.scope["url_route"]["kwargs"].get("account_id", "")
        self.inbox: asyncio.Queue = asyncio.Queue()
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close()
            return
        self.group = self.group_name()
        self.watch = await Watch.join(self)
        if not await database_sync_to_async(self.authorize)():
            Watch.leave(self)
            await self.close()
            return
        self.schedule_reauthorization()
        await self.accept()
        metrics.websocket_clients.inc()
        self.counted = True
        await self.start()
        self.ready = True
        self.worker = asyncio.create_task(self.work())

    async def disconnect(self, code: int) -> None:
        if getattr(self, "counted", False):
            metrics.websocket_clients.dec()
            self.counted = False
        if hasattr(self, "group"):
            Watch.leave(self)
        if self.worker is not None:
            self.worker.cancel()

    async def work(self) -> None:
        while True:
            message = await self.inbox.get()
            try:
                if message["type"] == POLL:
                    if time.monotonic() > self.reauthorize_at and not await self.reauthorize():
                        return
                    await self.polled(message["result"], message["cache"])
                else:
                    await self.handle(message)
            except Exception:  # noqa: BLE001 - the next message or poll repairs what this one missed
                log.warning("live message %s for %s failed", message["type"], self.group, exc_info=True)

    async def reauthorize(self) -> bool:
        self.schedule_reauthorization()
        if await database_sync_to_async(self.still_allowed)():
            return True
        Watch.leave(self)
        await self.close()
        return False

    async def send_json(self, content: dict) -> None:
        await self.send(text_data=encode(content))


def read_build(build_pk: int, after_seq: int | None) -> tuple[dict, int, list[dict]]:
    """The build's summary, its last stored seq, and a page of lines after `after_seq`
    (none when after_seq is None or nothing is newer)."""
    build = Build.objects.select_related("worker").get(pk=build_pk)
    lines = []
    if after_seq is not None and build.log_seq > after_seq:
        lines = [logs.line_payload(line) for line in logs.lines_after(build, after_seq, logs.DEFAULT_PAGE_LINES)]
    return events.build_summary(build), build.log_seq, lines


class BuildConsumer(LiveConsumer):
    """`ws/accounts/<account_id>/builds/<uuid>/?cursor=C&logs=0|1`. Sends
    {"type": "status", "build": summary} and {"type": "logs", "lines": [...], "cursor": C};
    a client that reconnects with the last cursor it got resumes exactly after it."""

    last_seq = 0
    last_summary: dict | None = None

    def group_name(self) -> str:
        return events.build_group(self.scope["url_route"]["kwargs"]["build_uuid"])

    def authorize(self) -> bool:
        return self.still_allowed() and self.find_build(account_id=self.account_id)

    def find_build(self, **scope) -> bool:
        build_uuid = self.scope["url_route"]["kwargs"]["build_uuid"]
        build = Build.objects.filter(build_uuid=build_uuid, **scope).only("pk").first()
        if build is None:
            return False
        try:
            self.last_seq = logs.decode_cursor(self.query("cursor"))
        except logs.InvalidCursor:
            return False
        self.build_pk = build.pk
        self.with_logs = self.query("logs") != "0"
        self.initial = read_build(build.pk, self.last_seq if self.with_logs else None)
        return True

    @staticmethod
    def poll_args(consumers: list, watch: Watch) -> tuple:
        behind = [consumer.last_seq for consumer in consumers if consumer.with_logs]
        if not behind:
            return consumers[0].build_pk, None
        # What arrived live is sent or queued for every socket: read only past it.
        return consumers[0].build_pk, max(min(behind), watch.live_seq)

    @staticmethod
    def poll_read(args: tuple) -> tuple[dict, int, list[dict]]:
        return read_build(*args)

    async def start(self) -> None:
        summary, _, lines = self.initial
        if self.with_logs:
            await self.deliver(lines, {})
            if len(lines) == logs.DEFAULT_PAGE_LINES:
                await self.catch_up()
        await self.send_status(summary)

    async def polled(self, result: tuple[dict, int, list[dict]], cache: dict) -> None:
        summary, _, lines = result
        if self.with_logs and lines:
            # Lines whose live message was lost. Under load a message can still be on
            # its way, so where the channel layer delivers at all, only lines stored a
            # poll interval ago count as lost.
            grace = settings.BUILDSITE_LIVE_POLL_SECONDS if self.watch.live_seq else 0
            cutoff = time.time() - grace
            overdue = lines[: next((i for i, line in enumerate(lines) if line["ts"] > cutoff), len(lines))]
            if not await self.deliver(overdue, cache) and overdue[-1]["seq"] > self.watch.live_seq:
                await self.catch_up()
        # After the lines: a client sees "stopped" once it has the last line.
        await self.send_status(summary)

    async def handle(self, message: dict) -> None:
        if message["type"] == "build.status":
            await self.send_status(message["build"])
        elif message["type"] == "build.logs" and self.with_logs:
            if not await self.deliver(message["lines"], message.setdefault("cache", {})):
                # A batch went missing (channels-redis drops messages to a full channel):
                # read the gap, and the rest of this batch, from the database.
                await self.catch_up()

    async def deliver(self, lines: list[dict], cache: dict) -> bool:
        """Send the part of `lines` (consecutive seqs, as stored) that follows the last
        line sent. False when they start past the next seq: something is missing.
        Sockets of this process that are equally up to date send the same text, so it
        is encoded once per message (`cache` travels with the message)."""
        if not lines:
            return True
        offset = self.last_seq + 1 - lines[0]["seq"]
        if offset < 0:
            return False
        if offset < len(lines):
            key = (lines[offset]["seq"], lines[-1]["seq"])
            if key not in cache:
                cursor = logs.encode_cursor(lines[-1]["seq"])
                cache[key] = encode({"type": "logs", "lines": lines[offset:], "cursor": cursor})
            self.last_seq = lines[-1]["seq"]
            await self.send(text_data=cache[key])
        return True

    async def catch_up(self) -> None:
        """Read from the database until this client has every stored line."""
        while True:
            _, _, lines = await database_sync_to_async(read_build)(self.build_pk, self.last_seq)
            await self.deliver(lines, {})
            if len(lines) < logs.DEFAULT_PAGE_LINES:
                return

    async def send_status(self, summary: dict) -> None:
        if summary != self.last_summary and not is_older(summary, self.last_summary):
            self.last_summary = summary
            await self.send_json({"type": "status", "build": summary})


class AdminBuildConsumer(BuildConsumer):
    """The same stream for the Django admin, whose staff see builds of every account."""

    def still_allowed(self) -> bool:
        user = self.scope.get("user")
        return bool(user and user.is_active and user.is_staff and user.has_perm("builds.view_build"))

    def authorize(self) -> bool:
        return self.still_allowed() and self.find_build()


# How far back the account poll looks again, for transactions that committed a change
# stamped a little before the newest change already seen.
ACCOUNT_OVERLAP = timedelta(seconds=5)
ACCOUNT_BATCH = 200


def read_account(account_id: str, since: datetime) -> list[tuple[dict, datetime]]:
    changed = (
        Build.objects.filter(account_id=account_id, modified_on__gt=since)
        .select_related("worker")
        .order_by("modified_on")[:ACCOUNT_BATCH]
    )
    return [(events.build_summary(build), build.modified_on) for build in changed]


class AccountConsumer(LiveConsumer):
    """`ws/accounts/<account_id>/?since=EPOCH`. Sends {"type": "build", "build": summary}
    whenever a build of the account is created or changes (lists refresh their row)."""

    def group_name(self) -> str:
        return events.account_group(self.account_id)

    def authorize(self) -> bool:
        if not self.still_allowed():
            return False
        now = timezone.now()
        try:
            since = datetime.fromtimestamp(float(self.query("since")), tz=UTC)
        except ValueError:
            since = now
        # The page was rendered a moment before it connected; never replay more than that.
        self.watermark = min(max(since, now - timedelta(minutes=10)), now)
        self.sent: dict[str, tuple[dict, datetime]] = {}
        self.initial = read_account(self.account_id, self.watermark - ACCOUNT_OVERLAP)
        return True

    @staticmethod
    def poll_args(consumers: list, watch: Watch) -> tuple:
        return consumers[0].account_id, min(consumer.watermark for consumer in consumers) - ACCOUNT_OVERLAP

    @staticmethod
    def poll_read(args: tuple) -> list[tuple[dict, datetime]]:
        return read_account(*args)

    async def polled(self, result: list[tuple[dict, datetime]], cache: dict) -> None:
        horizon = self.watermark - ACCOUNT_OVERLAP
        for summary, modified_on in result:
            if modified_on > horizon:
                self.watermark = max(self.watermark, modified_on)
                await self.send_build(summary, modified_on)
        horizon = self.watermark - ACCOUNT_OVERLAP
        self.sent = {key: value for key, value in self.sent.items() if value[1] >= horizon}

    async def handle(self, message: dict) -> None:
        if message["type"] == "build.status":
            await self.send_build(message["build"], timezone.now())

    async def send_build(self, summary: dict, modified_on: datetime) -> None:
        previous = self.sent.get(summary["build_uuid"])
        if previous is not None and (summary == previous[0] or is_older(summary, previous[0])):
            return
        self.sent[summary["build_uuid"]] = (summary, modified_on)
        await self.send_json({"type": "build", "build": summary})
