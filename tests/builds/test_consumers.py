"""Websocket consumers through Channels' WebsocketCommunicator: who may connect, and that
a build's lines arrive exactly once and in order from any cursor, live or after a drop."""

import asyncio

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser
from django.test import Client
from django.utils import timezone

from builds import events, logs
from builds.models import Build, BuildOutcome, LogChunk
from buildsite.asgi import application
from buildsite.routing import websocket_urlpatterns
from tests.factories import make_build, make_trigger, make_user, make_worker

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def build(account):
    return make_build(make_trigger(make_worker(account, "live")))


@pytest.fixture
def slow_poll(settings):
    """Live messages only: a poll this slow never fires during a test."""
    settings.BUILDSITE_LIVE_POLL_SECONDS = 60


def build_path(account_id, build, cursor: str = "") -> str:
    return f"/ws/accounts/{account_id}/builds/{build.build_uuid}/" + (f"?cursor={cursor}" if cursor else "")


async def connect(path: str, user) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), path)
    communicator.scope["user"] = user
    connected, _ = await communicator.connect()
    assert connected
    return communicator


async def refused(path: str, user) -> bool:
    communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), path)
    communicator.scope["user"] = user
    connected, _ = await communicator.connect()
    await communicator.disconnect()
    return not connected


async def read_lines(communicator, up_to_seq: int) -> tuple[list[int], list[dict]]:
    """Every line message until seq `up_to_seq`, and the status messages seen meanwhile."""
    seqs, statuses = [], []
    while not seqs or seqs[-1] < up_to_seq:
        message = await communicator.receive_json_from(timeout=15)
        if message["type"] == "logs":
            seqs += [line["seq"] for line in message["lines"]]
            assert logs.decode_cursor(message["cursor"]) == seqs[-1]
        else:
            statuses.append(message["build"])
    return seqs, statuses


append = sync_to_async(logs.append)


async def test_it_refuses_anonymous_users_and_non_members(account, other_account, outsider, build):
    assert await refused(build_path(account.id, build), AnonymousUser())
    assert await refused(build_path(account.id, build), outsider)
    # A member of another account cannot reach this build through their own account either.
    assert await refused(build_path(other_account.id, build), outsider)
    assert await refused(f"/ws/accounts/{account.id}/", outsider)


async def test_it_refuses_a_build_of_another_account(account, other_account, member):
    foreign = await sync_to_async(lambda: make_build(make_trigger(make_worker(other_account, "x"))))()
    assert await refused(build_path(account.id, foreign), member)


async def test_it_refuses_a_cursor_it_did_not_issue(account, member, build):
    assert await refused(build_path(account.id, build, "garbage"), member)


async def test_it_sends_the_backlog_after_the_cursor_then_the_status(account, member, build, slow_poll):
    await append(build, [("stdout", f"line {i}") for i in range(1, 6)])
    communicator = await connect(build_path(account.id, build, logs.encode_cursor(2)), member)
    message = await communicator.receive_json_from(timeout=15)
    assert message["type"] == "logs"
    assert [(line["seq"], line["text"]) for line in message["lines"]] == [(3, "line 3"), (4, "line 4"), (5, "line 5")]
    status = await communicator.receive_json_from(timeout=15)
    assert status["type"] == "status" and status["build"]["status"] == "queued"
    await communicator.disconnect()


async def test_a_long_backlog_arrives_in_pages_without_gaps(account, member, build, slow_poll):
    # One line first, so that pages end in the middle of stored chunks.
    await append(build, [("stdout", "0")])
    await append(build, [("stdout", str(i)) for i in range(1, logs.DEFAULT_PAGE_LINES * 2 + 7)])
    communicator = await connect(build_path(account.id, build), member)
    seqs, _ = await read_lines(communicator, logs.DEFAULT_PAGE_LINES * 2 + 7)
    assert seqs == list(range(1, logs.DEFAULT_PAGE_LINES * 2 + 8))
    await communicator.disconnect()


async def test_a_cursor_in_the_middle_of_a_chunk_resumes_right_after_it(account, member, build, slow_poll):
    await append(build, [("stdout", "one\ntwo\nthree\nfour")])
    communicator = await connect(build_path(account.id, build, logs.encode_cursor(2)), member)
    message = await communicator.receive_json_from(timeout=15)
    assert [(line["seq"], line["text"]) for line in message["lines"]] == [(3, "three"), (4, "four")]
    await communicator.receive_json_from(timeout=15)  # status
    # Live: a batch that arrives as one chunk is sent as its lines.
    await append(build, [("stdout", "five\nsix"), ("stderr", "seven")])
    message = await communicator.receive_json_from(timeout=15)
    assert [(line["seq"], line["stream"], line["text"]) for line in message["lines"]] == [
        (5, "stdout", "five"),
        (6, "stdout", "six"),
        (7, "stderr", "seven"),
    ]
    assert logs.decode_cursor(message["cursor"]) == 7
    await communicator.disconnect()


async def test_live_lines_and_status_follow_the_backlog(account, member, build, slow_poll):
    communicator = await connect(build_path(account.id, build), member)
    assert (await communicator.receive_json_from(timeout=15))["type"] == "status"
    await append(build, [("stdout", "one"), ("stderr", "two")])
    await append(build, [("stdout", "three")])
    seqs, _ = await read_lines(communicator, 3)
    assert seqs == [1, 2, 3]
    await sync_to_async(build.stop)(BuildOutcome.SUCCESS)
    status = await communicator.receive_json_from(timeout=15)
    assert status["build"]["status"] == "stopped" and status["build"]["build_outcome"] == "success"
    await communicator.disconnect()


async def test_a_repeated_batch_is_dropped_and_a_missing_one_is_read_from_the_database(
    account, member, build, slow_poll
):
    communicator = await connect(build_path(account.id, build), member)
    await communicator.receive_json_from(timeout=15)  # status
    [first] = await append(build, [("stdout", "one")])
    assert (await read_lines(communicator, 1))[0] == [1]
    layer = get_channel_layer()
    group = events.build_group(build.build_uuid)
    # A duplicate of what was sent: nothing goes out.
    await layer.group_send(group, {"type": "build.logs", "chunks": [first]})
    assert await communicator.receive_nothing(timeout=0.3)
    # Lines 2-3 are stored but their message is lost; line 4 arrives live.
    now = timezone.now()

    def store_silently():
        LogChunk.objects.create(
            build=build, first_seq=2, last_seq=3, timestamp=now, stream="stdout", text="quiet 2\nquiet 3"
        )
        Build.objects.filter(pk=build.pk).update(log_seq=3)

    await sync_to_async(store_silently)()
    await append(build, [("stdout", "four")])
    seqs, _ = await read_lines(communicator, 4)
    assert seqs == [2, 3, 4]
    assert await communicator.receive_nothing(timeout=0.3)
    await communicator.disconnect()


async def test_the_poll_delivers_lines_whose_message_was_lost(account, member, build, settings):
    settings.BUILDSITE_LIVE_POLL_SECONDS = 0.05
    communicator = await connect(build_path(account.id, build), member)
    await communicator.receive_json_from(timeout=15)  # status
    now = timezone.now()

    def store_silently():
        LogChunk.objects.create(build=build, first_seq=1, last_seq=1, timestamp=now, stream="stdout", text="no event")
        Build.objects.filter(pk=build.pk).update(log_seq=1)

    await sync_to_async(store_silently)()
    message = await communicator.receive_json_from(timeout=15)
    assert [line["text"] for line in message["lines"]] == ["no event"]
    await communicator.disconnect()


async def test_reconnecting_with_the_last_cursor_resumes_exactly_after_it(account, member, build, slow_poll):
    await append(build, [("stdout", f"{i}") for i in range(1, 4)])
    communicator = await connect(build_path(account.id, build), member)
    message = await communicator.receive_json_from(timeout=15)
    cursor = message["cursor"]
    await communicator.disconnect()
    await append(build, [("stdout", f"{i}") for i in range(4, 7)])  # written while disconnected
    communicator = await connect(build_path(account.id, build, cursor), member)
    seqs, _ = await read_lines(communicator, 6)
    assert seqs == [4, 5, 6]
    await append(build, [("stdout", "7")])
    assert (await read_lines(communicator, 7))[0] == [7]
    await communicator.disconnect()


async def test_the_account_socket_sends_build_events_of_the_account_only(account, other_account, member, build):
    communicator = await connect(f"/ws/accounts/{account.id}/", member)
    foreign = await sync_to_async(lambda: make_build(make_trigger(make_worker(other_account, "x"))))()
    await sync_to_async(foreign.transition)("initializing")
    await sync_to_async(build.transition)("initializing")
    seen = []
    while ("initializing", str(build.build_uuid)) not in seen:
        message = await communicator.receive_json_from(timeout=15)
        assert message["type"] == "build"
        seen.append((message["build"]["status"], message["build"]["build_uuid"]))
    assert await communicator.receive_nothing(timeout=0.3)
    assert {uuid for _, uuid in seen} == {str(build.build_uuid)}
    await communicator.disconnect()


async def test_a_new_build_is_announced_the_moment_it_is_committed(account, member, build, slow_poll):
    from django.db import transaction

    from builds import scheduler

    communicator = await connect(f"/ws/accounts/{account.id}/", member)

    def queue_one() -> Build:
        # No free slot: the build stays queued, so no transition announces it.
        type(account).objects.filter(pk=account.pk).update(concurrency_limit=0)
        with transaction.atomic():
            new = make_build(build.trigger, branch="feature/live")
            scheduler.enqueue([new])
        return new

    new = await sync_to_async(queue_one)()
    # With the poll this slow, only the event can bring the build within the timeout.
    announced = {}
    while str(new.build_uuid) not in announced:
        message = await communicator.receive_json_from(timeout=15)
        announced[message["build"]["build_uuid"]] = message["build"]
    assert announced[str(new.build_uuid)]["branch"] == "feature/live"
    assert announced[str(new.build_uuid)]["status"] == "queued"
    await communicator.disconnect()


async def test_the_account_poll_finds_changes_made_without_an_event(account, member, build, settings):
    settings.BUILDSITE_LIVE_POLL_SECONDS = 0.05
    communicator = await connect(f"/ws/accounts/{account.id}/", member)
    await sync_to_async(
        lambda: Build.objects.filter(pk=build.pk).update(status="initializing", modified_on=timezone.now())
    )()
    # The build's creation a moment ago may come first; the change must follow.
    statuses = []
    while "initializing" not in statuses:
        message = await communicator.receive_json_from(timeout=15)
        assert message["build"]["build_uuid"] == str(build.build_uuid)
        statuses.append(message["build"]["status"])
    assert statuses in (["initializing"], ["queued", "initializing"])
    await communicator.disconnect()


async def test_a_removed_member_is_disconnected(account, member, build, settings, monkeypatch):
    from builds import consumers

    settings.BUILDSITE_LIVE_POLL_SECONDS = 0.05
    monkeypatch.setattr(consumers, "REAUTHORIZE_SECONDS", 0)
    communicator = await connect(build_path(account.id, build), member)
    await communicator.receive_json_from(timeout=15)  # status
    await sync_to_async(lambda: member.memberships.all().delete())()
    assert (await communicator.receive_output(timeout=5))["type"] == "websocket.close"


async def session_cookie(user) -> bytes:
    def login() -> str:
        client = Client()
        client.force_login(user)
        return client.cookies["sessionid"].value

    return f"sessionid={await sync_to_async(login)()}".encode()


async def test_the_full_stack_authenticates_by_session_and_checks_the_origin(account, member, build):
    cookie = await session_cookie(member)
    path = build_path(account.id, build)
    good = WebsocketCommunicator(application, path, headers=[(b"cookie", cookie), (b"origin", b"http://127.0.0.1")])
    assert (await good.connect())[0]
    await good.disconnect()
    evil = WebsocketCommunicator(application, path, headers=[(b"cookie", cookie), (b"origin", b"http://evil.test")])
    assert not (await evil.connect())[0]
    anonymous = WebsocketCommunicator(application, path, headers=[(b"origin", b"http://127.0.0.1")])
    assert not (await anonymous.connect())[0]


async def test_the_admin_stream_is_for_staff_only(account, member, build):
    admin = await sync_to_async(lambda: make_user_staff("root"))()
    path = f"/ws/admin/builds/{build.build_uuid}/?logs=0"
    assert await refused(path, member)
    communicator = await connect(path, admin)
    message = await communicator.receive_json_from(timeout=15)
    assert message["type"] == "status" and message["build"]["build_uuid"] == str(build.build_uuid)
    await asyncio.sleep(0)
    await communicator.disconnect()


def make_user_staff(username: str):
    user = make_user(username)
    user.is_staff = user.is_superuser = True
    user.save()
    return user


async def test_sockets_watching_one_build_share_one_subscription_and_poll(account, member, owner, build, settings):
    from builds.consumers import Watch

    settings.BUILDSITE_LIVE_POLL_SECONDS = 0.05
    group = events.build_group(build.build_uuid)
    first = await connect(build_path(account.id, build), member)
    second = await connect(build_path(account.id, build), owner)
    watches = [watch for (_, name), watch in Watch.active.items() if name == group]
    assert len(watches) == 1 and len(watches[0].consumers) == 2
    await append(build, [("stdout", "live")])  # one message to the group reaches both
    now = timezone.now()

    def store_silently():
        LogChunk.objects.create(build=build, first_seq=2, last_seq=2, timestamp=now, stream="stdout", text="no event")
        Build.objects.filter(pk=build.pk).update(log_seq=2)

    await sync_to_async(store_silently)()
    for communicator in (first, second):
        assert (await read_lines(communicator, 2))[0] == [1, 2]
        await communicator.disconnect()
    assert not [name for _, name in Watch.active if name == group]


class UnreachableLayer:
    async def new_channel(self):
        raise OSError("Redis is down")


async def test_when_the_channel_layer_is_down_the_poll_still_streams(account, member, build, settings, monkeypatch):
    from builds import consumers

    settings.BUILDSITE_LIVE_POLL_SECONDS = 0.05
    monkeypatch.setattr(consumers, "get_channel_layer", UnreachableLayer)
    communicator = await connect(build_path(account.id, build), member)
    await append(build, [("stdout", "one"), ("stdout", "two")])
    await sync_to_async(build.transition)("initializing")
    seqs, _ = await read_lines(communicator, 2)
    assert seqs == [1, 2]
    statuses = []
    while "initializing" not in statuses:
        message = await communicator.receive_json_from(timeout=15)
        statuses.append(message["build"]["status"])
    await communicator.disconnect()
