"""Realtime events: with Redis, sent by one publisher per process (on the web server's
loop, else on a thread of its own), in order, without the sender waiting."""

import asyncio
import functools
import socket
import threading
from collections.abc import Iterator

import pytest
from asgiref.sync import async_to_sync
from channels.layers import channel_layers, get_channel_layer
from channels.testing import HttpCommunicator

from builds import events
from buildsite.asgi import application
from tests.builds.running import wait_for


@pytest.mark.redis
def test_events_sent_from_threads_without_an_event_loop_arrive_in_order():
    """As a q2 worker's buddy and its log pump send them: from plain threads."""
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)("build.ordered", channel)

    def sender() -> None:
        for n in range(50):
            events.send(("build.ordered", {"type": "build.logs", "n": n}))

    thread = threading.Thread(target=sender)
    thread.start()
    thread.join()
    try:
        received = [async_to_sync(layer.receive)(channel)["n"] for _ in range(50)]
    finally:
        async_to_sync(layer.group_discard)("build.ordered", channel)
    assert received == list(range(50))


@pytest.fixture
def silent_redis(settings, monkeypatch) -> Iterator[None]:
    """The channel layer on a Redis that accepts connections and never replies, with
    a publisher of the test's own, so the one other tests use is not held up."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    port = silent.getsockname()[1]
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [f"redis://127.0.0.1:{port}"]},
        }
    }
    monkeypatch.setattr(events, "_publisher", None)
    yield
    silent.close()


@pytest.mark.redis
def test_a_sender_never_waits_for_a_channel_layer_that_does_not_answer(silent_redis):
    """A request or a log pump sending events carries on, and the events wait in the
    publisher (at most 5 s each)."""
    sender = threading.Thread(target=lambda: [events.send(("build.silent", {"type": "build.logs"})) for _ in range(20)])
    sender.start()
    sender.join(timeout=10)
    assert not sender.is_alive()


@pytest.mark.redis
def test_while_redis_hangs_events_beyond_the_backlog_are_dropped_and_logged(silent_redis, monkeypatch, caplog):
    monkeypatch.setattr(events, "MAX_PENDING", 3)
    for n in range(10):
        events.send(("build.backlog", {"type": "build.logs", "n": n}))
    # Three wait, and one more may already be in flight (waiting for Redis): of ten,
    # six or seven are dropped, each logged.
    dropped = "backlog full: dropped the message to build.backlog"
    wait_for(lambda: caplog.text.count(dropped) >= 6, timeout=4, message="six dropped messages logged")
    assert caplog.text.count(dropped) <= 7


def publisher_threads() -> int:
    return sum(thread.name == "channel-layer-publisher" for thread in threading.enumerate())


async def receive_one(group: str, send) -> dict:
    """Calls send() (which sends one event to the group) and returns the event, as a
    websocket client of the group receives it."""
    receiver = channel_layers.make_backend("default")
    channel = await receiver.new_channel()
    await receiver.group_add(group, channel)
    try:
        await send()
        return await asyncio.wait_for(receiver.receive(channel), 5)
    finally:
        await receiver.group_discard(group, channel)


async def serve_then_send(group: str) -> tuple[dict, int]:
    """Serves a request through the ASGI application, as daphne does, then sends an
    event from another thread, as a request's view does. Returns the event received
    and how many publisher threads ran meanwhile."""
    response = await HttpCommunicator(application, "GET", "/healthz", headers=[(b"host", b"localhost")]).get_response()
    assert response["status"] == 200
    send_from_a_thread = functools.partial(asyncio.to_thread, events.send, (group, {"type": "build.logs", "n": 1}))
    return await receive_one(group, send_from_a_thread), publisher_threads()


@pytest.mark.redis
def test_the_web_process_sends_events_from_the_loop_serving_its_requests(monkeypatch):
    monkeypatch.setattr(events, "_publisher", None)
    threads_before = publisher_threads()
    message, threads = asyncio.run(serve_then_send("build.server-loop"))
    assert message["n"] == 1
    assert threads == threads_before


@pytest.mark.redis
def test_events_still_arrive_after_the_server_loop_stopped(monkeypatch):
    """Shutting down, or a test's loop that has ended: the next sender starts a
    publisher thread instead of handing its events to a loop that no longer runs."""
    monkeypatch.setattr(events, "_publisher", None)
    asyncio.run(serve_then_send("build.after-shutdown"))

    async def send() -> None:
        events.send(("build.after-shutdown", {"type": "build.logs", "n": 2}))

    assert asyncio.run(receive_one("build.after-shutdown", send))["n"] == 2
