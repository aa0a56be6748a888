import re

import pytest
from django.db import connections
from django.test import Client

from builds.models import BuildOutcome, BuildStatus
from tests.factories import make_build, make_trigger, make_worker


def sample(client, name: str, **labels) -> float:
    text = client.get("/metrics").content.decode()
    label_text = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.escape(name) + (r"\{" + re.escape(label_text) + r"\}" if labels else "") + r" ([0-9.e+]+)"
    match = re.search(pattern, text)
    return float(match.group(1)) if match else 0.0


def test_metrics_count_builds_and_lines(client, account, django_capture_on_commit_callbacks):
    from builds import logs

    trigger = make_trigger(make_worker(account, "metrics"))
    before_success = sample(client, "buildsite_builds_total", outcome="success")
    before_lines = sample(client, "buildsite_log_lines_stored_total")
    before_waits = sample(client, "buildsite_build_queue_wait_seconds_count")
    queued = make_build(trigger)
    running = make_build(trigger)
    with django_capture_on_commit_callbacks(execute=True):
        running.transition(BuildStatus.INITIALIZING)
        running.transition(BuildStatus.RUNNING)
        logs.append(running, [("stdout", "a"), ("stdout", "b")])
    assert sample(client, "buildsite_builds", status="queued") == 1
    assert sample(client, "buildsite_builds", status="running") == 1
    assert sample(client, "buildsite_build_queue_wait_seconds_count") == before_waits + 1
    assert sample(client, "buildsite_log_lines_stored_total") == before_lines + 2
    with django_capture_on_commit_callbacks(execute=True):
        running.stop(BuildOutcome.SUCCESS)
        queued.stop(BuildOutcome.CANCELLED, "Cancelled")
    assert sample(client, "buildsite_builds_total", outcome="success") == before_success + 1
    assert sample(client, "buildsite_builds", status="running") == 0


def test_metrics_are_restricted(client, settings, db):
    settings.BUILDSITE_METRICS_TOKEN = "scrape-token"
    outside = {"REMOTE_ADDR": "203.0.113.9"}
    assert client.get("/metrics", **outside).status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong", **outside).status_code == 403
    allowed = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-token", **outside)
    assert allowed.status_code == 200 and b"buildsite_builds" in allowed.content
    assert client.get("/metrics").status_code == 200  # loopback is allowed by default


def test_metrics_count_webhook_deliveries_by_outcome(client, account):
    from tests.factories import make_connection

    connection = make_connection(account)
    before = sample(client, "buildsite_webhook_deliveries_total", outcome="rejected")
    response = client.post(
        f"/webhooks/{connection.uuid}",
        data=b"{}",
        content_type="application/json",
        HTTP_X_GITHUB_EVENT="push",
        HTTP_X_HUB_SIGNATURE_256="sha256=" + "0" * 64,
    )
    assert response.status_code == 401
    assert sample(client, "buildsite_webhook_deliveries_total", outcome="rejected") == before + 1


@pytest.mark.django_db(transaction=True)
async def test_metrics_count_connected_websocket_clients(account, member):
    from asgiref.sync import sync_to_async
    from channels.routing import URLRouter
    from channels.testing import WebsocketCommunicator

    from buildsite.routing import websocket_urlpatterns

    def scrape() -> float:
        # In asgiref's shared thread, whose connection would otherwise outlive the test
        # (the test client does not close it) and block dropping the test database.
        try:
            return sample(Client(), "buildsite_websocket_clients")
        finally:
            connections.close_all()

    async def clients() -> float:
        return await sync_to_async(scrape)()

    before = await clients()
    communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), f"/ws/accounts/{account.id}/")
    communicator.scope["user"] = member
    connected, _ = await communicator.connect()
    assert connected
    assert await clients() == before + 1
    await communicator.disconnect()
    assert await clients() == before
