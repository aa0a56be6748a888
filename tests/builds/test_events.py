"""Realtime events: with Redis, sent by one publisher thread per process, in order,
without the sender waiting."""

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
