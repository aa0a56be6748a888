"""Realtime events: with Redis, sent by one publisher thread per process, in order,
without the sender waiting."""

import socket
import threading

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from builds import events


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


@pytest.mark.redis
def test_a_sender_never_waits_for_a_channel_layer_that_does_not_answer(settings, monkeypatch):
    """A Redis that accepts connections and never replies: a request or a log pump
    sending events carries on, and the events wait in the publisher (at most 5 s each)."""
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
    # A publisher of this test's own, so the one other tests use is not held up.
    monkeypatch.setattr(events, "_publisher", None)
    sender = threading.Thread(target=lambda: [events.send(("build.silent", {"type": "build.logs"})) for _ in range(20)])
    try:
        sender.start()
        sender.join(timeout=10)
        assert not sender.is_alive()
    finally:
        silent.close()
