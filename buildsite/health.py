"""/healthz: the process answers. /readyz: each dependency, and 503 when one the
configuration requires is down (so a load balancer stops sending traffic here)."""

import time
from collections.abc import Callable

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache


def check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def check_redis() -> None:
    import redis

    redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2).ping()


def check_docker() -> None:
    import docker

    client = docker.from_env(timeout=3)
    try:
        client.ping()
    finally:
        client.close()


def dependencies() -> list[tuple[str, Callable[[], None] | None, bool]]:
    """(name, check or None when served by another dependency, required)."""
    uses_redis = bool(settings.REDIS_URL)
    return [
        ("database", check_database, True),
        # Without Redis the q2 broker is the database and the channel layer lives in
        # this process, so neither has anything further to check.
        ("broker", check_redis if uses_redis else None, uses_redis),
        ("channel_layer", check_redis if uses_redis else None, uses_redis),
        ("docker", check_docker, settings.BUILDSITE_EXECUTOR == "docker"),
    ]


@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@never_cache
def readyz(request: HttpRequest) -> JsonResponse:
    report, ready = {}, True
    for name, check, required in dependencies():
        entry: dict = {"required": required}
        if check is None:
            entry["status"] = "ok"
            entry["detail"] = "database broker" if name == "broker" else "in-process layer"
        else:
            started = time.monotonic()
            try:
                check()
                entry["status"] = "ok"
            except Exception as e:  # noqa: BLE001 - any failure means "down"; say which
                entry["status"] = "down"
                entry["detail"] = f"{type(e).__name__}: {e}"[:300]
                ready = ready and not required
            entry["ms"] = round((time.monotonic() - started) * 1000, 1)
        report[name] = entry
    return JsonResponse({"status": "ready" if ready else "unavailable", "checks": report}, status=200 if ready else 503)
