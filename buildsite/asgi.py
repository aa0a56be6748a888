"""ASGI entry point for daphne: HTTP through Django, websockets through Channels with
session authentication and an Origin check against ALLOWED_HOSTS."""

import asyncio
import json
import os

from django.core.asgi import get_asgi_application
from django.utils.http import parse_header_parameters

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "buildsite.settings")
# Django must be set up before anything imports models (the consumers do).
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from builds import events  # noqa: E402
from buildsite.routing import websocket_urlpatterns  # noqa: E402


def publishing_from_server_loop(app):
    """Realtime events of this process go out from the loop serving its requests
    (builds.events.publish_from)."""

    async def with_publisher(scope, receive, send) -> None:
        events.publish_from(asyncio.get_running_loop())
        await app(scope, receive, send)

    return with_publisher


def refuse_unreadable_content_type(app):
    """Django builds the request before any view runs, and a Content-Type it cannot
    parse (an RFC 2231 parameter in an unknown charset) raises there: a 500 for any
    URL. Such a request gets a 400 with a reason instead."""

    async def checked(scope, receive, send) -> None:
        for name, value in scope.get("headers", ()):
            if name.lower() == b"content-type":
                try:
                    parse_header_parameters(value.decode("latin-1"))
                except ValueError:
                    body = json.dumps({"reason": "The Content-Type header cannot be read."}).encode()
                    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
                    await send({"type": "http.response.start", "status": 400, "headers": headers})
                    await send({"type": "http.response.body", "body": body})
                    return
        await app(scope, receive, send)

    return checked


application = publishing_from_server_loop(
    ProtocolTypeRouter(
        {
            "http": refuse_unreadable_content_type(django_asgi_app),
            "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
        }
    )
)
