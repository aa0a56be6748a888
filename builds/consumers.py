"""Websocket consumers: one per build (its status, and its log lines from a cursor) and
one per account (build events for the lists).

The database is the source of truth and the channel layer the fast path. Each consumer
joins its group before its first read, so no event falls between the two, and then
re-reads the database every BUILDSITE_LIVE_POLL_SECONDS: without Redis that poll is how
events from the q2 cluster arrive at all, with Redis it catches what channels-redis
dropped. One code path serves both set-ups.

A build's lines are sent exactly once and in order: the consumer remembers the last seq
it sent, drops lines at or below it, and when a live batch starts past the next seq
(a batch was dropped) reads the gap from the database first."""

import asyncio
import json
import logging
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.utils import timezone

from accounts.permissions import Action, can
from builds import events, logs
from builds.models import Build, BuildStatus

log = logging.getLogger(__name__)

STATUS_RANK = {BuildStatus.QUEUED: 0, BuildStatus.INITIALIZING: 1, BuildStatus.RUNNING: 2, BuildStatus.STOPPED: 3}
# Membership is checked again this often, so a removed member stops receiving events.
REAUTHORIZE_SECONDS = 30


def is_older(summary: dict, than: dict | None) -> bool:
    """A late message can describe a state the client has already moved past."""
    return than is not None and STATUS_RANK[summary["status"]] < STATUS_RANK[than["status"]]


class LiveConsumer(AsyncJsonWebsocketConsumer):
    """Authorise in connect (closing before accept refuses the handshake), join the group,
    sync from the database, then sync again on every poll tick."""

    group: str | None = None
    poller: asyncio.Task | None = None

    def authorize(self) -> str | None:
        """Runs in a thread with database access: the group to join, or None to refuse."""
        raise NotImplementedError

    async def sync(self) -> None:
        """Send whatever the database has that the client has not had yet."""
        raise NotImplementedError

    @classmethod
    async def encode_json(cls, content: dict) -> str:
        # Compact: a busy build sends the same batch to every watching client.
        return json.dumps(content, separators=(",", ":"))

    def query(self, name: str) -> str:
        return parse_qs(self.scope.get("query_string", b"").decode()).get(name, [""])[0]

    async def connect(self) -> None:
        self.lock = asyncio.Lock()
        self.account_id = self.scope["url_route"]["kwargs"]["account_id"]
        group = await database_sync_to_async(self.authorize)()
        if group is None:
            await self.close()
            return
        self.group = group
        self.authorized_at = time.monotonic()
        await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()
        await self.sync()
        self.poller = asyncio.create_task(self.poll())

    async def disconnect(self, code: int) -> None:
        if self.poller is not None:
            self.poller.cancel()
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def poll(self) -> None:
        while True:
            await asyncio.sleep(settings.BUILDSITE_LIVE_POLL_SECONDS)
            try:
                if time.monotonic() - self.authorized_at > REAUTHORIZE_SECONDS:
                    if await database_sync_to_async(self.authorize)() is None:
                        await self.close()
                        return
                    self.authorized_at = time.monotonic()
                await self.sync()
            except Exception:  # noqa: BLE001 - a failed tick is retried on the next one
                log.warning("live sync of %s failed", self.group, exc_info=True)


class BuildConsumer(LiveConsumer):
    """`ws/accounts/<account_id>/builds/<uuid>/?cursor=C&logs=0|1`. Sends
    {"type": "status", "build": summary} and {"type": "logs", "lines": [...], "cursor": C};
    a client that reconnects with the last cursor it got resumes exactly after it."""

    def authorize(self) -> str | None:
        if not can(self.scope.get("user"), self.account_id, Action.VIEW):
            return None
        return self.find_build(account_id=self.account_id)

    def find_build(self, **scope) -> str | None:
        build = (
            Build.objects.filter(build_uuid=self.scope["url_route"]["kwargs"]["build_uuid"], **scope)
            .only("pk", "build_uuid")
            .first()
        )
        if build is None:
            return None
        try:
            self.last_seq = logs.decode_cursor(self.query("cursor"))
        except logs.InvalidCursor:
            return None
        self.build_pk = build.pk
        self.with_logs = self.query("logs") != "0"
        self.last_summary: dict | None = None
        return events.build_group(build.build_uuid)

    def read(self, after_seq: int) -> tuple[dict, list[dict]]:
        build = Build.objects.select_related("worker").get(pk=self.build_pk)
        lines = []
        if self.with_logs and build.log_seq > after_seq:
            lines = [logs.line_payload(line) for line in logs.lines_after(build, after_seq, logs.DEFAULT_PAGE_LINES)]
        return events.build_summary(build), lines

    async def sync(self) -> None:
        async with self.lock:
            while True:
                summary, lines = await database_sync_to_async(self.read)(self.last_seq)
                await self.deliver(lines)
                if len(lines) < logs.DEFAULT_PAGE_LINES:
                    break
            # After the lines: a client sees "stopped" once it has the last line.
            await self.send_status(summary)

    async def deliver(self, lines: list[dict]) -> bool:
        """Send the lines that directly follow the last one sent. False when the first
        new line is past the next seq, i.e. something in between is missing."""
        fresh = []
        for line in lines:
            if line["seq"] <= self.last_seq + len(fresh):
                continue
            if line["seq"] != self.last_seq + len(fresh) + 1:
                break
            fresh.append(line)
        if fresh:
            self.last_seq = fresh[-1]["seq"]
            await self.send_json({"type": "logs", "lines": fresh, "cursor": logs.encode_cursor(self.last_seq)})
        return not lines or lines[-1]["seq"] <= self.last_seq

    async def send_status(self, summary: dict) -> None:
        if summary != self.last_summary and not is_older(summary, self.last_summary):
            self.last_summary = summary
            await self.send_json({"type": "status", "build": summary})

    async def build_status(self, event: dict) -> None:
        async with self.lock:
            await self.send_status(event["build"])

    async def build_logs(self, event: dict) -> None:
        if not self.with_logs:
            return
        async with self.lock:
            if not await self.deliver(event["lines"]):
                # A batch went missing (channels-redis drops messages to a full channel):
                # read the gap, and the rest of this batch, from the database.
                while True:
                    _, lines = await database_sync_to_async(self.read)(self.last_seq)
                    await self.deliver(lines)
                    if len(lines) < logs.DEFAULT_PAGE_LINES:
                        break


class AdminBuildConsumer(BuildConsumer):
    """The same stream for the Django admin, whose staff see builds of every account."""

    def authorize(self) -> str | None:
        user = self.scope.get("user")
        if not (user and user.is_active and user.is_staff and user.has_perm("builds.view_build")):
            return None
        return self.find_build()

    async def connect(self) -> None:
        self.scope["url_route"]["kwargs"].setdefault("account_id", "")
        await super().connect()


# How far back the account poll looks again, for transactions that committed a change
# stamped a little before the newest change already seen.
ACCOUNT_OVERLAP = timedelta(seconds=5)
ACCOUNT_BATCH = 200


class AccountConsumer(LiveConsumer):
    """`ws/accounts/<account_id>/?since=EPOCH`. Sends {"type": "build", "build": summary}
    whenever a build of the account is created or changes (lists refresh their row)."""

    def authorize(self) -> str | None:
        if not can(self.scope.get("user"), self.account_id, Action.VIEW):
            return None
        now = timezone.now()
        try:
            since = datetime.fromtimestamp(float(self.query("since")), tz=UTC)
        except ValueError:
            since = now
        # The page was rendered a moment before it connected; never replay more than that.
        self.watermark = min(max(since, now - timedelta(minutes=10)), now)
        self.sent: dict[str, tuple[dict, datetime]] = {}
        return events.account_group(self.account_id)

    def read(self) -> list[tuple[dict, datetime]]:
        changed = (
            Build.objects.filter(account_id=self.account_id, modified_on__gt=self.watermark - ACCOUNT_OVERLAP)
            .select_related("worker")
            .order_by("modified_on")[:ACCOUNT_BATCH]
        )
        return [(events.build_summary(build), build.modified_on) for build in changed]

    async def sync(self) -> None:
        async with self.lock:
            changed = await database_sync_to_async(self.read)()
            for summary, modified_on in changed:
                self.watermark = max(self.watermark, modified_on)
                await self.send_build(summary, modified_on)
            horizon = self.watermark - ACCOUNT_OVERLAP
            self.sent = {key: value for key, value in self.sent.items() if value[1] >= horizon}

    async def send_build(self, summary: dict, modified_on: datetime) -> None:
        previous = self.sent.get(summary["build_uuid"])
        if previous is not None and (summary == previous[0] or is_older(summary, previous[0])):
            return
        self.sent[summary["build_uuid"]] = (summary, modified_on)
        await self.send_json({"type": "build", "build": summary})

    async def build_status(self, event: dict) -> None:
        async with self.lock:
            await self.send_build(event["build"], timezone.now())
